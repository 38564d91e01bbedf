"""Blind labelling by people: a seeded sample of answer pairs (a setting's answer and the
baseline's to one question) as a sheet that hides which answer is ours, the key that un-blinds
it, and the filled sheet read back as verdicts on the judges' scale.

  sheet   one row per sampled pair: row, question, answer_a, answer_b, check, label (empty). Which
          of A and B is the setting's answer is drawn per row, and the rows are shuffled across
          test sets and settings, so neither the position nor the neighbours tell whose it is.
  key     the same rows: row, test_set, id, setting, replicate, order (setting_first: ours is A;
          baseline_first: ours is B, the verdict files' names) and check. Kept apart from the sheet.
  check   the first 12 hex digits of SHA-256 over the row's question and two answers as shown: a
          filled sheet whose check differs from the key's was filled on other answers (another
          run, seed or sample) and is refused.
  label   A, B or tie (any case); empty: not labelled, left out. A: answer A is the better answer.

A label becomes a verdict from the setting's side as the judge gives it: win where the person
chose our answer, loss where they chose the baseline's, tie for a tie."""

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from huatuo_study.common import DataError, PipelineError

SHEET_COLUMNS = ["row", "question", "answer_a", "answer_b", "check", "label"]
KEY_COLUMNS = ["row", "test_set", "id", "setting", "replicate", "order", "check"]
LABEL_COLUMNS = ["row", "test_set", "id", "setting", "replicate", "order", "label", "verdict"]
ORDERS = ("setting_first", "baseline_first")  # verdicts.ORDERS
CHOICES = {"a": "A", "b": "B", "tie": "tie"}


def pair_check(question: str, answer_a: str, answer_b: str) -> str:
    text = json.dumps([question, answer_a, answer_b], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def candidate_pairs(
    test_set: str,
    runs: Mapping[tuple[str, int], Sequence[dict]],
    baseline: Sequence[dict],
    baseline_path: str | os.PathLike = "baseline",
) -> list[dict]:
    """Every (setting, replicate, question) of one test set with both answers: runs maps
    (setting, replicate) to its answer records in test-set order."""
    theirs = {str(r["id"]): r["answer"] for r in baseline}
    pairs = []
    for (setting, replicate), records in runs.items():
        for r in records:
            if str(r["id"]) not in theirs:
                raise DataError(baseline_path, None, "id", f"no baseline answer to question {r['id']!r} of {test_set}")
            pairs.append(
                {
                    "test_set": test_set,
                    "id": str(r["id"]),
                    "setting": setting,
                    "replicate": replicate,
                    "question": r["question"],
                    "ours": r["answer"],
                    "baseline": theirs[str(r["id"])],
                }
            )
    return pairs


def sample_pairs(candidates: Mapping[str, Sequence[dict]], per_test_set: int, seed: int) -> list[dict]:
    """per_test_set pairs of each test set (all of them where it has fewer), drawn without
    replacement, each with its order drawn, then every row shuffled and numbered from 1. One
    generator from `seed`, used in test-set order: the same answers and seed give the same sheet."""
    if per_test_set < 1:
        raise PipelineError(f"label sheet: pairs per test set must be positive, got {per_test_set}")
    rng = np.random.default_rng(seed)
    chosen = []
    for pairs in candidates.values():
        picks = np.sort(rng.choice(len(pairs), size=min(per_test_set, len(pairs)), replace=False))
        chosen += [{**pairs[i], "order": ORDERS[rng.integers(2)]} for i in picks]
    return [{**chosen[i], "row": row} for row, i in enumerate(rng.permutation(len(chosen)), 1)]


def shown(pair: dict) -> tuple[str, str]:
    """(answer A, answer B) as the sheet shows them."""
    return (pair["ours"], pair["baseline"]) if pair["order"] == "setting_first" else (pair["baseline"], pair["ours"])


def sheet_rows(pairs: Sequence[dict]) -> list[dict]:
    rows = []
    for p in pairs:
        a, b = shown(p)
        rows.append(
            {
                "row": p["row"],
                "question": p["question"],
                "answer_a": a,
                "answer_b": b,
                "check": pair_check(p["question"], a, b),
                "label": "",
            }
        )
    return rows


def key_rows(pairs: Sequence[dict]) -> list[dict]:
    return [
        {
            "row": p["row"],
            "test_set": p["test_set"],
            "id": p["id"],
            "setting": p["setting"],
            "replicate": p["replicate"],
            "order": p["order"],
            "check": pair_check(p["question"], *shown(p)),
        }
        for p in pairs
    ]


def csv_text(rows: Sequence[Mapping], columns: Sequence[str]) -> str:
    """Python's csv dialect (minimal quoting, CRLF), which the sheet's form writes too."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def csv_records(path: str | os.PathLike, required: Sequence[str]) -> Iterator[tuple[int, dict]]:
    """(line on which the record starts, record) of a CSV file with a header (a UTF-8 byte-order
    mark, as spreadsheets write one, is allowed); a missing column or a record with another number
    of fields than the header is a DataError."""
    try:
        f = open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DataError(path, None, None, "file not found") from None
    with f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
        except UnicodeDecodeError as e:
            raise DataError(path, 1, None, f"not UTF-8 text ({e.reason})") from None
        for column in required:
            if column not in header:
                raise DataError(path, 1, column, f"missing column (the header has {', '.join(header) or 'nothing'})")
        start = reader.line_num + 1
        try:
            for record in reader:
                if None in record or None in record.values():
                    raise DataError(path, start, None, f"{len(header)} fields expected, as in the header")
                yield start, record
                start = reader.line_num + 1
        except UnicodeDecodeError as e:
            raise DataError(path, start, None, f"not UTF-8 text ({e.reason})") from None
        except csv.Error as e:
            raise DataError(path, start, None, f"not valid CSV ({e})") from None


def read_key(path: str | os.PathLike) -> dict[int, dict]:
    """The key's rows by row number."""
    key = {}
    for line, r in csv_records(path, KEY_COLUMNS):
        for field in ("row", "replicate"):
            if not r[field].isdigit():
                raise DataError(path, line, field, f"expected a whole number, got {r[field]!r}")
        if r["order"] not in ORDERS:
            raise DataError(path, line, "order", f"expected {' or '.join(ORDERS)}, got {r['order']!r}")
        row = int(r["row"])
        if row in key:
            raise DataError(path, line, "row", f"row {row} appears twice")
        key[row] = {**r, "row": row, "replicate": int(r["replicate"])}
    if not key:
        raise DataError(path, None, None, "the key has no rows")
    return key


def read_filled_sheet(path: str | os.PathLike, key: Mapping[int, dict]) -> list[dict]:
    """The labelled rows of a filled sheet, each {row, label}, label one of A, B, tie. Every row
    must be one of the key's, once, with the key's check; an empty label is a row not labelled."""
    labels, seen = [], {}
    for line, r in csv_records(path, ("row", "check", "label")):
        text = r["row"].strip()
        if not text.isdigit() or int(text) not in key:
            raise DataError(path, line, "row", f"{r['row']!r} is not a row of the sheet's key (rows 1 to {len(key)})")
        row = int(text)
        if row in seen:
            raise DataError(path, line, "row", f"row {row} appears twice (first on line {seen[row]})")
        seen[row] = line
        if r["check"].strip() != key[row]["check"]:
            raise DataError(
                path,
                line,
                "check",
                f"{r['check']!r} is not the key's {key[row]['check']!r} for row {row}: "
                "these labels were given to other answers (another run, seed or sample)",
            )
        label = r["label"].strip()
        if not label:
            continue
        if label.lower() not in CHOICES:
            raise DataError(path, line, "label", f"{r['label']!r} is not one of A, B, tie (or empty: not labelled)")
        labels.append({"row": row, "label": CHOICES[label.lower()]})
    if not labels:
        raise DataError(path, None, "label", "no row is labelled")
    return labels


def verdict_of(label: str, order: str) -> str:
    """A person's label as the verdict on the setting's answer."""
    if label == "tie":
        return "tie"
    ours = "A" if order == "setting_first" else "B"
    return "win" if label == ours else "loss"


def unblind(labels: Sequence[dict], key: Mapping[int, dict]) -> list[dict]:
    """The labelled rows with the key's test set, question, setting, replicate and order, and the
    verdict they give the setting; in row order."""
    rows = [
        {
            **{c: key[r["row"]][c] for c in LABEL_COLUMNS[:6]},
            "label": r["label"],
            "verdict": verdict_of(r["label"], key[r["row"]]["order"]),
        }
        for r in labels
    ]
    return sorted(rows, key=lambda r: r["row"])


def sheet_json(rows: Sequence[dict]) -> str:
    """The rows as JSON safe inside an HTML <script> element (no '</' can close it)."""
    return json.dumps(list(rows), ensure_ascii=False).replace("<", "\\u003c")
