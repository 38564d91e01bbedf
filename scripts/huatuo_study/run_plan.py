"""What a validated config implies for the run, as pure functions of the config: its settings and
controls, replicates, test sets and their held-out slices, judges, key variables, GPU job sizes
and compute jobs. rules/common.smk wraps them for the rules, and the stages call them, rather than
each reading the config's layout on its own."""

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

# The paper's figures, by the name the template uses, as files beside paper.tex (which refers to
# them by these relative names, so that paper_pdf can compile a copy of both elsewhere).
FIGURES = {
    "loss": "loss_curves.pdf",
    "winrate": "win_rates.pdf",
    "lengths": "answer_lengths.pdf",
    "ranking": "ranking.pdf",
}

# Job sizes of the GPU rules (their resources: mem_mb, runtime), so that a cluster profile asks
# for what each setting needs: host memory and wall time grow with the base model's size in
# billions of parameters, read from its hub id or folder name ("Qwen/Qwen3-14B" -> 14); the tiny
# models the demo builds are small, a name without a size counts as GPU_JOB_DEFAULT_BILLIONS.
# A retry (--retries) asks for 50% more each time; a training job killed at its time limit
# resumes from its last checkpoint. `--set-resources RULE:mem_mb=...` still overrides these.
GPU_JOB_DEFAULT_BILLIONS = 8
GPU_JOB_SIZES = {  # job kind -> (MB, MB per billion), (minutes, minutes per billion)
    "train": ((16000, 4000), (60, 15)),
    "generate": ((12000, 2000), (30, 5)),
}
BUILT_MODEL_JOB = (4000, 30)  # MB, minutes

# Secrets the pipeline may read besides the config's key variables (api_key_envs): the OpenAI
# client's default and the hub's tokens.
OTHER_SECRET_ENVS = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def settings(config: Mapping) -> list[str]:
    """Every setting, in config order: the paper numbers them from 1 in this order."""
    return list(config["settings"])


def controls(config: Mapping) -> list[str]:
    """A setting with no training is an untuned control: its base model answers with no adapter."""
    return [s for s, spec in config["settings"].items() if "training" not in spec]


def trained(config: Mapping) -> list[str]:
    return [s for s, spec in config["settings"].items() if "training" in spec]


def replicates(config: Mapping) -> list[int]:
    return list(range(config["replicates"]))


def test_sets(config: Mapping) -> list[str]:
    return list(config["test_sets"])


def headline(config: Mapping) -> str:
    """The first test set (by the primary judge) gives the paper's headline numbers."""
    return test_sets(config)[0]


def judges(config: Mapping) -> dict[str, Mapping]:
    """Judge name -> its section: the primary judge (`judge`) first, then `judge_panel`'s."""
    return {"primary": config["judge"], **config["judge_panel"]}


def judge_key(judge: str) -> str:
    """The config key of a judge's section, as errors name it: judge or judge_panel.<name>."""
    return "judge" if judge == "primary" else f"judge_panel.{judge}"


def run_config(config: Mapping) -> dict:
    """The config as the paper and the fidelity table see it: not the YAML anchors' source
    (recipes) nor the card's memory or the processes per training job, which only change speed (a
    bigger card or more of them rerun nothing), nor the exports, nor the human labels (the paper
    reads their agreement table, an input, not the keys), nor the budget, which only gates the run."""
    return {
        k: v
        for k, v in config.items()
        if k
        not in (
            "recipes",
            "gpu_memory_gib",
            "training_processes",
            "export",
            "label_sheet",
            "human_labels",
            "budget_usd",
        )
    }


def compares_with_published(config: Mapping, test_set: str, judge: str) -> bool:
    """The study published its judge's win rates against the course file's ChatGPT answers: ours
    are only comparable with them on such a test set, by the primary judge."""
    spec = config["test_sets"][test_set]
    return judge == "primary" and spec["baseline"]["source"] == "file" and spec["source"] != "heldout"


def heldout_slice(config: Mapping, test_set: str) -> dict[str, int] | None:
    """Held-out test sets take consecutive, disjoint slices of the (already shuffled) held-out
    split, in config order: [start, start + n). A course file's set has none (so that the
    held-out sets' sizes are no param of it and rerun nothing there)."""
    start = 0
    for name, spec in config["test_sets"].items():
        if name == test_set:
            heldout = spec["source"] == "heldout"
            return {"start": start, "stop": start + spec["n"]} if heldout else None
        if spec["source"] == "heldout":
            start += spec["n"]
    raise KeyError(f"test_sets: no test set {test_set!r} ({', '.join(config['test_sets'])})")


def setting_params(config: Mapping, setting: str, replicate: int) -> dict:
    """What determines a replicate's adapter (its display title does not): replicate r trains with
    the recipe's seed + r (data order, LoRA initialisation)."""
    params = {key: value for key, value in config["settings"][setting].items() if key != "title"}
    training = params["training"]
    params["training"] = {**training, "seed": training["seed"] + int(replicate)}
    return params


def replicate_generation(config: Mapping, replicate: int) -> dict:
    """Replicate r decodes with the generation seed + r."""
    generation = config["generation"]
    return {**generation, "seed": generation["seed"] + int(replicate)}


def controls_by_setting(config: Mapping) -> dict[str, str]:
    """Trained setting -> the untuned control of its base model (the claim "SFT is effective")."""
    spec = config["settings"]
    control_of_model = {spec[c]["model"]: c for c in controls(config)}
    return {s: control_of_model[spec[s]["model"]] for s in trained(config) if spec[s]["model"] in control_of_model}


def statistics_of(config: Mapping, *keys: str) -> dict:
    """The `statistics` settings a stage's output depends on, and no others."""
    return {key: config["statistics"][key] for key in keys}


def card_evaluations(config: Mapping) -> list[dict]:
    """Each test set and judge the model cards report, test sets first (as every table of every
    test set by every judge is listed)."""
    panel = judges(config)
    return [
        {"test_set": t, "judge": j, "judge_model": f"{panel[j]['backend']}: {panel[j]['model']}"}
        for t in test_sets(config)
        for j in panel
    ]


def compute_jobs(config: Mapping) -> list[dict]:
    """The GPU jobs that record their compute (device, peak GPU memory, tokens/s) beside
    Snakemake's benchmark, each as its rule's name and its wildcards, in the compute table's
    order: every trained setting's replicates, then every test set's answers by every setting and
    replicate. A model baseline's job records no such stats and is not among them."""
    train = [
        {"rule": "train_adapter", "setting": s, "replicate": r} for s in trained(config) for r in replicates(config)
    ]
    generate = [
        {"rule": "generate_answers", "test_set": t, "setting": s, "replicate": r}
        for t in test_sets(config)
        for s in settings(config)
        for r in replicates(config)
    ]
    return train + generate


def reports_to_tensorboard(config: Mapping) -> bool:
    """Whether any trained setting's recipe reports to TensorBoard (the training rule's folder)."""
    return any(config["settings"][s]["training"].get("report_to") == "tensorboard" for s in trained(config))


def answering_models(config: Mapping) -> list[str]:
    """Every model that answers: the settings' base models and the model baselines."""
    models = {s["model"] for s in config["settings"].values()}
    models |= {t["baseline"]["model"] for t in config["test_sets"].values() if t["baseline"]["source"] == "model"}
    return sorted(models)


def setting_numbers(config: Mapping) -> dict[str, int]:
    """Setting -> its number in the paper, from 1 in config order."""
    return {s: k for k, s in enumerate(settings(config), 1)}


def trained_numbers(config: Mapping) -> dict[str, tuple[int, str]]:
    """Trained setting -> (its number in the paper, its display title): the loss curves' labels."""
    spec = config["settings"]
    return {s: (k, spec[s].get("title") or s) for s, k in setting_numbers(config).items() if "training" in spec[s]}


def augmentation_params(config: Mapping) -> dict:
    """What determines the augmented data: the method's own section only, so that editing the other
    method's keys reruns nothing."""
    augmentation = config["augmentation"]
    method = augmentation["method"]
    return {**{k: augmentation[k] for k in ("method", "ratio", "seed")}, method: augmentation[method]}


def augmentation_protected_terms(config: Mapping) -> list[str]:
    """The synonym method reads its protected medical terms; the LLM method reads nothing more."""
    augmentation = config["augmentation"]
    return [augmentation["synonym"]["protected_terms"]] if augmentation["method"] == "synonym" else []


def uses_augmentation(config: Mapping) -> bool:
    """Whether any setting trains on the augmented data (the paper describes it only then)."""
    return any(s.get("data") == "augmented" for s in config["settings"].values())


def model_billions(config: Mapping, model: str) -> float:
    """A model's size in billions of parameters, from its hub id or folder name; 0 for a model the
    pipeline builds."""
    source = config["models"][model]["source"]
    if source == "build":
        return 0
    found = re.search(r"(\d+(?:\.\d+)?)[bB](?![a-zA-Z0-9])", os.path.basename(source.rstrip("/")))
    return float(found[1]) if found else GPU_JOB_DEFAULT_BILLIONS


def gpu_job_size(config: Mapping, kind: str, setting: str, attempt: int = 1) -> tuple[int, int]:
    """(mem_mb, runtime in minutes) of a setting's training or generation job."""
    billions = model_billions(config, config["settings"][setting]["model"])
    if billions == 0:
        mem_mb, minutes = BUILT_MODEL_JOB
    else:
        (mb, mb_per_b), (min0, min_per_b) = GPU_JOB_SIZES[kind]
        mem_mb, minutes = mb + mb_per_b * billions, min0 + min_per_b * billions
    scale = 1 + 0.5 * (attempt - 1)
    return int(mem_mb * scale), int(minutes * scale)


def api_key_envs(config: Mapping, rules: Iterable[str] | None = None) -> list[str]:
    """The environment variables that the OpenAI-compatible calls of the config read their keys
    from (each section's api_key_env): openai judges (rule judge_pairwise), openai baselines
    (baseline_answers) and the LLM augmentation (augment_train); only those of `rules` if given."""
    callers = [("judge_pairwise", judge) for judge in judges(config).values() if judge["backend"] == "openai"]
    callers += [
        ("baseline_answers", spec["baseline"])
        for spec in config["test_sets"].values()
        if spec["baseline"]["source"] == "openai"
    ]
    if config["augmentation"]["method"] == "llm":
        callers.append(("augment_train", config["augmentation"]["llm"]))
    wanted = None if rules is None else set(rules)
    return sorted({section["api_key_env"] for rule, section in callers if wanted is None or rule in wanted})


def secret_envs(config: Mapping) -> list[str]:
    """Every environment variable whose value no output of the paper may contain."""
    return sorted({*OTHER_SECRET_ENVS, *api_key_envs(config)})


# The rules that call a paid API (each only where its config section says openai or llm).
PAID_RULES = frozenset({"judge_pairwise", "baseline_answers", "augment_train"})


def cost_plan_rows(config: Mapping, judge_prompt: str) -> list[dict]:
    """The cost plan's rows (huatuo_study.paid_calls), as rule cost_plan writes them for this config."""
    from huatuo_study.paid_calls import plan  # the OpenAI client's import only where a budget is checked

    return plan(
        judges(config),
        config["test_sets"],
        len(settings(config)),
        config["replicates"],
        config["generation"]["max_new_tokens"],
        config["augmentation"],
        config["splits"].get("sizes", {}).get("train"),
        judge_prompt,
    )


def budget_problem(budget_usd: float | None, rows: list[dict]) -> str | None:
    """Why the paid calls of the cost plan `rows` may not start under `budget_usd` (None: they may)."""
    if budget_usd is None or not rows:
        return None
    unpriced = [f"{r['stage']} {r['caller']}" for r in rows if r["cost_usd"] is None]
    if unpriced:
        return (
            f"budget_usd: {budget_usd} is set, but {', '.join(unpriced)} has no price_per_million, so the run's "
            "cost cannot be held to it: set its prices (USD per million input and output tokens)"
        )
    total = sum(r["cost_usd"] for r in rows)
    if total > budget_usd:
        return (
            f"budget_usd: this config's paid calls come to at most {total:.2f} USD ({sum(r['calls'] for r in rows)} "
            f"calls; `snakemake --cores 1 cost_plan` lists them), over the budget of {budget_usd} USD; nothing "
            "was called. Raise budget_usd, or make the run smaller"
        )
    return None


def preflight_problems(
    config: Mapping,
    rules: Iterable[str],
    environ: Mapping[str, str],
    tex_found: bool,
    exists: Callable[[str], Any] = os.path.exists,
    judge_prompt: str = "",
) -> list[str]:
    """What the jobs of `rules` (those about to run) will need later and is not here now, each as
    one message: a key variable unset, LaTeX missing for the PDF, a course file absent, a cost plan
    over budget_usd (with the judge's prompt text). `exists` says whether a path is there."""
    rules = set(rules)
    problems = []
    if rules & PAID_RULES and config.get("budget_usd") is not None:
        over = budget_problem(config["budget_usd"], cost_plan_rows(config, judge_prompt))
        problems += [over] if over else []
    missing = [env for env in api_key_envs(config, rules) if not environ.get(env)]
    if missing:
        problems.append(
            f"environment variable {', '.join(missing)} is not set; the judge, baseline or "
            "augmentation stage of this config calls an OpenAI-compatible API with it (see "
            "the api_key_env of judge, judge_panel.<name>, test_sets.<name>.baseline, augmentation.llm)"
        )
    if "paper_pdf" in rules and not tex_found:
        problems.append(
            "latexmk/xelatex not found: the paper's PDF needs the Debian packages latexmk "
            "texlive-xetex texlive-lang-chinese texlive-fonts-recommended fonts-noto-cjk (see README)"
        )
    if "test_set" in rules:
        problems += [
            f"test_sets.{name}.source: the course file '{spec['source']}' does not exist; put the "
            "course's JSON list of [question, baseline_answer] there or point the source at it"
            for name, spec in config["test_sets"].items()
            if spec["source"] != "heldout" and not exists(spec["source"])
        ]
    return problems
