"""Stage splits: validate every raw row, drop duplicate questions and filtered rows, and split
the rest into train / val / held-out with a seed. Counts of what was dropped and why go to a
stats JSON."""


import random
from collections import Counter

from common import DataError, iter_jsonl, log, normalize_text, run_stage, write_json, write_jsonl

# Lite's fields and the types a row must have; `id` is optional (the course's sample has none).
REQUIRED_TEXT = ("question", "answer")
OPTIONAL_FIELDS = {"id": (int, str), "score": (int, float), "label": str, "related_diseases": (str, list)}


def validate_row(row: dict, path: str, line: int) -> dict:
    """The row, cleaned, or a DataError naming file, line and field."""
    for field in REQUIRED_TEXT:
        if field not in row:
            raise DataError(path, line, field, "missing")
        value = row[field]
        if not isinstance(value, str):
            raise DataError(path, line, field, f"expected a string, got {type(value).__name__}")
        if not value.strip():
            raise DataError(path, line, field, "empty after trimming whitespace")
    for field, types in OPTIONAL_FIELDS.items():
        value = row.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise DataError(path, line, field, f"unexpected type {type(value).__name__}")
    clean = {**row, "question": row["question"].strip(), "answer": row["answer"].strip()}
    clean["id"] = row.get("id") if row.get("id") is not None else line
    return clean


def filter_reason(row: dict, filters: dict) -> str | None:
    min_score, max_chars = filters.get("min_score"), filters.get("max_answer_chars")
    if min_score is not None and row.get("score") is not None and row["score"] < min_score:
        return "low_score"
    if max_chars is not None and len(row["answer"]) > max_chars:
        return "answer_too_long"
    return None


def clean_rows(path: str, filters: dict, skip_bad_rows: bool) -> tuple[list[dict], Counter]:
    """Valid, unique, unfiltered rows in file order, and the count dropped for each reason."""
    kept, dropped, seen, ids = [], Counter(), set(), set()
    for line, row in iter_jsonl(path):
        try:
            row = validate_row(row, path, line)
            if str(row["id"]) in ids:
                raise DataError(path, line, "id", f"duplicate id {row['id']!r}")
        except DataError as e:
            if not skip_bad_rows:
                raise
            log.warning("Skipping bad row: %s", e)
            dropped["malformed"] += 1
            continue
        ids.add(str(row["id"]))
        key = normalize_text(row["question"])
        if key in seen:
            dropped["duplicate_question"] += 1
            continue
        seen.add(key)
        reason = filter_reason(row, filters)
        if reason:
            dropped[reason] += 1
            continue
        kept.append(row)
    return kept, dropped


def split_rows(rows: list[dict], val_fraction: float, heldout_fraction: float, seed: int):
    """Seeded shuffle, then held-out, val and train slices (every split gets at least one row)."""
    if len(rows) < 3:
        raise DataError("splits", None, None, f"only {len(rows)} usable rows; need at least 3 to split")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_heldout = max(1, round(len(rows) * heldout_fraction))
    n_val = max(1, round(len(rows) * val_fraction))
    if n_heldout + n_val >= len(rows):
        raise DataError("splits", None, None, "val_fraction + heldout_fraction leave no training rows")
    pick = lambda idx: [rows[i] for i in sorted(idx)]  # noqa: E731 - keep file order inside a split
    return pick(order[n_heldout + n_val :]), pick(order[n_heldout : n_heldout + n_val]), pick(order[:n_heldout])


def main(smk):
    cfg = smk.params.splits
    rows, dropped = clean_rows(smk.input[0], cfg.get("filters") or {}, cfg.get("skip_bad_rows", False))
    train, val, heldout = split_rows(rows, cfg["val_fraction"], cfg["heldout_fraction"], cfg["seed"])
    write_jsonl(smk.output.train, train)
    write_jsonl(smk.output.val, val)
    write_jsonl(smk.output.heldout, heldout)
    stats = {
        "n_raw": len(rows) + sum(dropped.values()),
        "n_kept": len(rows),
        "dropped": {reason: dropped.get(reason, 0) for reason in
                    ("malformed", "duplicate_question", "low_score", "answer_too_long")},
        "n_train": len(train),
        "n_val": len(val),
        "n_heldout": len(heldout),
        "seed": cfg["seed"],
        "filters": cfg.get("filters") or {},
    }
    write_json(smk.output.stats, stats)
    log.info("Splits: %s", stats)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
