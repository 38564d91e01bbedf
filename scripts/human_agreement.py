"""Stage human agreement: the filled labelling sheet (config human_labels) un-blinded with the
sheet's key, and each judge's agreement with the people on the pairs they labelled, per test set,
by the statistics the judges' agreement uses (agreement_stats.py: linear weighted kappa and
ordinal alpha, 95% intervals from one bootstrap over questions).

  human_labels/labels.csv     each labelled row with its test set, question id, setting,
                              replicate, order, the label (A, B, tie) and the verdict it gives
                              the setting's answer (win, tie, loss).
  tables/human_agreement.csv  one row per test set and judge, judge_agreement.py's columns with
                              judge_a `human` and judge_b the judge; a pair the judge found
                              invalid is dropped, as between judges."""

import itertools

import pandas as pd

from huatuo_study.common import PipelineError, log, run_stage, write_text
from huatuo_study.judging.label_sheet import LABEL_COLUMNS, csv_text, read_filled_sheet, read_key, unblind
from huatuo_study.judging.verdicts import read_runs
from huatuo_study.records import AGREEMENT_COLUMNS as COLUMNS
from huatuo_study.statistics.agreement_stats import agreement_statistics

HUMAN = "human"


def human_agreement_table(
    labels: list[dict], runs: dict[tuple[str, str], dict], n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """labels: un-blinded rows (unblind); runs: (test set, judge) -> (setting, replicate) -> that
    judge's verdicts. A row per test set and judge, in runs' order; a test set without labels
    gives rows of no pairs."""
    rows = []
    for (test_set, judge), by_run in runs.items():
        verdicts = {
            (setting, rep, str(r["id"])): r["verdict"] for (setting, rep), records in by_run.items() for r in records
        }
        labelled = [r for r in labels if r["test_set"] == test_set]
        judged = []
        for r in labelled:
            pair = (r["setting"], r["replicate"], str(r["id"]))
            if pair not in verdicts:
                raise PipelineError(
                    f"human labels: row {r['row']} ({test_set}, {r['setting']} rep{r['replicate']}, "
                    f"question {r['id']}) has no verdict of judge {judge}: the key is of another run"
                )
            judged.append(verdicts[pair])
        stats = agreement_statistics(
            [r["verdict"] for r in labelled], judged, [r["id"] for r in labelled], n_boot, seed
        )
        rows.append({"test_set": test_set, "judge_a": HUMAN, "judge_b": judge, **stats})
    return pd.DataFrame(rows, columns=COLUMNS)


def main(smk) -> None:
    p, i = smk.params, smk.input
    if not i.labels:
        raise PipelineError("no filled labelling sheet: set human_labels in the config to its path")
    key = read_key(i.key)
    labels = unblind(read_filled_sheet(i.labels, key), key)
    settings, replicates = list(p.settings), p.replicates
    per_table = len(settings) * replicates
    paths = list(i.verdicts)
    pairs = list(itertools.product(p.test_sets, p.judges))
    if len(paths) != len(pairs) * per_table:
        raise PipelineError(f"{len(paths)} verdict files for {len(pairs)} test sets x judges x {per_table} runs")
    runs = {
        pair: read_runs(paths[k * per_table : (k + 1) * per_table], settings, replicates)
        for k, pair in enumerate(pairs)
    }
    table = human_agreement_table(labels, runs, p.statistics["n_bootstrap"], p.statistics["seed"])
    write_text(smk.output.labels, csv_text(labels, LABEL_COLUMNS))
    write_text(smk.output.csv, table.to_csv(index=False))
    log.info("human labels: %d of %d rows labelled (%s)", len(labels), len(key), i.labels)
    for row in table.to_dict(orient="records"):
        log.info(
            "%s: people vs %s: weighted kappa %.3f (%.3f to %.3f), ordinal alpha %.3f, agreement %.3f "
            "over %d pairs on %d questions",
            row["test_set"],
            row["judge_b"],
            row["weighted_kappa"],
            row["weighted_kappa_low"],
            row["weighted_kappa_high"],
            row["alpha"],
            row["agreement"],
            row["n_pairs"],
            row["n_questions"],
        )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
