"""Stage ranking: every setting (controls included) and the baseline ranked by their
Bradley-Terry score against the baseline on one test set by one judge, as Arena-Hard-Auto fits
it from judgments against one baseline (the baseline anchored at 1000, 400 points a factor of
10 in the odds), with the crossed interval over questions and training runs mapped onto the same
scale (bradley_terry says how). The verdicts are the win-rate table's: no new judge calls.
Writes tables/<test set>/<judge>/ranking.csv and .json (bradley_terry.COLUMNS)."""

from huatuo_study.common import log, run_stage, write_json, write_text
from huatuo_study.judging.verdicts import read_runs, table_rows, verdict_frame
from huatuo_study.statistics.bradley_terry import ranking


def main(smk) -> None:
    p = smk.params
    settings = [s["name"] for s in p.settings]
    titles = {s["name"]: s["title"] for s in p.settings}
    verdicts = verdict_frame(read_runs(list(smk.input.verdicts), settings, p.replicates))
    table = ranking(verdicts, settings, p.alpha, titles)
    write_text(smk.output.csv, table.to_csv(index=False))
    write_json(smk.output.json, table_rows(table))
    for row in table_rows(table):
        log.info(
            "rank %s: %s, score %s (%s to %s), mean score %s %s",
            row["rank"],
            row["setting"],
            row["score"],
            row["ci_low"],
            row["ci_high"],
            row["win_rate"],
            row["note"],
        )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
