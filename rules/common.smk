# Helpers shared by the rule files (paths, per-setting lookups, early checks).
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "scripts"))
from config_checks import config_problems
from run_plan import api_key_envs, judges

RESULTS = f"results/{config['run']}"
LOGS = f"{RESULTS}/logs"
# Snakemake's own measure of every job (wall time, max RSS), one TSV per job, beside its log.
BENCHMARKS = f"{RESULTS}/benchmarks"
SETTINGS = list(config["settings"])
MODELS = list(config["models"])
# A setting with no training is an untuned control: its base model answers with no adapter.
CONTROLS = [s for s in SETTINGS if "training" not in config["settings"][s]]
TRAINED = [s for s in SETTINGS if s not in CONTROLS]
REPLICATES = list(range(config["replicates"]))
# The first test set and the primary judge give the paper's headline numbers.
TEST_SETS = list(config["test_sets"])
HEADLINE = TEST_SETS[0]
JUDGES = judges(config)
# The study's facts and sources (published rates, every parameter's value and source).
STUDY = "config/study.yaml"
# The study's judge prompt, verbatim: sent by the judge, printed by the paper.
JUDGE_PROMPT = "config/judge_prompt.txt"
# The config as the paper and the fidelity table see it: not the YAML anchors' source (recipes)
# nor the card's memory or the processes per training job, which only change speed (a bigger card
# or more of them rerun nothing), nor the exports.
RUN_CONFIG = {
    k: v
    for k, v in config.items()
    if k not in ("recipes", "gpu_memory_gib", "training_processes", "export")
}
PAPER = f"{RESULTS}/paper"
# The paper's figures, by the name the template uses, as files beside paper.tex (which refers to
# them by these relative names, so that paper_pdf can compile a copy of both elsewhere).
FIGURES = {
    "loss": "loss_curves.pdf",
    "winrate": "win_rates.pdf",
    "lengths": "answer_lengths.pdf",
    "ranking": "ranking.pdf",
}


wildcard_constraints:
    setting="|".join(map(re.escape, SETTINGS)),
    test_set="|".join(map(re.escape, TEST_SETS)),
    judge="|".join(map(re.escape, JUDGES)),
    replicate=r"\d+",


def compares_with_published(test_set, judge):
    """The study published its judge's win rates against the course file's ChatGPT answers: ours
    are only comparable with them on such a test set, by the primary judge."""
    spec = config["test_sets"][test_set]
    return (
        judge == "primary"
        and spec["baseline"]["source"] == "file"
        and spec["source"] != "heldout"
    )


def check_config():
    """Cross-references the schema cannot express (scripts/config_checks.py), each naming its key."""
    problems = config_problems(config)
    if problems:
        raise ValueError("Invalid config:\n  " + "\n  ".join(problems))


check_config()


LOCAL_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


def local_data_source():
    """A local data file is an input (its edits rerun the DAG); a hub dataset id is not."""
    source = config["data"]["source"]
    return (
        [source]
        if source.endswith(LOCAL_DATA_SUFFIXES) or os.path.exists(source)
        else []
    )


def tensorboard_output():
    """The training rule's TensorBoard folder, declared where any setting's recipe reports to it."""
    reports = any(
        config["settings"][s]["training"].get("report_to") == "tensorboard"
        for s in TRAINED
    )
    folder = f"{RESULTS}/tensorboard/{{setting}}/rep{{replicate}}"
    return {"tensorboard": directory(folder)} if reports else {}


def setting_params(wildcards):
    """What determines a replicate's adapter (its display title does not): replicate r trains with
    the recipe's seed + r (data order, LoRA initialisation)."""
    setting = config["settings"][wildcards.setting]
    params = {key: value for key, value in setting.items() if key != "title"}
    training = params["training"]
    params["training"] = {
        **training,
        "seed": training["seed"] + int(wildcards.replicate),
    }
    return params


def replicate_generation(wildcards):
    """Replicate r decodes with the generation seed + r."""
    generation = config["generation"]
    return {**generation, "seed": generation["seed"] + int(wildcards.replicate)}


def adapter_input(wildcards):
    """A trained setting's adapter for this replicate; a control answers with none."""
    if wildcards.setting in CONTROLS:
        return []
    return [f"{RESULTS}/adapters/{wildcards.setting}/rep{wildcards.replicate}"]


def runs_of(pattern, settings=SETTINGS, **wildcards):
    """`pattern` for every setting and replicate (and the given wildcards), in config order."""
    return expand(pattern, setting=settings, replicate=REPLICATES, **wildcards)


def controls_by_setting():
    """Trained setting -> the untuned control of its base model (the claim "SFT is effective")."""
    control_of_model = {config["settings"][c]["model"]: c for c in CONTROLS}
    return {
        s: control_of_model[config["settings"][s]["model"]]
        for s in TRAINED
        if config["settings"][s]["model"] in control_of_model
    }


def verdicts_of(test_set, judge):
    return runs_of(
        f"{RESULTS}/verdicts/{{test_set}}/{{judge}}/{{setting}}/rep{{replicate}}.jsonl",
        test_set=test_set,
        judge=judge,
    )


def statistics_of(*keys):
    """The `statistics` settings a stage's output depends on, and no others."""
    return {key: config["statistics"][key] for key in keys}


def tables_of(name):
    """A table of every test set by every judge, test sets first: tables/<test set>/<judge>/<name>."""
    return expand(
        f"{RESULTS}/tables/{{test_set}}/{{judge}}/{name}",
        test_set=TEST_SETS,
        judge=JUDGES,
    )


def card_evaluations():
    """Each test set and judge the model cards report, in tables_of()'s order."""
    return [
        {
            "test_set": t,
            "judge": j,
            "judge_model": f"{JUDGES[j]['backend']}: {JUDGES[j]['model']}",
        }
        for t in TEST_SETS
        for j in JUDGES
    ]


def export_targets():
    """Every adapter's model card, every test set's interchange files and, where export.merged is
    on, every adapter merged into its base."""
    cards = runs_of(
        f"{RESULTS}/model_cards/{{setting}}/rep{{replicate}}/README.md", TRAINED
    )
    interchange = expand(f"{RESULTS}/interchange/{{test_set}}", test_set=TEST_SETS)
    merged = runs_of(f"{RESULTS}/merged/{{setting}}/rep{{replicate}}", TRAINED)
    return cards + interchange + (merged if config["export"]["merged"] else [])


def compute_jobs():
    """The GPU jobs that record their compute (device, peak GPU memory, tokens/s) beside
    Snakemake's benchmark, each as its rule's name and its wildcards, in the compute table's
    order: every trained setting's replicates, then every test set's answers by every setting and
    replicate. A model baseline's job records no such stats and is not among them."""
    train = [
        {"rule": "train_adapter", "setting": s, "replicate": r}
        for s in TRAINED
        for r in REPLICATES
    ]
    generate = [
        {"rule": "generate_answers", "test_set": t, "setting": s, "replicate": r}
        for t in TEST_SETS
        for s in SETTINGS
        for r in REPLICATES
    ]
    return train + generate


def compute_job_files(kind):
    """Each of compute_jobs()'s benchmark TSV (kind "benchmark") or stats JSON ("stats"), in order."""
    files = []
    for job in compute_jobs():
        producer = getattr(rules, job["rule"])
        pattern = producer.benchmark if kind == "benchmark" else producer.output.stats
        wildcards = {k: v for k, v in job.items() if k != "rule"}
        files.append(expand(pattern, **wildcards)[0])
    return files


def heldout_slice(test_set):
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


def train_split(wildcards):
    variant = config["settings"][wildcards.setting]["data"]
    return (
        f"{RESULTS}/data/train_augmented.jsonl"
        if variant == "augmented"
        else f"{RESULTS}/data/train.jsonl"
    )


def answering_models():
    """Every model that answers: the settings' base models and the model baselines."""
    models = {s["model"] for s in config["settings"].values()}
    models |= {
        t["baseline"]["model"]
        for t in config["test_sets"].values()
        if t["baseline"]["source"] == "model"
    }
    return sorted(models)


def trained_numbers():
    """Trained setting -> (its number in the paper, its display title): the loss curves' labels."""
    return {
        s: (k, config["settings"][s].get("title") or s)
        for k, s in enumerate(SETTINGS, 1)
        if s in TRAINED
    }


def setting_model(wildcards):
    return f"{RESULTS}/models/{config['settings'][wildcards.setting]['model']}/manifest.json"


def test_source(wildcards):
    """The course file is an input, so that its edits rerun the test set. While it is absent a
    dry run still shows the whole DAG; a real run stops first (preflight_checks)."""
    source = config["test_sets"][wildcards.test_set]["source"]
    return [source] if source != "heldout" and os.path.exists(source) else []


def baseline_model_input(wildcards):
    baseline = config["test_sets"][wildcards.test_set]["baseline"]
    if baseline["source"] != "model":
        return []
    return [f"{RESULTS}/models/{baseline['model']}/manifest.json"]


def model_source_input(wildcards):
    """A built model learns its tokenizer from the train split; hub and local models need nothing."""
    return (
        [f"{RESULTS}/data/train.jsonl"]
        if config["models"][wildcards.model]["source"] == "build"
        else []
    )


def augmentation_params():
    """What determines the augmented data: the method's own section only, so that editing the other
    method's keys reruns nothing."""
    augmentation = config["augmentation"]
    method = augmentation["method"]
    return {
        **{k: augmentation[k] for k in ("method", "ratio", "seed")},
        method: augmentation[method],
    }


def augmentation_protected_terms():
    """The synonym method reads its protected medical terms; the LLM method reads nothing more."""
    augmentation = config["augmentation"]
    return (
        [augmentation["synonym"]["protected_terms"]]
        if augmentation["method"] == "synonym"
        else []
    )


def augment_stats_input():
    """The paper describes the augmentation only where a setting trains on it."""
    used = any(s.get("data") == "augmented" for s in config["settings"].values())
    return [f"{RESULTS}/data/augment_stats.json"] if used else []


def api_cache_dir(section, default_name):
    """Where a section's OpenAI-compatible calls are cached: its cache_dir, else one of the run's."""
    return (section or {}).get("cache_dir") or f"{RESULTS}/{default_name}"


def preflight_checks():
    """Before any GPU hour is spent: what the jobs about to run will need later must be here now."""
    rules_to_run = {job.rule.name for job in workflow.dag.needrun_jobs()}
    missing = [
        env for env in api_key_envs(config, rules_to_run) if not os.environ.get(env)
    ]
    if missing:
        raise WorkflowError(
            f"environment variable {', '.join(missing)} is not set; the judge, baseline or "
            "augmentation stage of this config calls an OpenAI-compatible API with it (see "
            "the api_key_env of judge, judge_panel.<name>, test_sets.<name>.baseline, augmentation.llm)"
        )
    tex = shutil.which("latexmk") and shutil.which("xelatex")
    if "paper_pdf" in rules_to_run and not tex:
        raise WorkflowError(
            "latexmk/xelatex not found: the paper's PDF needs the Debian packages latexmk "
            "texlive-xetex texlive-lang-chinese texlive-fonts-recommended fonts-noto-cjk (see README)"
        )
    for name, spec in config["test_sets"].items():
        source = spec["source"]
        if (
            "test_set" in rules_to_run
            and source != "heldout"
            and not os.path.exists(source)
        ):
            raise WorkflowError(
                f"test_sets.{name}.source: the course file '{source}' does not exist; put the "
                "course's JSON list of [question, baseline_answer] there or point the source at it"
            )


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


def model_billions(model_name):
    source = config["models"][model_name]["source"]
    if source == "build":
        return 0
    found = re.search(
        r"(\d+(?:\.\d+)?)[bB](?![a-zA-Z0-9])", os.path.basename(source.rstrip("/"))
    )
    return float(found[1]) if found else GPU_JOB_DEFAULT_BILLIONS


def gpu_job_size(kind, setting, attempt=1):
    """(mem_mb, runtime in minutes) of a setting's training or generation job."""
    billions = model_billions(config["settings"][setting]["model"])
    if billions == 0:
        mem_mb, minutes = BUILT_MODEL_JOB
    else:
        (mb, mb_per_b), (min0, min_per_b) = GPU_JOB_SIZES[kind]
        mem_mb, minutes = mb + mb_per_b * billions, min0 + min_per_b * billions
    scale = 1 + 0.5 * (attempt - 1)
    return int(mem_mb * scale), int(minutes * scale)


def gpu_job_resource(kind, resource):
    """A rule's mem_mb or runtime for `resources:`, by setting and attempt."""
    index = ("mem_mb", "runtime").index(resource)

    def size(wildcards, attempt):
        return gpu_job_size(kind, wildcards.setting, attempt)[index]

    return size
