"""The paper's experiment design section, from the config and the data stages' stats: the
settings, the data and its splits, the augmentation, the models and their QLoRA hyperparameters,
the decoding, the judge and the fidelity table."""

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from huatuo_study.common import PipelineError
from huatuo_study.paper.formatting import fmt, need, oneline, pct
from huatuo_study.run_plan import answering_models, judges

# How the fidelity table marks a row, by its status (fidelity_table.py); a row with the study's value has no mark.
FIDELITY_MARKS = {
    "deviation": "differs",
    "not stated": "ours",
    "our reading": "our reading",
    "execution": "speed only",
    "by design": "by design",
}
# Every status, in the order the text counts them: what one row of it, and several, do.
FIDELITY_COUNTS = {
    "same": ("holds the study's value", "hold the study's value"),
    "deviation": ("differs from it in this run", "differ from it in this run"),
    "not stated": ("is ours where the study is silent", "are ours where the study is silent"),
    "our reading": ("is our reading of the study's words", "are our reading of the study's words"),
    "by design": ("differs by design", "differ by design"),
    "execution": ("changes speed only", "change speed only"),
}


def setting_specs(config: Mapping) -> list[dict]:
    """The config's settings in order, numbered from 1 (k) as the paper names them."""
    config_settings = need(config, "settings", "config")
    if not config_settings:
        raise PipelineError("config: 'settings' is empty")
    settings = []
    for k, (key, spec) in enumerate(config_settings.items(), 1):
        where = f"config settings.{key}"
        settings.append(
            {
                "k": k,
                "key": key,
                "title": oneline(spec.get("title") or key),
                "model": need(spec, "model", where),
                "control": "training" not in spec,  # an untuned control: no data, lora or training
                "data": spec.get("data"),
                "lora": spec.get("lora"),
                "training": spec.get("training"),
            }
        )
    return settings


def _warmup(training: Mapping) -> str:
    """SFTConfig's warmup_steps: a float below 1 is a share of the steps (transformers 5)."""
    steps = training.get("warmup_steps")
    if isinstance(steps, float) and steps < 1:
        return f"{fmt(steps * 100)}% of steps"
    return f"{fmt(steps)} steps" if steps is not None else "--"


def _model_source(spec: Mapping) -> str:
    source = spec.get("source", "--")
    if source == "build":
        build = spec.get("build", {})
        return (
            f"built by the pipeline: hidden size {fmt(build.get('hidden_size'))}, "
            f"{fmt(build.get('num_hidden_layers'))} layers"
        )
    revision = spec.get("revision")
    return f"{source}, revision {revision}" if revision else str(source)


def _models(config: Mapping, settings: Sequence[Mapping]) -> list[dict]:
    """Each base model once, in the order the settings first use it."""
    models_cfg = need(config, "models", "config")
    names = list(dict.fromkeys(s["model"] for s in settings))
    return [{"name": name, "source": _model_source(need(models_cfg, name, "config models"))} for name in names]


def built_models_notice(config: Mapping) -> str | None:
    """The line every page of the paper carries when a model that answers in this run (a
    setting's or a test set's baseline) is one the pipeline built: seeded random weights, at most
    briefly pretrained, whose answers say nothing about the study's question; None otherwise."""
    models_cfg = need(config, "models", "config")
    if not any(need(models_cfg, name, "config models").get("source") == "build" for name in answering_models(config)):
        return None
    return (
        "Not the study's Qwen3: models built by this pipeline from random weights, "
        "so these numbers say nothing about medicine"
    )


def baseline_text(baseline: Mapping) -> str:
    source = baseline.get("source")
    if source == "file":
        return "the ChatGPT answers of the course's test file"
    if source == "model":
        return f"the answers of the untuned base model {baseline.get('model', '--')}"
    if source == "openai":
        return f"the answers of {baseline.get('model', '--')} through an OpenAI-compatible API"
    return f"answers from {fmt(source)}"


# (row label, section of a setting, key): the rows of the hyperparameter table besides Warmup;
# training keys are SFTConfig's.
HPARAM_ROWS = [
    ("LoRA r", "lora", "r"),
    ("LoRA alpha", "lora", "alpha"),
    ("LoRA dropout", "lora", "dropout"),
    ("LoRA targets", "lora", "target_modules"),
    ("Epochs", "training", "num_train_epochs"),
    ("Batch size", "training", "per_device_train_batch_size"),
    ("Grad. accumulation", "training", "gradient_accumulation_steps"),
    ("Learning rate", "training", "learning_rate"),
    ("Weight decay", "training", "weight_decay"),
]
HPARAM_ROWS_AFTER_WARMUP = [
    ("Scheduler", "training", "lr_scheduler_type"),
    ("Optimizer", "training", "optim"),
    ("Gradient checkpointing", "training", "activation_checkpointing"),
    ("Eval steps", "training", "eval_steps"),
]


def hparam_rows(settings: list[dict]) -> list[dict]:
    """The table's rows over the trained settings (controls train nothing)."""
    settings = [s for s in settings if not s["control"]]

    def rows(spec):
        return [
            {"label": label, "values": [fmt(s[section].get(key)) for s in settings]} for label, section, key in spec
        ]

    return [
        {"label": "Model", "values": [fmt(s["model"]) for s in settings]},
        {"label": "Data variant", "values": [fmt(s["data"]) for s in settings]},
        *rows(HPARAM_ROWS),
        {"label": "Warmup", "values": [_warmup(s["training"]) for s in settings]},
        *rows(HPARAM_ROWS_AFTER_WARMUP),
    ]


def shared_rows(rows: Sequence[Mapping]) -> list[dict]:
    """The rows whose value every trained setting shares (with more than one setting), as
    {label, value}: the paper states them once instead of in every column."""
    return [
        {"label": row["label"], "value": row["values"][0]}
        for row in rows
        if len(row["values"]) > 1 and len(set(row["values"])) == 1
    ]


def split_text(split_stats: Mapping) -> dict:
    where = "split stats"
    dropped = need(split_stats, "dropped", where) or {}
    reasons = [f"{n} {reason.replace('_', ' ')}" for reason, n in dropped.items() if n]
    return {
        "n_raw": need(split_stats, "n_raw", where),
        "n_kept": need(split_stats, "n_kept", where),
        "dropped": "; ".join(reasons) if reasons else "none",
        "seed": need(split_stats, "seed", where),
        **{k: need(split_stats, k, where) for k in ("n_train", "n_val", "n_heldout", "n_unused")},
    }


def _subset_text(subset: Mapping | None) -> str | None:
    if not subset:
        return None
    return (
        f"A sample of {fmt(subset.get('n'))} rows drawn from rows {fmt(subset.get('start'))} to "
        f"{fmt(subset.get('stop'))} with seed {fmt(subset.get('seed'))}"
    )


def augmentation_text(stats: Mapping) -> str:
    """What augment_train.py did, from its stats: method, share, selection and what was left
    unaugmented. The synonym method's selection among rewritable questions is a deviation from
    the study, stated as one."""
    where = "augment_stats.json"
    method = need(stats, "method", where)
    n_augmented, ratio = need(stats, "n_augmented", where), fmt(100 * need(stats, "ratio", where))
    added = (
        f"The augmented training set adds a rewritten copy (answer kept) of {n_augmented} "
        f"of the {need(stats, 'n_train', where)} training questions"
    )
    if method == "llm":
        reasons = need(stats, "unaugmented_reasons", where)
        left = ", ".join(f"{n} {reason}" for reason, n in reasons.items() if n) or "none"
        return (
            f"{added}: {ratio}% were selected with seed {need(stats, 'seed', where)} and an LLM "
            f"({need(stats, 'usage', where)['model']}) rewrote the question with the study's prompt; "
            f"selected but left unaugmented: {left}"
        )
    n_pool, share = need(stats, "n_pool", where), pct(need(stats, "augmented_share", where))
    text = (
        f"{added} ({share}%; ratio {ratio}%): strict Cilin synonyms of the same part of speech replaced up to a "
        "few words in each. Deviation of this offline method from the study: the study draws its questions at "
        f"random among all training questions; here they were drawn with seed {need(stats, 'seed', where)} "
        f"among the {n_pool} questions that have a safe replacement, as most have none"
    )
    if need(stats, "pool_short", where):
        text += (
            f"; with only {n_pool} such questions, all of them were augmented instead of the "
            f"{need(stats, 'n_target', where)} that {ratio}% asks for"
        )
    return text


def decoding_text(generation: Mapping) -> str:
    if generation["do_sample"]:
        how = (
            f"sampled (temperature {fmt(generation['temperature'])}, top-p {fmt(generation['top_p'])}, "
            f"repetition penalty {fmt(generation.get('repetition_penalty', 1.0))}), each question from its own "
            f"seed derived from seed {fmt(generation.get('seed', 0))} and its id, so that an answer does not "
            "depend on the other questions of its batch"
        )
    else:
        how = f"decoded greedily (repetition penalty {fmt(generation.get('repetition_penalty', 1.0))})"
    return f"Answers are {how}, with at most {fmt(generation['max_new_tokens'])} new tokens"


def fidelity_groups(rows: Sequence[Mapping]) -> list[dict]:
    """tables/fidelity.csv's rows under their group headings, in file order."""
    groups: list[dict] = []
    for row in rows:
        if not groups or groups[-1]["name"] != row["group"]:
            groups.append({"name": row["group"], "rows": []})
        groups[-1]["rows"].append({**row, "mark": FIDELITY_MARKS.get(row["status"], "")})
    return groups


def fidelity_summary(rows: Sequence[Mapping]) -> str:
    """How many rows of tables/fidelity.csv have each status, as the clause after "lists every
    parameter ...;". A deviation is counted even when there is none, so that its absence is said."""
    counts = Counter(row["status"] for row in rows)
    unknown = sorted(set(counts) - set(FIDELITY_COUNTS))
    if unknown:
        raise PipelineError(f"tables/fidelity.csv: status {unknown} is none of {list(FIDELITY_COUNTS)}")
    parts = []
    for status, (one, several) in FIDELITY_COUNTS.items():
        n = counts[status]
        mark = f" (``{FIDELITY_MARKS[status]}'')" if status in FIDELITY_MARKS else ""
        if n:
            parts.append(f"{n} {one if n == 1 else several}{mark}")
        elif status == "deviation":
            parts.append("none differs from it in this run")
    listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    return f"of its {len(rows)} rows, {listed}."


def leakage_text(test_set: str, report: Mapping) -> dict[str, Any]:
    """data/near_duplicates/<test set>.json as a sentence and its closest pairs (question excerpts)."""
    where = f"near_duplicates/{test_set}.json"
    compared = ", ".join(f"{n} {split}" for split, n in need(report, "n_compared", where).items())
    found = need(report, "n_test_with_near_duplicate", where)
    text = (
        f"Near-duplicates in test set {test_set}: {found} of its {need(report, 'n_test', where)} questions have a "
        f"question among the {compared} rows whose character {need(report, 'ngram', where)}-grams overlap "
        f"with Jaccard similarity of at least {fmt(need(report, 'threshold', where))} (MinHash LSH finds the "
        "candidates, their exact similarity decides)"
    )
    stop = report.get("stop_threshold")
    text += (f"; the run stops at {fmt(stop)}" if stop is not None else "") + "."
    closest = [
        {
            "test_id": oneline(p["test_id"]),
            "where": f"{p['split']} {p['id']}",
            "jaccard": f"{p['jaccard']:.2f}",
            "test_question": oneline(p["test_question"])[:60],
            "question": oneline(p["question"])[:60],
        }
        for p in need(report, "closest", where)
    ]
    return {"test_set": test_set, "found": found, "text": text, "closest": closest}


def test_set_rows(config: Mapping, sizes: Mapping[str, int]) -> list[dict]:
    """Each test set: its size, where its questions come from, and its baseline."""
    rows = []
    for name, spec in need(config, "test_sets", "config").items():
        source = spec["source"]
        rows.append(
            {
                "name": name,
                "n": sizes[name],
                "baseline": baseline_text(spec["baseline"]),
                "source": "a slice of the held-out split" if source == "heldout" else f"from {fmt(source)}",
            }
        )
    return rows


def judge_rows(config: Mapping) -> list[dict]:
    """The primary judge, then the panel's, as the tables name them."""
    return [
        {
            "name": name,
            "backend": fmt(j.get("backend")),
            "model": fmt(j.get("model")),
            "tie_margin": fmt(j.get("tie_margin")),
        }
        for name, j in judges(config).items()
    ]


def design_context(
    config: Mapping,
    settings: list[dict],
    split_stats: Mapping,
    test_sizes: Mapping[str, int],
    judge_prompt: str,
    fidelity: Sequence[Mapping],
    augment_stats: Mapping | None,
    leakage: Mapping[str, Mapping],
) -> dict[str, Any]:
    """The design section's part of the template's context; the first test set is the headline."""
    data_cfg = need(config, "data", "config")
    quant = config.get("quantization") or {}
    judge = need(config, "judge", "config")
    test_sets = test_set_rows(config, test_sizes)
    trained = [s for s in settings if not s["control"]]
    hparams = hparam_rows(settings)
    shared = shared_rows(hparams)
    return {
        "title": oneline(need(need(config, "paper", "config"), "title", "config 'paper'")),
        "notice": built_models_notice(config),
        "run": need(config, "run", "config"),
        "data": {
            "source": need(data_cfg, "source", "config 'data'"),
            "revision": fmt(data_cfg.get("revision")),
            "subset": _subset_text(data_cfg.get("subset")),
            "augmentation": augmentation_text(augment_stats) if augment_stats else None,
        },
        "splits": split_text(split_stats),
        "models": _models(config, settings),
        "quantization": {key: fmt(quant.get(key)) for key in ("quant_type", "double_quant", "compute_dtype")},
        "settings": [{"k": s["k"], "key": s["key"], "title": s["title"], "control": s["control"]} for s in settings],
        "trained": [{"k": s["k"], "key": s["key"]} for s in trained],
        "hparams": [row for row in hparams if row["label"] not in {r["label"] for r in shared}],
        "hparams_shared": shared,
        "replicates": config.get("replicates", 1),
        "test": test_sets[0],
        "test_sets": test_sets,
        "leakage": [leakage_text(name, report) for name, report in leakage.items()],
        "baseline": test_sets[0]["baseline"],
        "judge": {
            "backend": fmt(judge.get("backend")),
            "model": fmt(judge.get("model")),
            "tie_margin": fmt(judge.get("tie_margin")),
            "prompt": judge_prompt,
        },
        "judges": judge_rows(config),
        "decoding": decoding_text(need(config, "generation", "config")),
        "fidelity": fidelity_groups(fidelity),
        "fidelity_summary": fidelity_summary(fidelity),
    }
