"""Stage compute table: one row per GPU job (every training replicate, every answering job) with
Snakemake's benchmark of the whole job (wall time, max RSS) beside what the job's stage recorded
(device, which of the machine's GPUs, peak GPU memory, tokens/s), and a last row over all GPU jobs, in
results/<run>/tables/compute.csv; the paper's compute table prints it."""

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence

from huatuo_study.common import DataError, PipelineError, log, run_stage, write_text
from huatuo_study.records import COMPUTE_COLUMNS as COLUMNS
from huatuo_study.records import COMPUTE_TOTAL as TOTAL
from huatuo_study.records import number_cell

FORM_COLUMNS = ("memory_budget_gib", "form", "batch_size")
# The key under which each rule's stage records its throughput in its stats file.
TOKENS_PER_S = {"train_adapter": "train_tokens_per_s", "generate_answers": "tokens_per_s"}


def read_benchmark(path: str | os.PathLike) -> dict:
    """Snakemake's benchmark TSV of one job: its wall time (column s) and max RSS in MiB (max_rss;
    "NA" where the job ended before Snakemake's first sample of its memory)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        for column in ("s", "max_rss"):
            if column not in (reader.fieldnames or []):
                raise DataError(path, 1, column, "missing column")
        rows = list(reader)
    if len(rows) != 1:  # one per run of the job: the rules set no benchmark repeats
        raise DataError(path, None, None, f"expected one benchmark row, found {len(rows)}")
    rss = rows[0]["max_rss"]
    return {
        "wall_s": number_cell(rows[0]["s"], path, 2, "s"),
        "max_rss_mib": None if rss == "NA" else number_cell(rss, path, 2, "max_rss"),
    }


def job_form(stats: Mapping, rule: str) -> dict:
    """The memory budget a job held to, the form its model took (training: the frozen base, 4-bit or
    dequantised; answering: merged or 4-bit with the adapter) and its batch (training: the micro-batch)."""
    if rule == "train_adapter":
        execution = stats.get("execution") or {}
        form, batch = execution.get("frozen_base"), execution.get("micro_batch")
    else:
        form, batch = stats.get("form"), stats.get("batch_size")
    return {"memory_budget_gib": stats.get("memory_budget_gib"), "form": form, "batch_size": batch}


def read_stats(path: str | os.PathLike, rule: str) -> dict:
    """A training or answering job's stats JSON: its device, its GPUs (CUDA_VISIBLE_DEVICES as the
    job saw it: "1", "0,1"; null on the CPU), peak GPU memory (null on the CPU), tokens/s (null
    where the trainer logged no runtime) and job_form's fields (null where not recorded)."""
    try:
        with open(path, encoding="utf-8") as f:
            stats = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"not valid JSON ({e.msg})") from None
    if not isinstance(stats, dict):
        raise DataError(path, None, None, "not a JSON object")
    fields = {"device": "device", "gpu": "gpu", "peak_gpu_gib": "peak_gpu_gib", "tokens_per_s": TOKENS_PER_S[rule]}
    for key in fields.values():
        if key not in stats:
            raise DataError(path, None, key, "missing")
    device = stats["device"]
    if not isinstance(device, str) or not device:
        raise DataError(path, None, "device", f"not a device name ({device!r})")
    gpu = stats["gpu"]
    if gpu is not None and (not isinstance(gpu, str) or not gpu):
        raise DataError(path, None, "gpu", f"not a GPU list ({gpu!r})")
    return {
        "device": device,
        "gpu": gpu,
        **{
            name: number_cell(stats[key], path, None, key, nullable=True)
            for name, key in fields.items()
            if name not in ("device", "gpu")
        },
        **job_form(stats, rule),
    }


def total_row(rows: Sequence[Mapping]) -> dict:
    """All GPU jobs: their wall time summed, the largest memory peaks, the devices and GPUs they ran on."""

    def largest(column):
        return max((r[column] for r in rows if r.get(column) is not None), default=None)

    return {
        "rule": TOTAL,
        "test_set": None,
        "setting": None,
        "replicate": None,
        "device": "; ".join(dict.fromkeys(r["device"] for r in rows)),
        "gpu": "; ".join(dict.fromkeys(r["gpu"] for r in rows if r["gpu"] is not None)) or None,
        "wall_s": round(sum(r["wall_s"] for r in rows), 4),
        "max_rss_mib": largest("max_rss_mib"),
        "peak_gpu_gib": largest("peak_gpu_gib"),
        "tokens_per_s": None,
        "memory_budget_gib": largest("memory_budget_gib"),
        "form": None,
        "batch_size": None,
    }


def compute_rows(jobs: Sequence[Mapping], benchmarks: Sequence, stats: Sequence) -> list[dict]:
    """A row per job ({rule, setting, replicate[, test_set]}) from its benchmark TSV and stats JSON
    (paths, in the jobs' order), then the total row."""
    if not len(jobs) == len(benchmarks) == len(stats):
        raise PipelineError(f"{len(benchmarks)} benchmark and {len(stats)} stats file(s) for {len(jobs)} jobs")
    rows = []
    for job, benchmark, stats_path in zip(jobs, benchmarks, stats):
        recorded = read_stats(stats_path, job["rule"])
        rows.append(
            {
                "rule": job["rule"],
                "test_set": job.get("test_set"),
                "setting": job["setting"],
                "replicate": job["replicate"],
                "device": recorded["device"],
                "gpu": recorded["gpu"],
                **read_benchmark(benchmark),
                "peak_gpu_gib": recorded["peak_gpu_gib"],
                "tokens_per_s": recorded["tokens_per_s"],
                **{k: recorded[k] for k in FORM_COLUMNS},
            }
        )
    return rows + [total_row(rows)]


def to_csv(rows: Sequence[Mapping]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if row.get(k) is None else row[k] for k in COLUMNS} for row in rows)
    return out.getvalue()


def main(smk) -> None:
    rows = compute_rows(smk.params.jobs, list(smk.input.benchmarks), list(smk.input.stats))
    write_text(smk.output.csv, to_csv(rows))
    log.info("compute table: %d GPU jobs, %.1f s of wall time in all", len(rows) - 1, rows[-1]["wall_s"])


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
