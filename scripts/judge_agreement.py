"""Stage judges' agreement: for each test set, Cohen's kappa between the primary judge and each
judge of the panel on the same verdicts (every setting, replicate and question; win/tie/loss,
pairs with an invalid verdict dropped), with its 95% interval (claim_stats.cohens_kappa_three_way)
and the share of verdicts on which the two judges agree. No panel: a table of its header only.

tables/judge_agreement.csv, one row per test set and panel judge (COLUMNS)."""

import itertools

import pandas as pd

from claim_stats import cohens_kappa_three_way
from common import PipelineError, log, run_stage, write_text
from verdicts import read_runs

COLUMNS = ["test_set", "judge_a", "judge_b", "n", "agreement", "kappa", "kappa_low", "kappa_high"]
PRIMARY = "primary"


def agreement_row(test_set: str, judge_a: str, a: dict, judge_b: str, b: dict) -> dict:
    """a, b: (setting, replicate) -> verdict records of one test set by two judges."""
    keys = [(run, str(r["id"])) for run, records in a.items() for r in records]
    label_a = {(run, str(r["id"])): r["verdict"] for run, records in a.items() for r in records}
    label_b = {(run, str(r["id"])): r["verdict"] for run, records in b.items() for r in records}
    if set(label_a) != set(label_b):
        raise PipelineError(f"{test_set}: judges {judge_a} and {judge_b} judged different answers")
    first, second = [label_a[k] for k in keys], [label_b[k] for k in keys]
    kappa, low, high, n = cohens_kappa_three_way(first, second)
    valid = [(x, y) for x, y in zip(first, second) if "invalid" not in (x, y)]
    return {"test_set": test_set, "judge_a": judge_a, "judge_b": judge_b, "n": n,
            "agreement": sum(x == y for x, y in valid) / len(valid) if valid else float("nan"),
            "kappa": kappa, "kappa_low": low, "kappa_high": high}


def agreement_table(runs: dict[tuple[str, str], dict]) -> pd.DataFrame:
    """runs: (test set, judge) -> that judge's verdicts on that test set; the primary judge against
    each other judge, per test set."""
    rows = [
        agreement_row(test_set, PRIMARY, runs[test_set, PRIMARY], judge, by_judge)
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
        pair: read_runs(paths[i * per_table:(i + 1) * per_table], settings, replicates)
        for i, pair in enumerate(pairs)
    }
    table = agreement_table(runs)
    write_text(smk.output.csv, table.to_csv(index=False))
    for row in table.to_dict(orient="records"):
        log.info("%s: %s vs %s: kappa %.3f (%.3f to %.3f), agreement %.3f over %d verdicts", row["test_set"],
                 row["judge_a"], row["judge_b"], row["kappa"], row["kappa_low"], row["kappa_high"],
                 row["agreement"], row["n"])


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
