"""What a config implies for the run (scripts/huatuo_study/run_plan.py), on the demo's and the study's configs:
settings and controls, replicates, test sets and their held-out slices, judges, GPU job sizes, the
compute jobs, the preflight's problems, and the key variables of the OpenAI-compatible calls,
which both the preflight (rules/common.smk) and the paper's secret check (provenance.py) take
from there."""

import pytest
import yaml
from snakemake.utils import update_config, validate

from conftest import REPO
from huatuo_study import run_plan
from huatuo_study.common import PipelineError
from huatuo_study.paper import provenance
from huatuo_study.run_plan import api_key_envs, judges

SECRET = "sk-run-plan-test-0123456789"
# The demo with a panel judge and one test set's baseline calling an API, each with a key variable
# of its own, and the study's LLM augmentation.
KEYED = {
    "judge_panel": {"gpt-4o": {"backend": "openai", "model": "gpt-4o", "api_key_env": "PANEL_JUDGE_KEY"}},
    "test_sets": {"large": {"baseline": {"source": "openai", "model": "gpt-3.5-turbo", "api_key_env": "BASELINE_KEY"}}},
    "augmentation": {"method": "llm", "llm": {"model": "deepseek-chat", "api_key_env": "AUGMENT_KEY"}},
}


def demo_with(overlay: dict) -> dict:
    """config/demo.yaml with `overlay` merged in, validated (defaults filled) as the Snakefile does."""
    return config_with("demo.yaml", overlay)


def config_with(name: str, overlay: dict | None = None) -> dict:
    config = yaml.safe_load((REPO / "config" / name).read_text(encoding="utf-8"))
    update_config(config, overlay or {})
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


@pytest.fixture
def demo():
    return config_with("demo.yaml")


@pytest.fixture
def study():
    return config_with("config.yaml")


def test_judges_are_the_primary_then_the_panel():
    config = demo_with(KEYED)
    assert list(judges(config)) == ["primary", "chrf", "gpt-4o"]
    assert judges(config)["primary"] is config["judge"]
    assert judges(config)["gpt-4o"]["api_key_env"] == "PANEL_JUDGE_KEY"


def test_key_variables_are_those_of_the_sections_that_call_an_api():
    config = demo_with(KEYED)
    assert api_key_envs(config) == ["AUGMENT_KEY", "BASELINE_KEY", "PANEL_JUDGE_KEY"]
    assert api_key_envs(config, {"judge_pairwise"}) == ["PANEL_JUDGE_KEY"]
    assert api_key_envs(config, ["baseline_answers", "augment_train"]) == ["AUGMENT_KEY", "BASELINE_KEY"]
    assert api_key_envs(config, {"train_adapter", "paper_pdf"}) == []


def test_reference_judges_model_baselines_and_synonyms_read_no_key():
    config = demo_with({"judge_panel": {"chrf": {"api_key_env": "UNUSED_KEY"}}})
    assert api_key_envs(config) == []
    assert run_plan.secret_envs(config) == sorted(run_plan.OTHER_SECRET_ENVS)


@pytest.mark.parametrize("variable", ["PANEL_JUDGE_KEY", "BASELINE_KEY", "AUGMENT_KEY"])
def test_the_papers_secret_check_covers_every_key_variable(variable):
    config = demo_with(KEYED)
    environ = {variable: SECRET}
    assert variable in run_plan.secret_envs(config)
    provenance.check_no_secrets({"paper.tex": "no secret here"}, run_plan.secret_envs(config), environ)
    with pytest.raises(
        PipelineError,
        match=f"paper.tex would contain the value of the environment variable {variable}"
        r" \(a secret\)",
    ) as e:
        provenance.check_no_secrets({"paper.tex": f"judged by {SECRET}"}, run_plan.secret_envs(config), environ)
    assert SECRET not in str(e.value)


def test_settings_controls_and_replicates_in_config_order(demo):
    assert run_plan.settings(demo) == ["setting1", "setting2", "setting3", "setting4", "control-s", "control-m"]
    assert run_plan.trained(demo) == ["setting1", "setting2", "setting3", "setting4"]
    assert run_plan.controls(demo) == ["control-s", "control-m"]
    assert run_plan.replicates(demo) == [0, 1]
    assert run_plan.setting_numbers(demo)["control-m"] == 6
    assert run_plan.trained_numbers(demo) == {
        "setting1": (1, "Baseline recipe (tiny-s)"),
        "setting2": (2, "Scaling (tiny-m)"),
        "setting3": (3, "Data augmentation (tiny-s)"),
        "setting4": (4, "Training tricks (tiny-s)"),
    }
    del demo["settings"]["setting2"]["title"]
    assert run_plan.trained_numbers(demo)["setting2"] == (2, "setting2")


def test_each_trained_setting_is_compared_with_the_control_of_its_base_model(demo, study):
    assert run_plan.controls_by_setting(demo) == {
        "setting1": "control-s",
        "setting2": "control-m",
        "setting3": "control-s",
        "setting4": "control-s",
    }
    assert run_plan.controls_by_setting(study) == {
        "setting1": "control-4b",
        "setting2": "control-14b",
        "setting3": "control-4b",
        "setting4": "control-4b",
    }
    del demo["settings"]["control-m"]  # tiny-m has no control: the scaling setting is compared with none
    assert "setting2" not in run_plan.controls_by_setting(demo)


def test_replicate_r_trains_and_decodes_with_the_seeds_plus_r(demo):
    params = run_plan.setting_params(demo, "setting4", "1")
    assert "title" not in params and params["model"] == "tiny-s" and params["lora"]["r"] == 8
    assert params["training"]["seed"] == 43 and params["training"]["learning_rate"] == 1.0e-2
    assert demo["settings"]["setting4"]["training"]["seed"] == 42  # the config itself is left as it was
    assert run_plan.setting_params(demo, "setting4", 0)["training"]["seed"] == 42
    generation = run_plan.replicate_generation(demo, 2)
    assert generation["seed"] == 44 and generation["max_new_tokens"] == 64 and demo["generation"]["seed"] == 42


def test_heldout_test_sets_take_consecutive_slices_and_a_course_file_none(demo, study):
    assert run_plan.test_sets(demo) == ["small", "large"] and run_plan.headline(demo) == "small"
    assert run_plan.heldout_slice(demo, "small") == {"start": 0, "stop": 12}
    assert run_plan.heldout_slice(demo, "large") == {"start": 12, "stop": 32}
    assert run_plan.headline(study) == "course"
    assert run_plan.heldout_slice(study, "course") is None
    assert run_plan.heldout_slice(study, "heldout") == {"start": 0, "stop": 200}
    with pytest.raises(KeyError, match="no test set 'medium' \\(small, large\\)"):
        run_plan.heldout_slice(demo, "medium")


def test_only_the_primary_judge_on_a_course_file_compares_with_the_published_rates(demo, study):
    assert run_plan.compares_with_published(study, "course", "primary")
    assert not run_plan.compares_with_published(study, "course", "gpt-4o")
    assert not run_plan.compares_with_published(study, "heldout", "primary")  # an API baseline, not the file's
    assert not run_plan.compares_with_published(demo, "small", "primary")


def test_judges_are_named_by_their_config_keys(study):
    assert run_plan.judge_key("primary") == "judge"
    assert run_plan.judge_key("gpt-4o") == "judge_panel.gpt-4o"
    assert run_plan.card_evaluations(study) == [
        {"test_set": t, "judge": j, "judge_model": m}
        for t in ("course", "heldout")
        for j, m in (("primary", "openai: gpt-3.5-turbo"), ("gpt-4o", "openai: gpt-4o"))
    ]


def test_compute_jobs_are_the_trained_replicates_then_every_answering_job(demo):
    jobs = run_plan.compute_jobs(demo)
    assert len(jobs) == 4 * 2 + 2 * 6 * 2
    assert jobs[0] == {"rule": "train_adapter", "setting": "setting1", "replicate": 0}
    assert jobs[7] == {"rule": "train_adapter", "setting": "setting4", "replicate": 1}
    assert jobs[8] == {"rule": "generate_answers", "test_set": "small", "setting": "setting1", "replicate": 0}
    assert jobs[-1] == {"rule": "generate_answers", "test_set": "large", "setting": "control-m", "replicate": 1}
    assert not any(job["rule"] == "train_adapter" and job["setting"].startswith("control") for job in jobs)


def test_answering_models_are_the_settings_and_the_model_baselines(demo, study):
    assert run_plan.answering_models(demo) == ["tiny-chat", "tiny-m", "tiny-s"]
    assert run_plan.answering_models(study) == ["qwen3-14b", "qwen3-4b"]  # the baselines are a file and an API


def test_augmentation_params_hold_only_the_methods_own_section(demo, study):
    assert run_plan.augmentation_params(demo) == {
        "method": "synonym",
        "ratio": 0.3,
        "seed": 42,
        "synonym": demo["augmentation"]["synonym"],
    }
    assert "llm" not in run_plan.augmentation_params(demo)
    assert run_plan.augmentation_protected_terms(demo) == [demo["augmentation"]["synonym"]["protected_terms"]]
    assert set(run_plan.augmentation_params(study)) == {"method", "ratio", "seed", "llm"}
    assert run_plan.augmentation_protected_terms(study) == []
    assert run_plan.uses_augmentation(demo)
    demo["settings"]["setting3"]["data"] = "original"
    assert not run_plan.uses_augmentation(demo)


def test_tensorboard_is_an_output_only_where_a_recipe_reports_to_it(demo):
    assert run_plan.reports_to_tensorboard(demo)
    for name in run_plan.trained(demo):
        demo["settings"][name]["training"] = {**demo["settings"][name]["training"], "report_to": "none"}
    assert not run_plan.reports_to_tensorboard(demo)


@pytest.mark.parametrize(
    "source, billions",
    [
        ("Qwen/Qwen3-14B", 14),
        ("Qwen/Qwen3-4B-Instruct-2507", 4),
        ("/models/qwen3-1.7b/", 1.7),
        ("org/model-without-size", run_plan.GPU_JOB_DEFAULT_BILLIONS),
        ("org/bert-base", run_plan.GPU_JOB_DEFAULT_BILLIONS),
    ],
)
def test_a_models_size_is_read_from_its_name(demo, source, billions):
    demo["models"]["tiny-s"] = {"source": source}
    assert run_plan.model_billions(demo, "tiny-s") == billions
    assert run_plan.model_billions(demo, "tiny-m") == 0  # built by the pipeline


def test_gpu_jobs_grow_with_the_model_and_the_attempt(demo, study):
    assert run_plan.gpu_job_size(study, "train", "setting2") == (16000 + 4000 * 14, 60 + 15 * 14)
    assert run_plan.gpu_job_size(study, "generate", "control-4b") == (12000 + 2000 * 4, 30 + 5 * 4)
    assert run_plan.gpu_job_size(study, "generate", "control-4b", attempt=2) == (30000, 75)
    assert run_plan.gpu_job_size(demo, "train", "setting2") == run_plan.BUILT_MODEL_JOB
    assert run_plan.gpu_job_size(demo, "train", "setting2", attempt=3) == (8000, 60)


def test_the_paper_sees_the_config_without_recipes_memory_or_exports(study):
    seen = run_plan.run_config(study)
    assert not {"recipes", "gpu_memory_gib", "export"} & set(seen)
    assert seen["settings"] is study["settings"] and list(seen) == [k for k in study if k in seen]


def test_preflight_names_what_the_jobs_about_to_run_will_miss(study):
    def problems(rules, environ=None, tex=True, exists=lambda path: True):
        return run_plan.preflight_problems(study, rules, environ or {}, tex, exists)

    keyed = {"OPENAI_API_KEY": "sk-x", "DEEPSEEK_API_KEY": "sk-y"}
    assert problems({"judge_pairwise", "baseline_answers", "augment_train", "paper_pdf", "test_set"}, keyed) == []
    assert problems({"train_adapter", "paper_pdf"}, tex=True) == []  # no job that calls an API
    [keys] = problems({"judge_pairwise", "augment_train"})
    assert keys.startswith("environment variable DEEPSEEK_API_KEY, OPENAI_API_KEY is not set;")
    [keys] = problems({"judge_pairwise"}, {"OPENAI_API_KEY": ""})  # set but empty is not set
    assert "OPENAI_API_KEY is not set" in keys
    [tex] = problems({"paper_pdf"}, tex=False)
    assert tex.startswith("latexmk/xelatex not found")
    assert problems({"render_tex"}, tex=False) == []
    [course] = problems({"test_set"}, exists=lambda path: path != "data/zh_med.json")
    assert course.startswith("test_sets.course.source: the course file 'data/zh_med.json' does not exist")
    assert len(problems({"judge_pairwise", "paper_pdf", "test_set"}, tex=False, exists=lambda path: False)) == 3
