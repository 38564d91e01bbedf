"""The verdict files (judge_pairwise.py writes them): read and checked once, for every table that
pools them (win rates, claims, judges' agreement), and those tables as JSON rows. A run is one
replicate of one setting."""

import itertools
import math
from collections.abc import Sequence

import pandas as pd

from huatuo_study.common import DataError, PipelineError
from huatuo_study.records import read_records

VERDICTS = ("win", "tie", "loss", "invalid")  # schemas/verdict.yaml
ORDERS = ("setting_first", "baseline_first")  # judge_pairwise.ORDERS


def order_outcomes(record: dict) -> dict[str, str]:
    """The setting's outcome in each order, by order name."""
    return {o["order"]: o["outcome"] for o in record["orders"]}


def is_order_flip(record: dict) -> bool:
    """Position bias in its strong form: a win in one order and a loss in the other (a tie against
    a win or a loss breaks consistency but is no flip)."""
    return sorted(order_outcomes(record).values()) == ["loss", "win"]


def read_verdicts(path, setting: str) -> list[dict]:
    """A run's verdicts (records.py checks each against schemas/verdict.yaml), all of `setting`."""
    records = []
    for lineno, record in read_records(path, "verdict"):
        if record["setting"] != setting:
            raise DataError(path, lineno, "setting", f"expected {setting!r}, got {record['setting']!r}")
        records.append(record)
    if not records:
        raise DataError(path, None, None, "no verdicts")
    return records


def read_runs(paths: Sequence[str], settings: Sequence[str], replicates: int) -> dict[tuple[str, int], list[dict]]:
    """(setting, replicate) -> its verdicts, from paths in rules/common.smk runs_of order: each
    setting's replicates 0..K-1, settings in config order."""
    runs = list(itertools.product(settings, range(replicates)))
    if len(paths) != len(runs):
        raise PipelineError(f"{len(paths)} verdict files for {len(settings)} settings x {replicates} replicates")
    return {(setting, rep): read_verdicts(path, setting) for (setting, rep), path in zip(runs, paths)}


def verdict_frame(runs: dict[tuple[str, int], list[dict]]) -> pd.DataFrame:
    """One row per verdict: setting, replicate, id, verdict, answer_chars, baseline_chars."""
    return pd.DataFrame(
        [
            {
                "setting": setting,
                "replicate": rep,
                "id": str(r["id"]),
                "verdict": r["verdict"],
                "answer_chars": len(r["setting_answer"]),
                "baseline_chars": len(r["baseline_answer"]),
            }
            for (setting, rep), records in runs.items()
            for r in records
        ],
        columns=["setting", "replicate", "id", "verdict", "answer_chars", "baseline_chars"],
    )


def table_rows(df: pd.DataFrame) -> list[dict]:
    """Plain JSON rows: Python numbers, NaN as null."""
    rows = []
    for row in df.to_dict(orient="records"):
        out = {}
        for key, value in row.items():
            if hasattr(value, "item"):
                value = value.item()
            if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                value = None
            out[key] = value
        rows.append(out)
    return rows
