"""What the Snakefile checks of a config before any rule, called directly: config/schema.yaml
through Snakemake's validate, then the cross-references (scripts/huatuo_study/config_checks.py), on the shipped
configs and on broken copies of them. test_pipeline.py proves that a dry run stops on them."""

import copy

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from conftest import REPO
from huatuo_study.config_checks import config_problems

SCHEMA = REPO / "config" / "schema.yaml"


def load(name):
    return yaml.safe_load((REPO / "config" / name).read_text(encoding="utf-8"))


def demo_with(overlay: dict) -> str:
    """What the Snakefile says of config/demo.yaml with `overlay` given after it on the command line
    (Snakemake merges it in with update_config): the schema's error, else the cross-references'
    problems, one a line."""
    config = load("demo.yaml")
    update_config(config, overlay)
    try:
        validate(config, str(SCHEMA))
    except WorkflowError as e:
        return str(e)
    return "\n".join(config_problems(config))


@pytest.fixture
def demo():
    config = load("demo.yaml")
    config.setdefault("judge_panel", {})
    return config


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml", "gpu-proof.yaml"])
def test_the_shipped_configs_have_no_problem(name):
    config = load(name)
    validate(config, str(SCHEMA))
    assert config_problems(config) == []


def test_a_setting_or_baseline_naming_no_model(demo):
    demo["settings"]["setting2"]["model"] = "tiny-xl"
    demo["test_sets"]["large"]["baseline"]["model"] = "gpt-chat"
    assert config_problems(demo) == [
        "settings.setting2.model: 'tiny-xl' is not a key of models (tiny-s, tiny-m, tiny-chat)",
        "test_sets.large.baseline.model: 'gpt-chat' is not a key of models (tiny-s, tiny-m, tiny-chat)",
    ]


def test_a_file_baseline_needs_a_course_file(demo):
    demo["test_sets"]["small"]["baseline"] = {"source": "file"}
    assert config_problems(demo) == [
        "test_sets.small.baseline.source: 'file' needs a course file with baseline answers as the test set's source"
    ]


def test_reference_judges_need_held_out_test_sets(demo):
    course = copy.deepcopy(demo)
    course["test_sets"]["course"] = {"source": "data/zh_med.json", "n": 20, "baseline": {"source": "file"}}
    problems = config_problems(course)
    assert [p.split(":")[0] for p in problems] == ["judge.backend", "judge_panel.chrf.backend"]
    assert all("test set course (a course file) has not" in p for p in problems)
    course["judge"] = {"backend": "openai", "model": "gpt-4o"}
    course["judge_panel"] = {}
    assert config_problems(course) == []


@pytest.mark.parametrize(
    "overlay, message, where",
    [
        ({"judge": {"temprature": 0.2}}, "'temprature' was unexpected", "On instance['judge']"),
        ({"splits": {"seed": "seven"}}, "'seven' is not of type 'integer'", "On instance['splits']['seed']"),
        (
            {"settings": {"control-s": {"lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj"]}}}},
            "'data' is a dependency of 'lora'",
            "On instance['settings']['control-s']",
        ),
        (
            {"judge_panel": {"chrf": {"model": "bleu"}}},
            "'bleu' is not one of ['rouge-l-char', 'chrf']",
            "On instance['judge_panel']['chrf']['model']",
        ),
        (
            {"judge": {"backend": "gpt"}},
            "'gpt' is not one of ['openai', 'reference']",
            "On instance['judge']['backend']",
        ),
    ],
)
def test_a_config_against_the_schema_is_stopped_naming_the_key(overlay, message, where):
    said = demo_with(overlay)
    assert said.startswith("Error validating config file.") and message in said and where in said


@pytest.mark.parametrize(
    "overlay, problem",
    [
        (
            {"settings": {"setting1": {"model": "no-such-model"}}},
            "settings.setting1.model: 'no-such-model' is not a key of models (tiny-s, tiny-m, tiny-chat)",
        ),
        (
            {"test_sets": {"small": {"baseline": {"source": "file"}}}},
            "test_sets.small.baseline.source: 'file' needs a course file with baseline answers as the test set's source",
        ),
    ],
)
def test_a_schema_valid_config_with_a_broken_reference_is_stopped_naming_the_key(overlay, problem):
    assert demo_with(overlay) == problem
