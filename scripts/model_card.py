"""Stage model card: a Hugging Face model card (README.md with YAML metadata) for one adapter,
written beside the adapter folder once the tables exist: its data, its recipe (every SFTConfig
argument it trained with), its training figures, this run's evaluation of its setting per test
set and judge with the crossed intervals, what those numbers mean and do not, and how to load it
with peft. The numbers are the tables' and the training stage's, not recomputed."""

import csv
from pathlib import Path

import jinja2
import yaml

from huatuo_study.common import read_json, read_jsonl, run_stage, write_text

# Tags the hub's PEFT cards carry, and ours.
TAGS = ["peft", "lora", "qlora", "sft", "trl", "medical", "chinese", "huatuo26m-lite"]


def read_csv(path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def read_benchmark(path) -> dict:
    """Snakemake's benchmark of a job: one tab-separated row (s, max_rss in MB, ...)."""
    with open(path, encoding="utf-8", newline="") as f:
        return next(csv.DictReader(f, delimiter="\t"))


def mean_score(wins, ties, losses, invalid) -> float:
    """The project's one measure: win 1, tie 1/2, loss 0, an unreadable verdict 1/2."""
    wins, ties, losses, invalid = (int(x) for x in (wins, ties, losses, invalid))
    return (wins + (ties + invalid) / 2) / (wins + ties + losses + invalid)


def rate_from_score(score: float | None) -> float | None:
    """The mean score against the baseline a Bradley-Terry score stands for (the inverse of
    bradley_terry.elo_from_rate: 1000 + 400 log10(p / (1 - p)))."""
    return None if score is None else 1 / (1 + 10 ** (-(score - 1000) / 400))


def final_losses(loss_rows: list[dict]) -> dict:
    """The last logged train and validation losses and their steps."""
    out = {}
    for split in ("train", "val"):
        rows = [r for r in loss_rows if r["split"] == split]
        out[split] = {"step": int(rows[-1]["step"]), "loss": float(rows[-1]["loss"])} if rows else None
    return out


def training_figures(stats: dict, loss_rows: list[dict], benchmark: dict) -> dict:
    """What the training job did, from its stats, its loss CSV and Snakemake's benchmark."""
    return {
        "steps": stats["global_step"],
        "epochs": stats["epochs"],
        "tokens": stats.get("train_tokens"),
        "tokens_per_s": stats["train_tokens_per_s"],
        "runtime_s": stats["train_runtime_s"],
        "job_wall_s": float(benchmark["s"]),
        "max_rss_mb": float(benchmark["max_rss"]),
        "device": stats["device"],
        "peak_gpu_gib": stats["peak_gpu_gib"],
        "trainable_parameters": stats["trainable_parameters"],
        "execution": stats["execution"],
        "versions": stats["versions"],
        "final": final_losses(loss_rows),
    }


def evaluation(setting: str, replicate: int, tables: dict) -> dict:
    """One test set's evaluation by one judge for this setting: the ranking table's mean score and
    Bradley-Terry score with the crossed interval (over questions and training runs), the win-rate
    table's counts (replicates pooled), this replicate's own counts, and the claims it is in."""
    rank = next(r for r in tables["ranking"] if r["setting"] == setting)
    pooled = next(r for r in tables["winrate"] if r["setting"] == setting)
    own = next(r for r in tables["replicates"] if r["setting"] == setting and int(r["replicate"]) == replicate)
    claims = [c for c in tables["claims"] if setting in (c["setting"], c["against"]) and c["effect"] is not None]
    return {
        "mean_score": rank["win_rate"],
        "mean_score_low": rate_from_score(rank["ci_low"]),
        "mean_score_high": rate_from_score(rank["ci_high"]),
        "score": rank["score"],
        "score_low": rank["ci_low"],
        "score_high": rank["ci_high"],
        "rank": rank["rank"],
        "ranked": len(tables["ranking"]),
        "note": rank["note"],
        "questions": rank["n"],
        "replicates": rank["replicates"],
        "wins": pooled["wins"],
        "ties": pooled["ties"],
        "losses": pooled["losses"],
        "invalid": pooled["invalid"],
        "replicate_mean_score": mean_score(own["wins"], own["ties"], own["losses"], own["invalid"]),
        "replicate_counts": {k: int(own[k]) for k in ("wins", "ties", "losses", "invalid")},
        "claims": claims,
    }


def metadata(base_model: str, dataset: str, licence: str) -> dict:
    """The card's YAML front matter, in the hub's model card fields."""
    return {
        "base_model": base_model,
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "license": licence,
        "language": ["zh"],
        "datasets": [dataset],
        "tags": [*TAGS, f"base_model:adapter:{base_model}"],
    }


def base_model_id(spec: dict, manifest: dict) -> str:
    """A hub model's id; a local or built one's folder."""
    local = spec["source"] == "build" or Path(spec["source"]).exists()
    return manifest["path"] if local else spec["source"]


def render(template: str, context: dict) -> str:
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    env.filters["num"] = lambda x, d=3: "n/a" if x is None else f"{x:.{d}f}"
    env.filters["pct"] = lambda x: "n/a" if x is None else f"{100 * x:.1f}%"
    front = yaml.safe_dump(context["metadata"], allow_unicode=True, sort_keys=False)
    return f"---\n{front}---\n\n" + env.from_string(template).render(**context)


def evaluations(inputs, specs: list[dict], setting: str, replicate: int) -> list[dict]:
    """Each test set and judge (specs, in the order the rule lists their tables) with its numbers."""
    out = []
    for k, spec in enumerate(specs):
        tables = {
            "ranking": read_json(inputs.ranking[k]),
            "claims": read_json(inputs.claims[k]),
            "winrate": read_json(inputs.winrate[k]),
            "replicates": read_csv(inputs.replicates[k]),
        }
        out.append({**spec, **evaluation(setting, replicate, tables)})
    return out


def main(smk):
    from huatuo_study.model.sft_recipe import recipe_args  # TRL only where a card is written

    p, i = smk.params, smk.input
    setting, replicate = smk.wildcards.setting, int(smk.wildcards.replicate)
    manifest = read_json(i.model)
    base = base_model_id(p.base_model, manifest)
    training = recipe_args(p.setting["training"], "<checkpoints>", p.device, setting)
    del training["output_dir"]  # the job's checkpoint folder, deleted after training
    context = {
        "metadata": metadata(base, p.data["source"], p.license),
        "run": p.run,
        "setting": setting,
        "replicate": replicate,
        "title": p.title,
        "spec": p.setting,
        "base_model": base,
        "base_spec": p.base_model,
        "quantization": p.quantization,
        "data": p.data,
        "rows": {"train": len(read_jsonl(i.train)), "val": len(read_jsonl(i.val))},
        "split_stats": read_json(i.split_stats),
        "augment": read_json(i.augment_stats[0]) if i.augment_stats else None,
        "training": dict(sorted(training.items())),
        "figures": training_figures(read_json(i.stats), read_csv(i.loss), read_benchmark(i.benchmark)),
        "evaluations": evaluations(i, p.evaluations, setting, replicate),
        "adapter_path": i.adapter,
        "merged_path": p.merged,
        "built_model": p.base_model["source"] == "build",
    }
    write_text(smk.output.card, render(Path(i.template).read_text(encoding="utf-8"), context))


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
