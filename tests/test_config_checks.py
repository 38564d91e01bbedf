"""The config's cross-references (scripts/config_checks.py) on the shipped configs and on broken
copies of them; what the schema states is tested through Snakemake in test_pipeline.py."""

import copy

import pytest
import yaml

from config_checks import config_problems
from conftest import REPO


def load(name):
    return yaml.safe_load((REPO / "config" / name).read_text(encoding="utf-8"))


@pytest.fixture
def demo():
    config = load("demo.yaml")
    config.setdefault("judge_panel", {})
    return config


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml"])
def test_the_shipped_configs_have_no_problem(name):
    config = load(name)
    config.setdefault("judge_panel", {})
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
        "test_sets.small.baseline.source: 'file' needs a course file with baseline answers as the test set's source"]


def test_reference_judges_need_held_out_test_sets(demo):
    course = copy.deepcopy(demo)
    course["test_sets"]["course"] = {"source": "data/zh_med.json", "n": 20, "baseline": {"source": "file"}}
    problems = config_problems(course)
    assert [p.split(":")[0] for p in problems] == ["judge.backend", "judge_panel.chrf.backend"]
    assert all("test set course (a course file) has not" in p for p in problems)
    course["judge"] = {"backend": "openai", "model": "gpt-4o"}
    course["judge_panel"] = {}
    assert config_problems(course) == []
