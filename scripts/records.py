"""The files stages hand each other: JSONL records (test questions, answers, verdicts) and the
tables' JSON rows (win rates, claims). Each record's shape is a JSON Schema in scripts/schemas/
(<kind>.yaml), checked here by every reader and by the writers' tests, instead of hand checks in
each stage. A record that does not fit stops the job naming the file, the line (or row) and the
field."""

import functools
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from common import DataError, iter_jsonl, read_json

SCHEMAS = Path(__file__).resolve().parent / "schemas"
KINDS = ("test_question", "answer", "verdict", "winrate_row", "claim_row", "ranking_row")
# The columns of tables/<test set>/<judge>/pairwise.csv, which winrate_table writes and the paper reads.
PAIRWISE_COLUMNS = ("setting_a", "setting_b", "n", "a_better", "b_better", "p_value")


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
