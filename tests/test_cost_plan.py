"""The cost plan: the paid calls the study's config makes, as the README counts them, priced."""

import math

import pytest
import yaml
from snakemake.utils import validate

from conftest import REPO
from huatuo_study import paid_calls, run_plan
from huatuo_study.common import read_prompt


def planned(name):
    config = yaml.safe_load((REPO / "config" / name).read_text(encoding="utf-8"))
    validate(config, str(REPO / "config" / "schema.yaml"))  # the defaults, as Snakemake fills them
    return planned_with(config)


def planned_with(config):
    judges = {"primary": config["judge"], **config.get("judge_panel", {})}
    return paid_calls.plan(
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
    table = paid_calls.to_table(list(rows.values()))
    assert table.splitlines()[-1].split()[:2] == ["total", "16160"]
    assert "(some callers have no price)" in table


def test_the_offline_demo_pays_nothing():
    assert planned("demo.yaml") == []
    assert paid_calls.to_table([]).splitlines()[-1].split() == ["total", "0", "0", "0", "0.00"]


def test_text_tokens_count_cjk_characters_and_quarter_ascii():
    assert paid_calls.text_tokens("头晕") == 2 and paid_calls.text_tokens("abcdefgh") == 2


def study_config():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


def test_a_budget_stops_a_run_whose_plan_exceeds_it_before_any_paid_job():
    config = study_config()
    config["augmentation"]["llm"]["price_per_million"] = {"input": 0.27, "output": 1.10}  # now every caller priced
    prompt = read_prompt(REPO / "config" / "judge_prompt.txt")
    total = sum(r["cost_usd"] for r in run_plan.cost_plan_rows(config, prompt))
    assert total == pytest.approx(sum(r["cost_usd"] for r in planned_with(config)), abs=0.01)
    for budget, stops in ((math.floor(total), True), (math.ceil(total), False), (None, False)):
        problems = run_plan.preflight_problems(
            {**config, "budget_usd": budget},
            {"judge_pairwise"},
            {"OPENAI_API_KEY": "k", "DEEPSEEK_API_KEY": "k"},
            tex_found=True,
            exists=lambda path: True,
            judge_prompt=prompt,
        )
        assert [p for p in problems if p.startswith("budget_usd")] == (
            [
                f"budget_usd: this config's paid calls come to at most {total:.2f} USD (16160 calls; "
                f"`snakemake --cores 1 cost_plan` lists them), over the budget of {budget} USD; nothing was called. "
                "Raise budget_usd, or make the run smaller"
            ]
            if stops
            else []
        )
    # no paid job about to run (say, only the paper): the budget is not consulted
    assert run_plan.preflight_problems({**config, "budget_usd": 0.01}, {"paper_pdf"}, {}, True, lambda p: True) == []


def test_a_budget_needs_every_paid_caller_priced():
    config = study_config()  # the study's augmentation (deepseek-chat) has no price configured
    problem = run_plan.budget_problem(1000, run_plan.cost_plan_rows(config, "prompt"))
    assert problem.startswith("budget_usd: 1000 is set, but augmentation llm has no price_per_million")
    assert run_plan.budget_problem(1000, []) is None  # the offline demo pays nothing
