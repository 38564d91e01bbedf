"""The whole demo DAG through Snakemake in a copy of the repo, then what reruns after a change,
the study's DAG as a dry run, and a bad config stopping a dry run."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import krippendorff
import markupsafe
import pytest
import yaml

import fake_openai
from conftest import REPO, SHARED_DATA
from dag import (
    DEMO,
    HEADLINE,
    JUDGES,
    ONE_SETTING,
    PAPER_JOBS,
    REPLICATES,
    SETTINGS,
    SNAKEMAKE,
    TEST_SETS,
    TRAINED,
    copy_repo,
    overlay,
    planned_jobs,
    read_csv,
    snakemake,
    table_jobs,
)
from huatuo_study.common import read_jsonl

WINRATE_COLUMNS = [
    "setting",
    "title",
    "n",
    "wins",
    "ties",
    "losses",
    "invalid",
    "win_rate",
    "win_rate_ties_half",
    "ci_low",
    "ci_high",
    "p_value",
    "consistency",
    "win_rate_as_first",
    "win_rate_as_second",
    "order_flips",
    "order_flip_share",
    "study_order_score",
    "published_win_rate",
    "published_difference",
    "published_difference_low",
    "published_difference_high",
    "published_margin",
    "published_equivalent",
    "published_equivalence_p",
    "mean_answer_chars",
    "baseline_mean_answer_chars",
    "prompt_tokens",
    "completion_tokens",
    "judge_calls",
    "cost_usd",
    "replicates",
    "replicate_win_rate_min",
    "replicate_win_rate_max",
    "replicate_win_rate_sd",
    "lc_win_rate",
    "lc_ci_low",
    "lc_ci_high",
    "lc_note",
]


def test_demo_writes_the_table_and_the_paper(demo_run):
    results = demo_run / "results" / "demo"
    rows = read_csv(demo_run / HEADLINE / "winrate.csv")
    assert [r["setting"] for r in rows] == SETTINGS
    for r in rows:
        n, wins, ties, losses, invalid = (int(r[k]) for k in ("n", "wins", "ties", "losses", "invalid"))
        assert n == 12 * REPLICATES and wins + ties + losses + invalid == n and int(r["replicates"]) == REPLICATES
        assert float(r["win_rate"]) == pytest.approx(wins / n)
    tex = (results / "paper" / "paper.tex").read_text(encoding="utf-8")
    for r in rows:
        assert f"{100 * float(r['win_rate']):.1f}" in tex
    assert "loss_curves.pdf" in tex
    assert (results / "paper" / "loss_curves.pdf").read_bytes().startswith(b"%PDF")
    for setting in TRAINED:
        for rep in range(REPLICATES):
            losses = read_csv(results / "losses" / setting / f"rep{rep}.csv")
            assert {r["split"] for r in losses} == {"train", "val"}
    stats = yaml.safe_load((results / "data" / "split_stats.json").read_text())
    assert stats["dropped"]["malformed"] >= 1 and stats["dropped"]["duplicate_question"] >= 1
    assert (results / "adapters" / "setting2" / "rep1" / "adapter_config.json").exists()
    assert not (results / "adapters" / "control-s").exists()  # a control trains nothing
    assert list(rows[0]) == WINRATE_COLUMNS
    browser = (results / "browser.html").read_text(encoding="utf-8")
    for test_set in TEST_SETS:
        assert f"Test set {test_set} (" in browser
        for t in read_jsonl(results / "data" / "test" / f"{test_set}.jsonl"):
            assert str(markupsafe.escape(t["question"])) in browser
    for r in rows:  # the reference judge is asked both ways, and is symmetric
        assert float(r["consistency"]) == 1.0 and int(r["judge_calls"]) == 2 * 12 * REPLICATES and r["cost_usd"] == ""
        assert 0 <= float(r["ci_low"]) <= float(r["win_rate"]) <= float(r["ci_high"]) <= 1
    pairs = read_csv(demo_run / HEADLINE / "pairwise.csv")
    assert list(pairs[0]) == ["setting_a", "setting_b", "n", "a_better", "b_better", "p_value"] and len(pairs) == 15
    assert not (results / "checkpoints" / "setting1" / "rep0").exists()  # cleaned up once the adapter is saved
    # Two disjoint test sets from the held-out split; replicates differ by their seeds.
    tests = {t: read_jsonl(results / "data" / "test" / f"{t}.jsonl") for t in TEST_SETS}
    assert [len(tests[t]) for t in TEST_SETS] == [12, 20]
    assert not {r["id"] for r in tests["small"]} & {r["id"] for r in tests["large"]}
    rep0, rep1 = (read_jsonl(results / f"generations/small/setting1/rep{r}.jsonl") for r in range(2))
    assert [a["answer"] for a in rep0] != [a["answer"] for a in rep1]


def verdicts_of(results, test_set, judge):
    """(setting, replicate, question id) -> verdict, from the run's verdict files."""
    return {
        (s, rep, str(r["id"])): r["verdict"]
        for s in SETTINGS
        for rep in range(REPLICATES)
        for r in read_jsonl(results / "verdicts" / test_set / judge / s / f"rep{rep}.jsonl")
    }


def test_demo_tables_recompute_from_the_verdict_files(demo_run):
    """Pooled and per-replicate rates, the claims table's Holm p-values, effects and verdicts, and
    the judges' kappa, recomputed here from the verdict files."""
    from statsmodels.stats.multitest import multipletests

    results = demo_run / "results" / "demo"
    for test_set in TEST_SETS:
        for judge in JUDGES:
            verdicts = verdicts_of(results, test_set, judge)
            tables = results / "tables" / test_set / judge
            for row in read_csv(tables / "winrate.csv"):
                s = row["setting"]
                per_rep = [
                    [v for (s2, rep, _), v in verdicts.items() if s2 == s and rep == r] for r in range(REPLICATES)
                ]
                rates = [sum(v == "win" for v in rep) / len(rep) for rep in per_rep]
                listed = [r for r in read_csv(tables / "replicates.csv") if r["setting"] == s]
                assert [float(r["win_rate"]) for r in listed] == pytest.approx(rates)
                assert float(row["win_rate"]) == pytest.approx(sum(rates) / REPLICATES)
                assert float(row["replicate_win_rate_min"]) == pytest.approx(min(rates))
                assert float(row["replicate_win_rate_max"]) == pytest.approx(max(rates))
            claims = read_csv(tables / "claims.csv")
            assert len(claims) == 11 and {c["verdict"] for c in claims} <= {
                "reproduced",
                "supported",
                "contradicted",
                "inconclusive",
            }
            p_holm = multipletests([float(c["p_value"]) for c in claims], method="holm")[1]
            for c, expected in zip(claims, p_holm):
                assert float(c["p_holm"]) == pytest.approx(expected)
                against = c["against"]
                score = {"win": 1.0, "tie": 0.5, "loss": 0.0, "invalid": 0.5}  # the claims' one measure
                rate = {
                    s: sum(score[v] for (s2, _, _), v in verdicts.items() if s2 == s)
                    / (12 if test_set == "small" else 20)
                    / REPLICATES
                    for s in SETTINGS
                }
                effect = rate[c["setting"]] - (0.5 if against == "baseline" else rate[against])
                assert float(c["effect"]) == pytest.approx(effect)
                # The verdict ladder, read again from the row's corrected interval and Holm p.
                low, high = float(c["ci_holm_low"]), float(c["ci_holm_high"])
                published = float(c["published_effect"]) if c["published_effect"] else None
                margin = float(c["margin"])
                expected_verdict = (
                    "reproduced"
                    if published is not None and published - margin <= low and high <= published + margin
                    else "supported"
                    if float(c["p_holm"]) < 0.05 and effect > 0
                    else "contradicted"
                    if high < (published if published is not None else 0)
                    else "inconclusive"
                )
                assert c["verdict"] == expected_verdict
            assert {c["against"] for c in claims if c["id"].startswith("sft_effective")} == {"control-s", "control-m"}
    rank = {"loss": 0, "tie": 1, "win": 2}
    for row in read_csv(results / "tables" / "judge_agreement.csv"):
        a, b = (verdicts_of(results, row["test_set"], j) for j in ("primary", row["judge_b"]))
        keys = [k for k in a if "invalid" not in (a[k], b[k])]
        pairs = [(rank[a[k]], rank[b[k]]) for k in keys]
        n = len(pairs)
        observed = sum(x == y for x, y in pairs) / n
        assert (int(row["n_pairs"]), int(row["n_questions"])) == (n, len({q for _, _, q in keys}))
        assert float(row["agreement"]) == pytest.approx(observed)
        # linear weights: 1 - mean |x - y| / the same over every pairing of the two judges' verdicts
        disagreement = sum(abs(x - y) for x, y in pairs) / n
        chance = sum(abs(x - y) for x, _ in pairs for _, y in pairs) / n**2
        assert float(row["weighted_kappa"]) == pytest.approx(1 - disagreement / chance)
        ranks = [[x for x, _ in pairs], [y for _, y in pairs]]
        assert float(row["alpha"]) == pytest.approx(
            krippendorff.alpha(reliability_data=ranks, level_of_measurement="ordinal", value_domain=[0, 1, 2])
        )
    tex = (results / "paper" / "paper.tex").read_text(encoding="utf-8")
    assert r"\label{tab:claims-small}" in tex and r"\label{tab:claims-large}" in tex and r"\label{tab:agreement}" in tex


def test_demo_paper_shows_fidelity_orders_and_truncation_from_the_run_files(demo_run):
    results = demo_run / "results" / "demo"
    tex = (results / "paper" / "paper.tex").read_text(encoding="utf-8")
    with open(results / "tables" / "fidelity.csv", encoding="utf-8") as f:
        fidelity = list(csv.DictReader(f))
    deviations = [r for r in fidelity if r["status"] == "deviation"]
    assert {"Dataset", "Judge model", "Method", "Max new tokens"} <= {r["parameter"] for r in deviations}
    assert f"{len(deviations)} differ from it in this run (``differs'')" in tex
    judge_row = next(r for r in fidelity if r["parameter"] == "Judge model")
    assert f"Judge model & ChatGPT-3 & rouge-l-char & {judge_row['source']}; {judge_row['note']} & differs \\\\" in tex
    rows = read_csv(demo_run / HEADLINE / "winrate.csv")
    for k, r in enumerate(rows, 1):
        answers = [
            a
            for rep in range(REPLICATES)
            for a in read_jsonl(results / "generations" / "small" / r["setting"] / f"rep{rep}.jsonl")
        ]
        cut = sum(a["hit_token_limit"] for a in answers)
        cells = [
            f"{100 * float(r[c]):.1f}"
            for c in ("win_rate_as_first", "win_rate_as_second", "order_flip_share", "consistency")
        ]
        assert f"Setting {k} & " + " & ".join(cells) + f" & {r['invalid']} & {cut} of {len(answers)} \\\\" in tex
    assert r"\label{tab:published}" not in tex  # the demo's baseline is not the study's
    stats = json.loads((results / "data" / "augment_stats.json").read_text(encoding="utf-8"))
    assert stats["method"] == "synonym" and stats["replacements_sample"]
    # setting 3 trains on about 30% more rows than setting 1, as in the study
    assert stats["pool_short"] is False and stats["n_augmented"] == stats["n_target"]
    assert 0.28 <= stats["augmented_share"] <= 0.32
    assert len(read_jsonl(results / "data" / "train_augmented.jsonl")) == stats["n_train"] + stats["n_augmented"]
    assert f"adds a rewritten copy (answer kept) of {stats['n_augmented']} of the {stats['n_train']}" in tex
    for test_set in TEST_SETS:
        leakage = json.loads((results / "data" / "near_duplicates" / f"{test_set}.json").read_text(encoding="utf-8"))
        assert leakage["n_compared"] == {
            "train": len(read_jsonl(results / "data/train.jsonl")),
            "val": len(read_jsonl(results / "data/val.jsonl")),
        }
        assert (
            f"Near-duplicates in test set {test_set}: {leakage['n_test_with_near_duplicate']} of its "
            f"{leakage['n_test']} questions" in " ".join(tex.split())
        )


def test_finished_run_has_nothing_to_do(demo_run):
    assert planned_jobs(demo_run, *DEMO) == {}


def test_judge_temperature_reruns_only_judging_and_after(demo_run):
    name = overlay(demo_run, "judge_t.yaml", {"judge": {"temperature": 0.7}})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    # The primary judge on both test sets, not the panel's; the fidelity table shows the judge's
    # temperature: it reruns too (a second).
    assert jobs == {"judge_pairwise": len(SETTINGS) * REPLICATES * 2, "fidelity_table": 1, **table_jobs(2)}


def test_the_leakage_threshold_reruns_only_its_report_and_the_paper(demo_run):
    name = overlay(demo_run, "leakage.yaml", {"leakage": {"threshold": 0.3}})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    assert jobs == {"near_duplicates": 2, "fidelity_table": 1, **PAPER_JOBS}


def test_a_bigger_gpu_reruns_nothing(demo_run):
    name = overlay(demo_run, "card.yaml", {"gpu_memory_gib": 80})  # changes how fast, not what is learned
    assert planned_jobs(demo_run, "--configfile", "config/demo.yaml", name) == {}


def test_augmentation_ratio_reruns_only_the_augmented_setting(demo_run):
    name = overlay(demo_run, "ratio.yaml", {"augmentation": {"ratio": 0.5}})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    assert jobs == {"augment_train": 1, "fidelity_table": 1, **ONE_SETTING}
    out = snakemake(demo_run, "-n", "--cores", "1", "--configfile", "config/demo.yaml", name).stdout
    trained = re.findall(r"rule train_adapter:\n(?:    .*\n)*?    wildcards: setting=(\w+), replicate=(\d)", out)
    assert sorted(trained) == [("setting3", "0"), ("setting3", "1")]


def test_the_other_augmentation_method_reruns_no_augmentation(demo_run):
    name = overlay(demo_run, "llm_keys.yaml", {"augmentation": {"llm": {"model": "another-model"}}})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    assert jobs == {"fidelity_table": 1, **PAPER_JOBS}  # the table shows the key; no data changes


def test_the_judge_prompt_file_reruns_judging(demo_run, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(demo_run, root, symlinks=True)
    prompt = root / "config" / "judge_prompt.txt"
    prompt.write_text(prompt.read_text(encoding="utf-8") + " Answer in English.\n", encoding="utf-8")
    assert planned_jobs(root, *DEMO) == {"judge_pairwise": len(SETTINGS) * REPLICATES * 2 * 2, **table_jobs(4)}


def edit_loss_figure_program(root):
    program = root / "scripts" / "figure_loss_curves.py"
    code = program.read_text(encoding="utf-8")
    program.write_text(code.replace('"step", fontsize=8', '"optimiser step", fontsize=8'), encoding="utf-8")


def change_a_loss_table(root):
    # Content, not only the time: Snakemake reruns nothing for an input touched with the same checksum.
    with open(root / "results" / "demo" / "losses" / "setting2" / "rep1.csv", "a", encoding="utf-8") as f:
        f.write("999,9.0,train,0.5\n")


@pytest.mark.parametrize("change", [edit_loss_figure_program, change_a_loss_table])
def test_a_figure_change_reruns_that_figure_and_the_pdf_only(demo_run, tmp_path, change):
    root = tmp_path / "run"
    shutil.copytree(demo_run, root, symlinks=True)
    change(root)
    card = {"model_card": 1} if change is change_a_loss_table else {}  # the card reports the final loss
    assert planned_jobs(root, *DEMO) == {"figure_loss_curves": 1, "paper_pdf": 1, "all": 1, **card}


def test_a_fifth_setting_needs_no_code(demo_run):
    demo = yaml.safe_load((demo_run / "config" / "demo.yaml").read_text(encoding="utf-8"))
    fifth = {
        **demo["settings"]["setting1"],
        "title": "Higher rank",
        "lora": {**demo["settings"]["setting1"]["lora"], "r": 16},
    }
    name = overlay(demo_run, "fifth.yaml", {"settings": {"setting5": fifth}})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    assert jobs == {"fidelity_table": 1, **ONE_SETTING, "model_card": (len(TRAINED) + 1) * REPLICATES}


def test_a_third_replicate_computes_only_itself(demo_run):
    name = overlay(demo_run, "replicates.yaml", {"replicates": 3})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    assert jobs == {
        "train_adapter": len(TRAINED),
        "merged_model": len(TRAINED),
        "generate_answers": len(SETTINGS) * 2,
        "judge_pairwise": len(SETTINGS) * 2 * 2,
        "figure_loss_curves": 1,
        "fidelity_table": 1,
        "compute_table": 1,
        "calibration_table": 1,
        "human_label_sheet": 1,
        **table_jobs(4, cards=len(TRAINED) * 3),
    }


def test_openai_judge_without_key_stops_before_any_job(demo_run):
    name = overlay(
        demo_run, "openai.yaml", {"judge": {"backend": "openai", "model": "gpt-4o", "api_key_env": "PIPELINE_TEST_KEY"}}
    )
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_TEST_KEY"}
    verdicts = demo_run / "results/demo/verdicts/small/primary/setting1/rep0.jsonl"
    before = verdicts.stat().st_mtime_ns
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "1", "--configfile", "config/demo.yaml", name],
        cwd=demo_run,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode != 0
    assert "environment variable PIPELINE_TEST_KEY is not set" in proc.stdout + proc.stderr
    assert verdicts.stat().st_mtime_ns == before
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name, env=env)
    assert jobs["judge_pairwise"] == len(SETTINGS) * REPLICATES * 2


def test_openai_judge_in_the_dag_pays_once_and_writes_the_key_nowhere(demo_run, tmp_path):
    """The demo's answers judged by a loopback OpenAI-compatible server through Snakemake."""
    root = tmp_path / "run"
    shutil.copytree(demo_run, root, symlinks=True)
    secret = "sk-pipeline-test-DO-NOT-LEAK-4242"
    server = fake_openai.start()
    try:
        name = overlay(
            root,
            "openai_judge.yaml",
            {
                "judge": {
                    "backend": "openai",
                    "model": "judge-model",
                    "base_url": server.base_url,
                    "api_key_env": "PIPELINE_JUDGE_KEY",
                    "concurrency": 4,
                    "backoff_base": 0.01,
                    "price_per_million": {"input": 2.5, "output": 10.0},
                }
            },
        )
        args, env = ("--configfile", "config/demo.yaml", name), {"PIPELINE_JUDGE_KEY": secret}
        assert planned_jobs(root, *args, env=env) == {
            "judge_pairwise": len(SETTINGS) * REPLICATES * 2,
            "fidelity_table": 1,
            **table_jobs(2),
        }
        snakemake(root, "--cores", "1", *args, env=env)
        results = root / "results" / "demo"
        expected = set()  # both orders of every (question, answer) that some setting gave
        for test_set in TEST_SETS:
            question = {r["id"]: r["question"] for r in read_jsonl(results / "data/test" / f"{test_set}.jsonl")}
            baseline = {r["id"]: r["answer"] for r in read_jsonl(results / "baseline" / f"{test_set}.jsonl")}
            for setting in SETTINGS:
                for rep in range(REPLICATES):
                    for r in read_jsonl(results / "generations" / test_set / setting / f"rep{rep}.jsonl"):
                        q, a, b = question[r["id"]], r["answer"], baseline[r["id"]]
                        expected |= {(q, a, b), (q, b, a)}
        asked = [fake_openai.conversation(r["body"]) for r in server.requests]
        assert len(asked) == len(expected) and set(asked) == expected  # each once: equal answers share calls
        assert all(r["headers"]["authorization"] == f"Bearer {secret}" for r in server.requests)

        snakemake(root, "--cores", "2", "--forcerun", "judge_pairwise", *args, env=env)
        assert len(server.requests) == len(asked)  # the cache answers a rerun
    finally:
        fake_openai.stop(server)
    rows = read_csv(root / HEADLINE / "winrate.csv")
    assert list(rows[0]) == WINRATE_COLUMNS
    assert all(int(r["judge_calls"]) == 2 * 12 * REPLICATES and float(r["cost_usd"]) > 0 for r in rows)
    for folder in (root / "results", root / ".snakemake"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_llm_augmentation_in_the_dag_rewrites_the_share_and_pays_once(demo_run, tmp_path):
    """The study's augmentation method against a loopback server, through Snakemake."""
    root = tmp_path / "run"
    shutil.copytree(demo_run, root, symlinks=True)
    secret = "sk-augment-test-DO-NOT-LEAK-77"
    server = fake_openai.start(
        respond=lambda body: "增强后的文本：请问"
        + body["messages"][-1]["content"].split("原文：", 1)[1].removesuffix("\n\n增强后的文本：")
    )
    target = "results/demo/data/train_augmented.jsonl"
    try:
        name = overlay(
            root,
            "llm_augment.yaml",
            {
                "augmentation": {
                    "method": "llm",
                    "llm": {
                        "model": "deepseek-chat",
                        "base_url": server.base_url,
                        "api_key_env": "PIPELINE_AUGMENT_KEY",
                        "temperature": 0.7,
                        "backoff_base": 0.01,
                    },
                }
            },
        )
        args = ("--configfile", "config/demo.yaml", name)
        proc = snakemake(root, target, "--cores", "1", *args, check=False)  # no key: stops first
        assert proc.returncode != 0 and "environment variable PIPELINE_AUGMENT_KEY is not set" in proc.stderr
        assert not server.requests
        env = {"PIPELINE_AUGMENT_KEY": secret}
        snakemake(root, target, "--cores", "1", *args, env=env)
        train = read_jsonl(root / "results/demo/data/train.jsonl")
        out = read_jsonl(root / target)
        copies = out[len(train) :]
        assert out[: len(train)] == train and len(copies) == int(0.3 * len(train) + 0.5) == len(server.requests)
        answers = {r["id"]: r["answer"] for r in train}
        assert all(c["answer"] == answers[c["augmented_from"]] and c["question"].startswith("请问") for c in copies)
        (root / target).unlink()
        snakemake(root, target, "--cores", "1", *args, env=env)
        assert read_jsonl(root / target) == out and len(server.requests) == len(copies)  # nothing paid twice
    finally:
        fake_openai.stop(server)
    for folder in (root / "results", root / ".snakemake"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_study_dag_dry_run_offline_without_key(tmp_path):
    root = copy_repo(tmp_path)
    env = {"OPENAI_API_KEY": "", "HF_HUB_OFFLINE": "1"}
    jobs = planned_jobs(root, "--resources", "gpu=1", env=env)
    # 4 settings x 3 replicates trained; they and 2 controls answer 2 test sets; 2 judges.
    assert jobs == {
        "raw_data": 1,
        "split_data": 1,
        "test_set": 2,
        "near_duplicates": 2,
        "augment_train": 1,
        "base_model": 2,
        "train_adapter": 12,
        "generate_answers": 36,
        "baseline_answers": 2,
        "judge_pairwise": 72,
        "fidelity_table": 1,
        "figure_loss_curves": 1,
        "compute_table": 1,
        "calibration_table": 1,
        "human_label_sheet": 1,
        **table_jobs(4, cards=12),
    }
    out = snakemake(root, "-n", "--cores", "1", "--resources", "gpu=1", env=env).stdout
    assert "results/study/models/qwen3-14b/manifest.json" in out


def test_study_run_without_course_file_stops_before_any_job(tmp_path):
    root = copy_repo(tmp_path)
    proc = snakemake(
        root,
        "--cores",
        "1",
        "--resources",
        "gpu=1",
        env={"OPENAI_API_KEY": "sk-test", "DEEPSEEK_API_KEY": "sk-test"},
        check=False,
    )
    assert proc.returncode != 0
    assert "test_sets.course.source: the course file 'data/zh_med.json' does not exist" in proc.stdout + proc.stderr
    assert not (root / "results").exists()


def test_study_dry_run_uses_the_course_file_when_present(tmp_path):
    if not (SHARED_DATA / "zh_med.json").exists():
        pytest.skip(f"the course file is not at {SHARED_DATA}")
    root = copy_repo(tmp_path)
    shutil.copy(SHARED_DATA / "zh_med.json", root / "data" / "zh_med.json")
    out = snakemake(root, "-n", "--cores", "1", "--resources", "gpu=1", env={"HF_HUB_OFFLINE": "1"}).stdout
    assert re.search(r"rule test_set:\n\s+input: data/zh_med.json", out)
    assert "wildcards: test_set=heldout" in out


def test_workflow_lints_clean():
    for args in ([], DEMO):
        proc = snakemake(REPO, "--lint", *args)
        assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr
    fmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stderr


# Every bad config is tested by direct calls in test_config_checks.py; these two prove that a dry
# run makes both checks: the schema's (the Snakefile's validate) and the cross-references' (common.smk).
@pytest.mark.parametrize(
    "change, message",
    [
        ({"judge": {"temprature": 0.2}}, "'temprature' was unexpected"),
        (
            {"settings": {"setting1": {"model": "no-such-model"}}},
            "settings.setting1.model: 'no-such-model' is not a key of models",
        ),
    ],
)
def test_bad_config_stops_the_dry_run_naming_the_key(tmp_path, change, message):
    root = copy_repo(tmp_path)
    name = overlay(root, "bad.yaml", change)
    proc = snakemake(root, "-n", "--cores", "1", "--configfile", "config/demo.yaml", name, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_demo_paper_pdf_has_the_win_rates_and_the_report_builds(demo_run):
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (Debian package poppler-utils)")
    results = demo_run / "results" / "demo"
    pdf = results / "paper" / "paper.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    rows = read_csv(demo_run / HEADLINE / "winrate.csv")
    assert "Table 1: Win rate against the baseline (12 questions × 2 replicates per setting)" in text
    for k, r in enumerate(rows, 1):  # Table 1: wins, ties, losses, win rate (%)
        cells = [r["wins"], r["ties"], r["losses"], f"{100 * float(r['win_rate']):.1f}"]
        assert re.search(rf"Ours \(setting {k}\).*?\s" + r"\s+".join(cells) + r"\s", text), cells
    snakemake(demo_run, *DEMO, "--report", "results/demo/report.html")
    report = (results / "report.html").read_text(encoding="utf-8")
    for item in (
        "paper.pdf",
        "loss_curves.pdf",
        "win_rates.pdf",
        "answer_lengths.pdf",
        "ranking.pdf",
        "table1.html",
        "browser.html",
    ):
        assert item in report
    flat = " ".join(text.split())
    assert re.search(r"The study.s claims on test set small", flat) and "Agreement with the primary judge" in flat


# Ctrl-C: Snakemake's incomplete-output handling and our atomic writes together leave no
# output that looks complete; the next run reruns exactly what was unfinished (training resumes
# from a checkpoint where one was left) and ends where an uninterrupted run ends.
def test_ctrl_c_leaves_no_output_that_looks_complete_and_the_rerun_finishes(demo_run, tmp_path):
    root = copy_repo(tmp_path)
    results = root / "results" / "demo"
    # Ctrl-C as a terminal delivers it, whatever this test inherited: a test run started in the
    # background (`cmd &`) has SIGINT ignored, and Snakemake would inherit that and never stop.
    run = subprocess.Popen(
        [*SNAKEMAKE, "--cores", "1", *DEMO],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 600
    while not list(results.glob("checkpoints/*/*/*/checkpoint-*")) and time.time() < deadline:
        time.sleep(0.1)  # until a training job is past its first checkpoint
    run.send_signal(signal.SIGINT)
    out, _ = run.communicate(timeout=300)
    assert run.returncode != 0 and not (root / HEADLINE / "winrate.csv").exists(), out
    runs = [(s, rep) for s in TRAINED for rep in range(REPLICATES)]
    trained = [run for run in runs if (results / "adapters" / run[0] / f"rep{run[1]}").exists()]
    for s, rep in runs:  # an adapter and its loss curve exist together or not at all
        assert (results / "losses" / s / f"rep{rep}.csv").exists() == ((s, rep) in trained), (s, rep)
    assert len(trained) < len(runs)
    assert not [p for p in results.rglob(".*") if p.is_file()]  # no temporary file left behind
    resumable = {
        (p.parent.parent.parent.name, p.parent.parent.name) for p in results.glob("checkpoints/*/*/*/checkpoint-*")
    }
    # Snakemake remembers the interrupted job as incomplete: a plain rerun says so and stops, and
    # --rerun-incomplete (which both profiles set) reruns it.
    proc = snakemake(root, "--cores", "1", *DEMO, check=False)
    assert proc.returncode != 0 and "IncompleteFilesException" in proc.stderr
    jobs = planned_jobs(root, "--rerun-incomplete", *DEMO)
    # the runs never trained, and at most the one job (--cores 1) that Ctrl-C cut off, even if its
    # outputs had already been moved into place
    left = len(runs) - len(trained)
    assert left <= jobs["train_adapter"] <= left + 1
    # what had finished stays finished (with one core, a test set may not have been drawn yet)
    assert not {"raw_data", "split_data"} & set(jobs)
    assert jobs.get("test_set", 0) == sum(not (results / "data" / "test" / f"{t}.jsonl").exists() for t in TEST_SETS)
    snakemake(root, "--cores", "2", "--rerun-incomplete", *DEMO)
    for s, rep in resumable:
        log = results / "logs" / "train_adapter" / s / f"{rep}.log"
        assert "Resuming from" in log.read_text(encoding="utf-8")
    for data in ("data/train.jsonl", "data/test/small.jsonl", "baseline/small.jsonl"):
        assert (results / data).read_bytes() == (demo_run / "results" / "demo" / data).read_bytes(), data
    assert [r["setting"] for r in read_csv(root / HEADLINE / "winrate.csv")] == SETTINGS
