"""Stage splits: validate every raw row, drop duplicate questions and filtered rows, and split
the rest into train / val / held-out with a seed, by fractions or by row counts. Counts of what was dropped and why go to a
stats JSON."""

import random
from collections import Counter

from huatuo_study.common import DataError, iter_jsonl, log, normalize_text, run_stage, write_json, write_jsonl

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


def split_rows(
    rows: list[dict],
    seed: int,
    val_fraction: float | None = None,
    heldout_fraction: float | None = None,
    sizes: dict | None = None,
):
    """Seeded shuffle, then held-out, val and train slices: by fractions (train gets the rest;
    every split at least one row) or by row counts (`sizes`; the rows beyond them are left out,
    as the study's notebook keeps 400 + 100 rows of the whole split)."""
    if len(rows) < 3:
        raise DataError("splits", None, None, f"only {len(rows)} usable rows; need at least 3 to split")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    if sizes:
        n_heldout, n_val, n_train = sizes["heldout"], sizes["val"], sizes["train"]
        if n_heldout + n_val + n_train > len(rows):
            raise DataError(
                "splits",
                None,
                "sizes",
                f"{n_train} + {n_val} + {n_heldout} rows asked for, but only {len(rows)} usable rows remain",
            )
    else:
        n_heldout = max(1, round(len(rows) * heldout_fraction))
        n_val = max(1, round(len(rows) * val_fraction))
        n_train = len(rows) - n_heldout - n_val
        if n_train < 1:
            raise DataError("splits", None, None, "val_fraction + heldout_fraction leave no training rows")
    pick = lambda idx: [rows[i] for i in sorted(idx)]  # noqa: E731 - keep file order inside a split
    val_end = n_heldout + n_val
    return pick(order[val_end : val_end + n_train]), pick(order[n_heldout:val_end]), pick(order[:n_heldout])


def main(smk):
    cfg = smk.params.splits
    rows, dropped = clean_rows(smk.input[0], cfg["filters"], cfg["skip_bad_rows"])
    train, val, heldout = split_rows(
        rows, cfg["seed"], cfg.get("val_fraction"), cfg.get("heldout_fraction"), cfg.get("sizes")
    )
    write_jsonl(smk.output.train, train)
    write_jsonl(smk.output.val, val)
    write_jsonl(smk.output.heldout, heldout)
    stats = {
        "n_raw": len(rows) + sum(dropped.values()),
        "n_kept": len(rows),
        "dropped": {
            reason: dropped.get(reason, 0)
            for reason in ("malformed", "duplicate_question", "low_score", "answer_too_long")
        },
        "n_train": len(train),
        "n_val": len(val),
        "n_heldout": len(heldout),
        "n_unused": len(rows) - len(train) - len(val) - len(heldout),
        "seed": cfg["seed"],
        "filters": cfg.get("filters") or {},
    }
    from huatuo_study.versions import SPLIT, versions

    write_json(smk.output.stats, {**stats, "versions": versions(SPLIT)})  # for the paper's provenance
    log.info("Splits: %s", stats)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
