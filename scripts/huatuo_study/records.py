"""The files stages hand each other: JSONL records (test questions, answers, verdicts) and the
tables' JSON rows (win rates, claims). Each record's shape is a JSON Schema in scripts/huatuo_study/schemas/
(<kind>.yaml), checked here by every reader and by the writers' tests, instead of hand checks in
each stage. A record that does not fit stops the job naming the file, the line (or row) and the
field."""

import csv
import functools
import math
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from huatuo_study.common import DataError, iter_jsonl, read_json

SCHEMAS = Path(__file__).resolve().parent / "schemas"
KINDS = ("test_question", "answer", "verdict", "winrate_row", "claim_row", "ranking_row")
# The columns of tables/<test set>/<judge>/pairwise.csv, which winrate_table writes and the paper reads.
PAIRWISE_COLUMNS = ("setting_a", "setting_b", "n", "a_better", "b_better", "p_value")
# tables/judge_agreement.csv's and tables/human_agreement.csv's columns (judge_agreement,
# human_agreement write them; the paper reads them).
AGREEMENT_COLUMNS = [
    "test_set",
    "judge_a",
    "judge_b",
    "n_questions",
    "n_pairs",
    "agreement",
    "weighted_kappa",
    "weighted_kappa_low",
    "weighted_kappa_high",
    "alpha",
    "alpha_low",
    "alpha_high",
]
# tables/fidelity.csv's columns (fidelity_table writes them, the paper reads them).
FIDELITY_COLUMNS = ["group", "parameter", "study", "this_run", "source", "note", "status"]
# tables/compute.csv's columns (compute_table writes them, the paper reads them).
COMPUTE_COLUMNS = (
    "rule",
    "test_set",
    "setting",
    "replicate",
    "device",
    "gpu",
    "wall_s",
    "max_rss_mib",
    "peak_gpu_gib",
    "tokens_per_s",
    "memory_budget_gib",
    "form",
    "batch_size",
)
# The `rule` of tables/compute.csv's last row, the sum over every GPU job.
COMPUTE_TOTAL = "all GPU jobs"


@functools.cache
def validator(kind: str) -> Draft202012Validator:
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r} (one of {', '.join(KINDS)})")
    schema = yaml.safe_load((SCHEMAS / f"{kind}.yaml").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def check_record(record: dict, kind: str, path, lineno: int | None = None) -> dict:
    """The record, or a DataError naming its most relevant problem's field (a.b.0.c) and what is wrong."""
    error = best_match(validator(kind).iter_errors(record))
    if error is not None:
        field = ".".join(str(part) for part in error.absolute_path) or None
        raise DataError(path, lineno, field, error.message)
    return record


def read_records(path, kind: str) -> list[tuple[int, dict]]:
    """(line number, record) of every line of a JSONL file of `kind`, each checked."""
    return [(lineno, check_record(record, kind, path, lineno)) for lineno, record in iter_jsonl(path)]


def read_table_json(path, kind: str) -> list[dict]:
    """A table's JSON rows (a list), each checked; a row's problem names it as field 'row <i>.<key>'."""
    rows = read_json(path)
    if not isinstance(rows, list):
        raise DataError(path, None, None, "expected a JSON list of rows")
    for i, row in enumerate(rows, 1):
        try:
            check_record(row, kind, path)
        except DataError as e:
            raise DataError(path, None, f"row {i}" + (f".{e.field}" if e.field else ""), e.problem) from None
    return rows


def number_cell(value: Any, path, line: int | None, field: str, nullable: bool = False) -> float | None:
    """A finite number (or its text); None for a nullable field's null or empty cell."""
    if nullable and value in (None, ""):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise DataError(path, line, field, f"not a number ({value!r})") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(path, line, field, f"not a number ({value!r})")
    return value


def read_compute_csv(path: str | os.PathLike) -> list[dict]:
    """tables/compute.csv back as rows: numbers as numbers, empty cells as None."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for column in COMPUTE_COLUMNS:
            if column not in (reader.fieldnames or []):
                raise DataError(path, 1, column, "missing column")
        rows = []
        for line, row in enumerate(reader, 2):
            cells = {k: row[k] or None for k in COMPUTE_COLUMNS}
            for k in ("wall_s", "max_rss_mib", "peak_gpu_gib", "tokens_per_s", "memory_budget_gib", "batch_size"):
                cells[k] = number_cell(cells[k], path, line, k, nullable=k != "wall_s")
            if cells["replicate"] is not None:
                if not cells["replicate"].isdigit():
                    raise DataError(path, line, "replicate", f"not a replicate number ({cells['replicate']!r})")
                cells["replicate"] = int(cells["replicate"])
            rows.append(cells)
    return rows
