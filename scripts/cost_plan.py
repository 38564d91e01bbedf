"""Stage cost plan: the paid API calls this config makes on its first run, their tokens at most and
their cost (huatuo_study.paid_calls). Writes a CSV and prints it as a table."""

from huatuo_study.common import log, read_prompt, run_stage, write_text
from huatuo_study.paid_calls import plan, to_csv, to_table


def main(smk):
    p = smk.params
    rows = plan(
        p.judges,
        p.test_sets,
        p.n_settings,
        p.replicates,
        p.max_new_tokens,
        p.augmentation,
        p.n_train,
        read_prompt(smk.input.judge_prompt),
    )
    write_text(smk.output.csv, to_csv(rows))
    log.info(
        "Paid API calls this config makes on its first run (upper bounds; USD per million tokens):\n%s", to_table(rows)
    )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
