"""The paper's compute table: the rows of tables/compute.csv (compute_table.py) as table text, and
the model baselines whose answering jobs record no compute stats, so that the paper says they
are not listed."""

from collections.abc import Mapping, Sequence

from huatuo_study.common import PipelineError
from huatuo_study.paper.formatting import need
from huatuo_study.records import COMPUTE_TOTAL as TOTAL

JOBS = {"train_adapter": "training", "generate_answers": "answering"}


def _cell(value: float | None, spec: str) -> str:
    return "--" if value is None else format(value, spec)


def _cells(row: Mapping) -> dict:
    return {
        "device": row["device"],
        "wall_s": _cell(row["wall_s"], ",.1f"),
        "max_rss_mib": _cell(row["max_rss_mib"], ",.0f"),
        "peak_gpu_gib": _cell(row["peak_gpu_gib"], ".2f"),
        "tokens_per_s": _cell(row["tokens_per_s"], ",.1f"),
    }


def compute_context(rows: Sequence[Mapping], settings: Sequence[Mapping], config: Mapping) -> dict:
    """{rows: one per job (its kind, test set, setting number k, replicate and cells), total: the
    all-GPU-jobs row's cells, unlisted: [{model, test_sets}] of the model baselines}."""
    if not rows or rows[-1]["rule"] != TOTAL:
        raise PipelineError(f"compute table: its last row is not the '{TOTAL}' row")
    *jobs, total = rows
    number = {s["key"]: s["k"] for s in settings}
    unknown = sorted({r["setting"] for r in jobs} - set(number))
    if unknown:
        raise PipelineError(f"compute table: setting(s) {unknown} not in the config")
    baselines: dict[str, list[str]] = {}
    for name, spec in need(config, "test_sets", "config").items():
        if spec["baseline"]["source"] == "model":
            baselines.setdefault(spec["baseline"]["model"], []).append(name)
    return {
        "rows": [
            {
                "job": JOBS.get(r["rule"], r["rule"]),
                "test_set": r["test_set"],
                "k": number[r["setting"]],
                "replicate": r["replicate"],
                **_cells(r),
            }
            for r in jobs
        ],
        "total": {"jobs": len(jobs), "wall_h": f"{total['wall_s'] / 3600:,.1f}", **_cells(total)},
        "unlisted": [{"model": m, "test_sets": t} for m, t in baselines.items()],
    }
