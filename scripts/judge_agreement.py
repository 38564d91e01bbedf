"""Stage judges' agreement: for each test set, the primary judge against each judge of the panel
on the same verdicts (every setting, replicate and question; loss < tie < win, pairs with an
invalid verdict dropped). No panel: a table of its header only.

tables/judge_agreement.csv, one row per test set and panel judge (COLUMNS):
  n_questions, n_pairs         the questions with a valid pair, and the valid verdict pairs
                               (questions x settings x replicates, less the invalid ones).
  agreement                    the share of pairs on which the two judges give the same verdict.
  weighted_kappa, _low, _high  Cohen's kappa with linear weights and its 95% interval.
  alpha, alpha_low, alpha_high Krippendorff's ordinal alpha and its 95% interval.
Both intervals: percentile, from one bootstrap over questions (a question's pairs drawn
together), statistics.n_bootstrap draws from statistics.seed (agreement_stats.py says why these
two statistics and why linear weights)."""

import itertools

import pandas as pd

from huatuo_study.common import PipelineError, log, run_stage, write_text
from huatuo_study.judging.verdicts import read_runs
from huatuo_study.records import AGREEMENT_COLUMNS as COLUMNS
from huatuo_study.statistics.agreement_stats import agreement_statistics

PRIMARY = "primary"


def agreement_row(
    test_set: str, judge_a: str, a: dict, judge_b: str, b: dict, n_boot: int = 2000, seed: int = 0
) -> dict:
    """a, b: (setting, replicate) -> verdict records of one test set by two judges."""
    keys = [(run, str(r["id"])) for run, records in a.items() for r in records]
    label_a = {(run, str(r["id"])): r["verdict"] for run, records in a.items() for r in records}
    label_b = {(run, str(r["id"])): r["verdict"] for run, records in b.items() for r in records}
    if set(label_a) != set(label_b):
        raise PipelineError(f"{test_set}: judges {judge_a} and {judge_b} judged different answers")
    stats = agreement_statistics(
        [label_a[k] for k in keys], [label_b[k] for k in keys], [question for _, question in keys], n_boot, seed
    )
    return {"test_set": test_set, "judge_a": judge_a, "judge_b": judge_b, **stats}


def agreement_table(runs: dict[tuple[str, str], dict], n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """runs: (test set, judge) -> that judge's verdicts on that test set; the primary judge against
    each other judge, per test set."""
    rows = [
        agreement_row(test_set, PRIMARY, runs[test_set, PRIMARY], judge, by_judge, n_boot, seed)
        for (test_set, judge), by_judge in runs.items()
        if judge != PRIMARY
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def main(smk) -> None:
    p = smk.params
    settings, replicates = list(p.settings), p.replicates
    per_table = len(settings) * replicates
    paths = list(smk.input.verdicts)
    pairs = list(itertools.product(p.test_sets, p.judges))
    if len(paths) != len(pairs) * per_table:
        raise PipelineError(f"{len(paths)} verdict files for {len(pairs)} test sets x judges x {per_table} runs")
    runs = {
        pair: read_runs(paths[i * per_table : (i + 1) * per_table], settings, replicates)
        for i, pair in enumerate(pairs)
    }
    table = agreement_table(runs, p.statistics["n_bootstrap"], p.statistics["seed"])
    write_text(smk.output.csv, table.to_csv(index=False))
    for row in table.to_dict(orient="records"):
        log.info(
            "%s: %s vs %s: weighted kappa %.3f (%.3f to %.3f), ordinal alpha %.3f (%.3f to %.3f), "
            "agreement %.3f over %d verdict pairs on %d questions",
            row["test_set"],
            row["judge_a"],
            row["judge_b"],
            row["weighted_kappa"],
            row["weighted_kappa_low"],
            row["weighted_kappa_high"],
            row["alpha"],
            row["alpha_low"],
            row["alpha_high"],
            row["agreement"],
            row["n_pairs"],
            row["n_questions"],
        )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
