# Helpers shared by the rule files (paths, per-setting lookups, early checks).
import os
import re
import shutil

RESULTS = f"results/{config['run']}"
LOGS = f"{RESULTS}/logs"
SETTINGS = list(config["settings"])
MODELS = list(config["models"])
# The study's facts and sources (published rates, every parameter's value and source).
STUDY = "config/study.yaml"
# The study's judge prompt, verbatim: sent by the judge, printed by the paper.
JUDGE_PROMPT = "config/judge_prompt.txt"
# The config as the paper and the fidelity table see it: not the YAML anchors' source (recipes)
# nor the card's memory, which only changes speed (a bigger card reruns nothing).
RUN_CONFIG = {k: v for k, v in config.items() if k not in ("recipes", "gpu_memory_gib")}
PAPER = f"{RESULTS}/paper"
# The paper's figures, by the name the template uses, as files beside paper.tex (which refers to
# them by these relative names, so that paper_pdf can compile a copy of both elsewhere).
FIGURES = {
    "loss": "loss_curves.pdf",
    "winrate": "win_rates.pdf",
    "lengths": "answer_lengths.pdf",
}


def compares_with_published():
    """The study published win rates against the course file's ChatGPT answers: ours are only
    comparable with them on that test set and that baseline."""
    return (
        config["baseline"]["source"] == "file" and config["test"]["source"] != "heldout"
    )


def check_config():
    """Cross-references the schema cannot express, reported with the key that is wrong."""
    problems = []
    for name, setting in config["settings"].items():
        if setting["model"] not in config["models"]:
            problems.append(
                f"settings.{name}.model: '{setting['model']}' is not a key of models ({', '.join(MODELS)})"
            )
    for name, model in config["models"].items():
        if (model["source"] == "build") != ("build" in model):
            problems.append(
                f"models.{name}: 'build:' is needed exactly when source is 'build'"
            )
    baseline = config["baseline"]
    if baseline["source"] == "model" and baseline.get("model") not in config["models"]:
        problems.append(
            f"baseline.model: '{baseline.get('model')}' is not a key of models"
        )
    if baseline["source"] == "openai" and not baseline.get("model"):
        problems.append("baseline.model: the OpenAI chat model to ask is missing")
    if baseline["source"] == "file" and config["test"]["source"] == "heldout":
        problems.append(
            "baseline.source: 'file' needs test.source to be a course file with baseline answers"
        )
    if (
        config["judge"]["backend"] == "reference"
        and config["test"]["source"] != "heldout"
    ):
        problems.append(
            "judge.backend: 'reference' needs reference answers, i.e. test.source: heldout"
        )
    if config["judge"].get("batch") and config["judge"]["backend"] != "openai":
        problems.append("judge.batch: the Batch API needs judge.backend: openai")
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


def setting_params(wildcards):
    """What determines a setting's adapter (its display title does not)."""
    setting = config["settings"][wildcards.setting]
    return {key: value for key, value in setting.items() if key != "title"}


def train_split(wildcards):
    variant = config["settings"][wildcards.setting]["data"]
    return (
        f"{RESULTS}/data/train_augmented.jsonl"
        if variant == "augmented"
        else f"{RESULTS}/data/train.jsonl"
    )


def setting_titles():
    """Setting -> display title, in config order: the labels of the loss curves."""
    return {s: config["settings"][s].get("title") or s for s in SETTINGS}


def setting_model(wildcards):
    return f"{RESULTS}/models/{config['settings'][wildcards.setting]['model']}/manifest.json"


def test_source():
    """The course file is an input, so that its edits rerun the test set. While it is absent a
    dry run still shows the whole DAG; a real run stops first (preflight_checks)."""
    source = config["test"]["source"]
    return [source] if source != "heldout" and os.path.exists(source) else []


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
    used = any(s["data"] == "augmented" for s in config["settings"].values())
    return [f"{RESULTS}/data/augment_stats.json"] if used else []


def api_cache_dir(section, default_name):
    """Where a section's OpenAI-compatible calls are cached: its cache_dir, else one of the run's."""
    return (section or {}).get("cache_dir") or f"{RESULTS}/{default_name}"


def api_key_envs(rule_names):
    """Environment variables that the jobs about to run read their OpenAI-compatible keys from."""
    callers = {
        "judge_pairwise": config["judge"]["backend"] == "openai" and config["judge"],
        "baseline_answers": config["baseline"]["source"] == "openai"
        and config["baseline"],
        "augment_train": config["augmentation"]["method"] == "llm"
        and config["augmentation"]["llm"],
    }
    return sorted(
        {
            section.get("api_key_env", "OPENAI_API_KEY")
            for rule, section in callers.items()
            if section and rule in rule_names
        }
    )


def preflight_checks():
    """Before any GPU hour is spent: what the jobs about to run will need later must be here now."""
    rules_to_run = {job.rule.name for job in workflow.dag.needrun_jobs()}
    missing = [env for env in api_key_envs(rules_to_run) if not os.environ.get(env)]
    if missing:
        raise WorkflowError(
            f"environment variable {', '.join(missing)} is not set; the judge, baseline or "
            "augmentation stage of this config calls an OpenAI-compatible API with it (see "
            "judge.api_key_env, baseline.api_key_env, augmentation.llm.api_key_env)"
        )
    tex = shutil.which("latexmk") and shutil.which("xelatex")
    if "paper_pdf" in rules_to_run and not tex:
        raise WorkflowError(
            "latexmk/xelatex not found: the paper's PDF needs the Debian packages latexmk "
            "texlive-xetex texlive-lang-chinese texlive-fonts-recommended fonts-noto-cjk (see README)"
        )
    source = config["test"]["source"]
    if (
        "test_set" in rules_to_run
        and source != "heldout"
        and not os.path.exists(source)
    ):
        raise WorkflowError(
            f"test.source: the course file '{source}' does not exist; put the course's JSON list "
            "of [question, baseline_answer] there or point test.source at it"
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
