"""Stage raw: Huatuo26M-Lite from the Hugging Face hub (by id and revision) or from a local
.jsonl/.json/.parquet/.csv file, written as results/<run>/data/raw.jsonl."""

import os
from pathlib import Path

import datasets

from huatuo_study.common import PipelineError, log, run_stage, write_jsonl

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_rows(source: str, revision: str | None = None, split: str = "train") -> datasets.Dataset:
    """Load a hub dataset or a local file with `datasets`, whatever its format."""
    suffix = Path(source).suffix.lower()
    if suffix in LOCAL_FORMATS or os.path.exists(source):
        if not os.path.isfile(source):
            raise PipelineError(f"data.source: local file '{source}' does not exist")
        if suffix not in LOCAL_FORMATS:
            raise PipelineError(f"data.source: '{source}' has an unknown format; use one of {', '.join(LOCAL_FORMATS)}")
        try:
            return datasets.load_dataset(LOCAL_FORMATS[suffix], data_files=source, split="train")
        except Exception as e:  # datasets wraps parse errors in several exception types
            raise PipelineError(f"data.source: cannot read '{source}' as {suffix}: {e}") from e
    log.info("Loading %s (revision %s, split %s) from the hub", source, revision, split)
    return datasets.load_dataset(source, revision=revision, split=split)


def take_subset(rows: datasets.Dataset, subset: dict | None) -> datasets.Dataset:
    """Rows [start, stop), shuffled with seed, first n: how the course sampled its 500 rows."""
    if not subset:
        return rows
    start, stop = subset["start"], subset["stop"] or len(rows)
    if stop > len(rows) or start >= stop:
        raise PipelineError(f"data.subset: rows [{start}, {stop}) are outside the {len(rows)} rows of the data")
    window = rows.select(range(start, stop)).shuffle(seed=subset["seed"])
    return window.select(range(min(subset["n"], len(window))))


def main(smk):
    data = smk.params.data
    rows = take_subset(load_rows(data["source"], data["revision"], data["split"]), data.get("subset"))
    n = write_jsonl(smk.output[0], rows)
    log.info("Wrote %d raw rows to %s", n, smk.output[0])


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
