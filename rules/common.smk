# Helpers shared by the rule files (paths, per-setting lookups, early checks).
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.join(workflow.basedir, "scripts"))
from huatuo_study.common import read_prompt
from huatuo_study.config_checks import config_problems
from huatuo_study import run_plan

RESULTS = f"results/{config['run']}"
LOGS = f"{RESULTS}/logs"
# Snakemake's own measure of every job (wall time, max RSS), one TSV per job, beside its log.
BENCHMARKS = f"{RESULTS}/benchmarks"
# What the config implies (scripts/huatuo_study/run_plan.py), computed once for every rule file.
SETTINGS = run_plan.settings(config)
MODELS = list(config["models"])
CONTROLS = run_plan.controls(config)
TRAINED = run_plan.trained(config)
REPLICATES = run_plan.replicates(config)
TEST_SETS = run_plan.test_sets(config)
HEADLINE = run_plan.headline(config)
JUDGES = run_plan.judges(config)
# The study's facts and sources (published rates, every parameter's value and source).
STUDY = "config/study.yaml"
# The study's judge prompt, verbatim: sent by the judge, printed by the paper.
JUDGE_PROMPT = "config/judge_prompt.txt"
RUN_CONFIG = run_plan.run_config(config)
# The environment variables whose values the paper's outputs are checked not to contain.
SECRET_ENVS = run_plan.secret_envs(config)
PAPER = f"{RESULTS}/paper"
FIGURES = run_plan.FIGURES


wildcard_constraints:
    setting="|".join(map(re.escape, SETTINGS)),
    test_set="|".join(map(re.escape, TEST_SETS)),
    judge="|".join(map(re.escape, JUDGES)),
    replicate=r"\d+",


def compares_with_published(test_set, judge):
    return run_plan.compares_with_published(config, test_set, judge)


def check_config():
    """Cross-references the schema cannot express (scripts/huatuo_study/config_checks.py), each naming its key."""
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
    folder = f"{RESULTS}/tensorboard/{{setting}}/rep{{replicate}}"
    reports = run_plan.reports_to_tensorboard(config)
    return {"tensorboard": directory(folder)} if reports else {}


def setting_params(wildcards):
    return run_plan.setting_params(config, wildcards.setting, wildcards.replicate)


def replicate_generation(wildcards):
    return run_plan.replicate_generation(config, wildcards.replicate)


def adapter_input(wildcards):
    """A trained setting's adapter for this replicate; a control answers with none."""
    if wildcards.setting in CONTROLS:
        return []
    return [f"{RESULTS}/adapters/{wildcards.setting}/rep{wildcards.replicate}"]


def runs_of(pattern, settings=SETTINGS, **wildcards):
    """`pattern` for every setting and replicate (and the given wildcards), in config order."""
    return expand(pattern, setting=settings, replicate=REPLICATES, **wildcards)


def controls_by_setting():
    return run_plan.controls_by_setting(config)


def verdicts_of(test_set, judge):
    return runs_of(
        f"{RESULTS}/verdicts/{{test_set}}/{{judge}}/{{setting}}/rep{{replicate}}.jsonl",
        test_set=test_set,
        judge=judge,
    )


def statistics_of(*keys):
    return run_plan.statistics_of(config, *keys)


def tables_of(name):
    """A table of every test set by every judge, test sets first: tables/<test set>/<judge>/<name>."""
    return expand(
        f"{RESULTS}/tables/{{test_set}}/{{judge}}/{name}",
        test_set=TEST_SETS,
        judge=JUDGES,
    )


def card_evaluations():
    """Each test set and judge the model cards report, in tables_of()'s order."""
    return run_plan.card_evaluations(config)


def export_targets():
    """Every adapter's model card, every test set's interchange files, the answer browser and,
    where export.merged is on, every adapter merged into its base."""
    cards = runs_of(
        f"{RESULTS}/model_cards/{{setting}}/rep{{replicate}}/README.md", TRAINED
    )
    interchange = expand(f"{RESULTS}/interchange/{{test_set}}", test_set=TEST_SETS)
    merged = runs_of(f"{RESULTS}/merged/{{setting}}/rep{{replicate}}", TRAINED)
    browser = [f"{RESULTS}/browser.html"]
    return (
        cards + interchange + browser + (merged if config["export"]["merged"] else [])
    )


def compute_jobs():
    return run_plan.compute_jobs(config)


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
    return run_plan.heldout_slice(config, test_set)


def train_split(wildcards):
    variant = config["settings"][wildcards.setting]["data"]
    return (
        f"{RESULTS}/data/train_augmented.jsonl"
        if variant == "augmented"
        else f"{RESULTS}/data/train.jsonl"
    )


def answering_models():
    return run_plan.answering_models(config)


def trained_numbers():
    return run_plan.trained_numbers(config)


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
    return run_plan.augmentation_params(config)


def augmentation_protected_terms():
    return run_plan.augmentation_protected_terms(config)


def augment_stats_input():
    """The paper describes the augmentation only where a setting trains on it."""
    used = run_plan.uses_augmentation(config)
    return [f"{RESULTS}/data/augment_stats.json"] if used else []


def human_labels_file():
    """The filled labelling sheet (config human_labels), or nothing where none is configured."""
    return config["human_labels"] or []


def human_agreement_input():
    """The judges' agreement with people, in the paper only where labels are configured."""
    return [f"{RESULTS}/tables/human_agreement.csv"] if config["human_labels"] else []


def api_cache_dir(section, default_name):
    """Where a section's OpenAI-compatible calls are cached: its cache_dir, else one of the run's."""
    return (section or {}).get("cache_dir") or f"{RESULTS}/{default_name}"


def preflight_checks():
    """Before any GPU hour is spent: what the jobs about to run will need later must be here now."""
    rules_to_run = {job.rule.name for job in workflow.dag.needrun_jobs()}
    tex = bool(shutil.which("latexmk") and shutil.which("xelatex"))
    problems = run_plan.preflight_problems(
        config, rules_to_run, os.environ, tex, judge_prompt=read_prompt(JUDGE_PROMPT)
    )
    if problems:
        raise WorkflowError("\n".join(problems))


def gpu_job_resource(kind, resource):
    """A rule's mem_mb or runtime for `resources:`, by setting and attempt."""
    index = ("mem_mb", "runtime").index(resource)

    def size(wildcards, attempt):
        return run_plan.gpu_job_size(config, kind, wildcards.setting, attempt)[index]

    return size
