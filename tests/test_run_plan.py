"""What a config implies for the run (scripts/run_plan.py): its judges and the key variables of its
OpenAI-compatible calls, which both the preflight (rules/common.smk) and the paper's secret check
(provenance.py) take from there."""

import pytest
import yaml
from snakemake.utils import update_config, validate

import provenance
from common import PipelineError
from conftest import REPO
from run_plan import api_key_envs, judges

SECRET = "sk-run-plan-test-0123456789"
# The demo with a panel judge and one test set's baseline calling an API, each with a key variable
# of its own, and the study's LLM augmentation.
KEYED = {
    "judge_panel": {"gpt-4o": {"backend": "openai", "model": "gpt-4o", "api_key_env": "PANEL_JUDGE_KEY"}},
    "test_sets": {"large": {"baseline": {"source": "openai", "model": "gpt-3.5-turbo",
                                         "api_key_env": "BASELINE_KEY"}}},
    "augmentation": {"method": "llm", "llm": {"model": "deepseek-chat", "api_key_env": "AUGMENT_KEY"}},
}


def demo_with(overlay: dict) -> dict:
    """config/demo.yaml with `overlay` merged in, validated (defaults filled) as the Snakefile does."""
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text(encoding="utf-8"))
    update_config(config, overlay)
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


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
    assert provenance.secret_envs(config) == sorted(provenance.SECRET_ENVS)


@pytest.mark.parametrize("variable", ["PANEL_JUDGE_KEY", "BASELINE_KEY", "AUGMENT_KEY"])
def test_the_papers_secret_check_covers_every_key_variable(variable):
    config = demo_with(KEYED)
    environ = {variable: SECRET}
    provenance.check_no_secrets({"paper.tex": "no secret here"}, config, environ)
    with pytest.raises(PipelineError, match=f"paper.tex would contain the value of the environment variable {variable}"
                                            r" \(a secret\)") as e:
        provenance.check_no_secrets({"paper.tex": f"judged by {SECRET}"}, config, environ)
    assert SECRET not in str(e.value)
