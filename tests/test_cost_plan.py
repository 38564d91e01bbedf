"""The cost plan: the paid calls the study's config makes, as the README counts them, priced."""

import pytest
import yaml
from snakemake.utils import validate

import cost_plan
from common import read_prompt
from conftest import REPO


def planned(name):
    config = yaml.safe_load((REPO / "config" / name).read_text(encoding="utf-8"))
    validate(config, str(REPO / "config" / "schema.yaml"))  # the defaults, as Snakemake fills them
    judges = {"primary": config["judge"], **config.get("judge_panel", {})}
    return cost_plan.plan(
        judges,
        config["test_sets"],
        len(config["settings"]),
        config["replicates"],
        config["generation"]["max_new_tokens"],
        config["augmentation"],
        config["splits"].get("sizes", {}).get("train"),
        read_prompt(REPO / "config" / "judge_prompt.txt"),
    )


def test_the_study_pays_for_the_calls_the_readme_counts():
    rows = {(r["stage"], r["caller"]): r for r in planned("config.yaml")}
    # (20 + 200) questions x 6 settings x 3 replicates x 2 orders = 7,920 calls per judge
    for judge in ("primary", "gpt-4o"):
        assert rows["judge", f"{judge} on course"]["calls"] + rows["judge", f"{judge} on heldout"]["calls"] == 7920
    assert rows["baseline", "heldout"]["calls"] == 200
    assert rows["augmentation", "llm"]["calls"] == 120  # 30% of 400 training questions
    assert rows["augmentation", "llm"]["cost_usd"] is None  # no price configured: no estimate
    judge = rows["judge", "primary on course"]
    assert judge["output_tokens"] == 720 * 1024  # every reply at max_tokens
    assert judge["cost_usd"] == pytest.approx(
        (judge["input_tokens"] * 0.5 + judge["output_tokens"] * 1.5) / 1e6, abs=0.005
    )
    table = cost_plan.to_table(list(rows.values()))
    assert table.splitlines()[-1].split()[:2] == ["total", "16160"]
    assert "(some callers have no price)" in table


def test_the_offline_demo_pays_nothing():
    assert planned("demo.yaml") == []
    assert cost_plan.to_table([]).splitlines()[-1].split() == ["total", "0", "0", "0", "0.00"]


def test_text_tokens_count_cjk_characters_and_quarter_ascii():
    assert cost_plan.text_tokens("头晕") == 2 and cost_plan.text_tokens("abcdefgh") == 2
