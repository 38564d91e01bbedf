import copy
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import jinja2
import pandas as pd
import pytest
import yaml

import fidelity_table
import provenance
import render_paper as rp
from common import PipelineError, read_prompt
from conftest import REPO, fake_snakemake
from render_paper import (conclusion_sentences, latex_escape, main, paper_context, plot_loss_curves,
                          plot_win_rates, read_pairwise_csv, render_paper)

SPECIAL = "50% 的 A&B_C #1 {x} ~ ^ \\"
SPECIAL_ESCAPED = r"50\% 的 A\&B\_C \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}"

QUESTIONS = [
    "高血压患者平时饮食需要注意什么？",
    "糖尿病的早期症状有哪些？",
    "请描述一下病毒性感染的传播途径以及如何防止传播？",
    "儿童发烧38度需要去医院吗？",
]
SETTINGS = ("setting1", "setting2", "setting3", "setting4")
JUDGE_PROMPT = REPO / "config" / "judge_prompt.txt"
STUDY_PROMPT_START = "We would like to request your feedback on the two AI assistants"

needs_xelatex = pytest.mark.skipif(
    shutil.which("xelatex") is None or shutil.which("latexmk") is None or shutil.which("pdftotext") is None,
    reason=f"xelatex/latexmk/pdftotext not installed (apt-get install {rp.APT_PACKAGES} poppler-utils)")


@pytest.fixture
def config():
    with open(REPO / "config" / "config.yaml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg.pop("recipes")  # as rules/paper.smk passes it
    cfg["settings"]["setting3"]["title"] = SPECIAL
    return cfg


# --------------------------------------------------------------------------- fixture numbers


def wilson(k, n, z=1.959963984540054):
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return center - half, center + half


def sign_test(a, b):
    m = a + b
    return min(1.0, 2 * sum(math.comb(m, i) for i in range(min(a, b) + 1)) / 2 ** m) if m else 1.0


PUBLISHED_P = {"setting1": 1.0, "setting2": 1.0, "setting3": 0.49, "setting4": 0.62}


def winrate_rows():
    """The winrate.json interface of rule winrate_table: exactly its columns."""
    def row(setting, title, wins, ties, losses, invalid=0, cost=0.12):
        n = wins + ties + losses + invalid
        low, high = wilson(wins, n)
        published = {"setting1": 0.75, "setting2": 0.9, "setting3": 0.8, "setting4": 0.8}[setting]
        return {"setting": setting, "title": title, "n": n, "wins": wins, "ties": ties, "losses": losses,
                "invalid": invalid, "win_rate": wins / n, "win_rate_ties_half": (wins + ties / 2) / n,
                "ci_low": low, "ci_high": high, "p_value": sign_test(wins, losses), "consistency": 0.85,
                "win_rate_as_first": min(1.0, (wins + 1) / n), "win_rate_as_second": (wins - 1) / n,
                "order_flip_share": 0.1, "order_flips": 2,
                "mean_answer_chars": 180.4 + wins, "baseline_mean_answer_chars": 240.6,
                "prompt_tokens": 21000 + n, "completion_tokens": 5000, "judge_calls": 2 * n, "cost_usd": cost,
                "published_win_rate": published, "published_wins": round(20 * published), "published_n": 20,
                "published_p_value": PUBLISHED_P[setting]}

    return [
        row("setting1", "Baseline recipe (Qwen3-4B)", 15, 2, 3),
        row("setting2", "Scaling (Qwen3-14B)", 18, 1, 1),
        row("setting3", SPECIAL, 13, 1, 5, invalid=1),
        row("setting4", "Training tricks (Qwen3-4B)", 2, 0, 1, cost=None),
    ]


def pairwise_rows():
    """The pairwise.csv interface: settings a/b, questions judged for both, discordant counts."""
    def row(a, b, n, a_better, b_better):
        return {"setting_a": a, "setting_b": b, "n": n, "a_better": a_better, "b_better": b_better,
                "p_value": sign_test(a_better, b_better)}

    return [row("setting1", "setting2", 20, 1, 4), row("setting1", "setting3", 20, 3, 2),
            row("setting1", "setting4", 3, 1, 0), row("setting2", "setting3", 20, 6, 0),
            row("setting2", "setting4", 3, 2, 0), row("setting3", "setting4", 3, 1, 1)]


EXPECTED_PCT = {"setting1": "75.0", "setting2": "90.0", "setting3": "65.0", "setting4": "66.7"}
PUBLISHED = {"setting1": "75.0", "setting2": "90.0", "setting3": "80.0", "setting4": "80.0"}


def table_cells(row):
    """What Table 1 shows for a winrate row, formatted as the paper formats it."""
    p = row["p_value"]
    return [str(row["n"]), str(row["wins"]), str(row["ties"]), str(row["losses"]), f"{100 * row['win_rate']:.1f}",
            f"[{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]", "<0.001" if p < 0.001 else f"{p:.3f}"]


def sample_records():
    test = [{"id": f"q{i:03d}", "question": q, "reference": "参考答案"} for i, q in enumerate(QUESTIONS, 1)]
    baseline = [{"id": r["id"], "question": r["question"], "answer": "基线回答：" + "多喝水，" * 100} for r in test]
    generations = {  # setting k's first k-1 answers stopped at the token limit
        s: [{"id": r["id"], "question": r["question"], "answer": f"{s} 的回答\n\n第二段 {SPECIAL}\x07",
             "hit_token_limit": i < k} for i, r in enumerate(test)]
        for k, s in enumerate(SETTINGS)
    }
    return test, baseline, generations


SPLIT_STATS = {"n_raw": 500, "n_kept": 500, "dropped": {"malformed": 0, "duplicate_question": 0},
               "n_train": 400, "n_val": 50, "n_heldout": 50, "n_unused": 0, "seed": 42}
AUGMENT_STATS = {"method": "llm", "ratio": 0.3, "seed": 42, "n_train": 400, "n_selected": 120, "n_augmented": 118,
                 "n_unaugmented": 2, "unaugmented_reasons": {"empty": 1, "length": 1},
                 "usage": {"model": "deepseek-chat", "calls": 122}}
STUDY = yaml.safe_load((REPO / "config" / "study.yaml").read_text(encoding="utf-8"))


def fidelity_rows(config):
    """The fidelity.csv interface, as rule fidelity_table writes it for this config."""
    return fidelity_table.fidelity_table(STUDY, config).to_dict(orient="records")


def fake_provenance():
    return {
        "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True},
        "config_sha256": "ab" * 32,
        "packages": {name: "1.0" for name in provenance.PACKAGES},
        "python": "3.11.7",
        "xelatex": "XeTeX 3.14",
        "devices": {s: "NVIDIA H100 80GB HBM3" for s in SETTINGS},
        "data": {"source": "FreedomIntelligence/Huatuo26M-Lite", "revision": "main", "raw_sha256": "cd" * 32},
        "models": {"qwen3-4b": "1cfa9a7208912126459214e8b04321603b3df60c", "qwen3-14b": "8268fe3026cb304910457689366670e803a6fd56"},
        "dates": {"raw data read": "2025-11-20 10:00 UTC", "paper rendered": "2025-11-21 09:00 UTC"},
        "judge": {"backend": "openai", "model": "gpt-4o", "endpoint": "https://api.openai.com/v1", "temperature": 0.0,
                  "judge_calls": 86, "prompt_tokens": 84086, "completion_tokens": 20000, "cost_usd": 0.36},
    }


def make_context(config, **overrides):
    test, baseline, generations = sample_records()
    kwargs = dict(config=config, winrate=winrate_rows(), pairwise=pairwise_rows(), split_stats=SPLIT_STATS,
                  test=test, baseline=baseline, generations=generations, provenance=fake_provenance(),
                  judge_prompt=read_prompt(JUDGE_PROMPT), fidelity=fidelity_rows(config),
                  augment_stats=AUGMENT_STATS)
    kwargs.update(overrides)
    return paper_context(**kwargs)


def loss_frame(n_steps=20, val_every=5, with_val=True):
    rows = [{"step": s, "epoch": s / n_steps, "split": "train", "loss": 3.0 / s} for s in range(1, n_steps + 1)]
    if with_val:
        rows += [{"step": s, "epoch": s / n_steps, "split": "val", "loss": 3.2 / s}
                 for s in range(val_every, n_steps + 1, val_every)]
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "loss"])


def pdftotext(path, layout=False):
    args = ["pdftotext", "-enc", "UTF-8", *(["-layout"] if layout else []), str(path), "-"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def squash(text):
    return "".join(text.split())


# --------------------------------------------------------------------------- the .tex


def test_latex_escape_maps_every_special_character():
    assert latex_escape(SPECIAL) == SPECIAL_ESCAPED
    assert latex_escape("\\&") == r"\textbackslash{}\&"  # character by character: no double escaping
    assert latex_escape("中文 plain") == "中文 plain"
    assert latex_escape("a\x07b\x00c\td\x7f") == "abc\td"  # control characters stop xelatex


def test_table_rows_have_the_numbers_of_the_winrate_table(config):
    tex = render_paper(make_context(config))
    assert tex.startswith(r"\documentclass[fontset=ubuntu]{ctexart}")
    assert tex.rstrip().endswith(r"\end{document}")
    assert "Win rate against the baseline" in tex
    for k, row in enumerate(winrate_rows(), 1):
        s = row["setting"]
        cells = table_cells(row)
        assert cells[4] == EXPECTED_PCT[s]
        expected = f"Ours (setting {k}): {latex_escape(row['title'])} & " + " & ".join(cells) + f" & {PUBLISHED[s]} \\\\"
        assert expected in tex
    assert r"Setting 2 & Setting 3 & 20 & 6 & 0 & 0.031 \\" in tex  # paired table
    assert r"Ours (setting 1): Baseline recipe (Qwen3-4B) & 195 & 241 \\" in tex  # answer lengths


def test_specials_mixed_with_chinese_are_escaped(config):
    tex = render_paper(make_context(config))
    assert SPECIAL_ESCAPED in tex
    assert SPECIAL not in tex
    # No raw special character from the data survives anywhere (template text aside).
    assert "A&B" not in tex and "B_C" not in tex and "#1" not in tex.replace(r"\#1", "")
    assert "\x07" not in tex


def test_case_study(config):
    tex = render_paper(make_context(config))
    assert config["paper"]["case_study"] == 3
    assert latex_escape(QUESTIONS[2]) in tex
    assert "(id \\texttt{q003})" in tex
    # Excerpts: first 300 characters, on one line (a blank line would end the paragraph).
    baseline_answer = sample_records()[1][2]["answer"]
    assert baseline_answer[:300] + r"\ldots" in tex
    assert baseline_answer[:301] not in tex
    assert "setting1 的回答 第二段 " + SPECIAL_ESCAPED in tex


def test_design_section_comes_from_the_config(config):
    tex = render_paper(make_context(config))
    assert r"\texttt{FreedomIntelligence/Huatuo26M-Lite}" in tex
    assert "Of 500 rows read, 500 remain" in tex and "With seed\n42 they are split into 400 training" in tex
    assert "Qwen/Qwen3-14B" in tex
    assert r"4-bit nf4" in tex
    assert r"Learning rate & 2e-5 & 2e-5 & 2e-5 & 1e-4 \\" in tex
    assert r"Gradient checkpointing & yes & yes & yes & yes \\" in tex
    assert r"LoRA targets & q\_proj, k\_proj, v\_proj, o\_proj, gate\_proj, up\_proj &" in tex
    assert r"\texttt{openai}, model" in tex and r"\texttt{gpt-3.5-turbo}" in tex
    assert STUDY_PROMPT_START in tex and "does not affect your judgment." in tex
    assert "Test set: 4 questions" in tex
    for name in ("loss_curves.pdf", "win_rates.pdf", "answer_lengths.pdf"):
        assert f"{{{name}}}" in tex
    assert "Invalid judge replies (not parsed as a verdict): 1 in all" in tex
    assert r"\VAR{" not in tex and r"\BLOCK{" not in tex
    for env in set(re.findall(r"\\begin\{(\w+)\}", tex)):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}"), env


def test_provenance_section(config):
    tex = render_paper(make_context(config)).split(r"\section{Provenance}")[1]
    assert r"\texttt{0123456789abcdef0123456789abcdef01234567 (uncommitted changes present)}" in tex
    assert "ab" * 32 in tex and "cd" * 32 in tex
    assert r"Model \texttt{qwen3-14b} & \texttt{8268fe3026cb304910457689366670e803a6fd56}" in tex
    assert r"NVIDIA H100 80GB HBM3 (settings 1, 2, 3 and 4)" in tex
    for name in provenance.PACKAGES:
        assert f"\\texttt{{{name}}} & 1.0" in tex
    assert r"Judge calls & 86" in tex and "84,086 prompt, 20,000 completion" in tex
    assert "0.36 USD (estimate)" in tex
    assert r"Setting 4 & 0 & 85.0 & 6 & 21,003 & 5,000 & -- \\" in tex  # no price: no cost


def test_analysis_calls_significant_only_what_the_tests_say(config):
    context = make_context(config)
    analysis = " ".join(context["analysis"]["baseline"] + context["analysis"]["pairwise"])
    assert "Setting 1 (Baseline recipe (Qwen3-4B)) wins 15 of 20 questions" in analysis
    assert "p = 0.008: the judge prefers this setting's answers significantly more often" in analysis
    assert "p = 0.096: the difference between wins and losses is not significant" in analysis
    assert "setting 2 wins significantly more often than setting 3" in analysis
    assert "Setting 1 against setting 2" in analysis and "(p = 0.375); the difference is not significant" in analysis
    conclusion = " ".join(context["conclusion"])
    assert "Setting 2 (Scaling (Qwen3-14B)) reaches the highest win rate against the baseline, 90.0%" in conclusion
    assert "The paired tests put it significantly ahead of setting 3." in conclusion
    assert "do not separate it from settings 1 and 4, so its lead over them may be chance" in conclusion
    assert "settings 1 and 2 are judged significantly better" in conclusion
    assert "For settings 3 and 4, the sign test finds no significant difference" in conclusion


def test_no_significance_claimed_when_no_test_is_significant(config):
    rows = winrate_rows()
    for row in rows:
        row["p_value"] = max(row["p_value"], 0.2)
    pairs = [{**p, "p_value": max(p["p_value"], 0.06)} for p in pairwise_rows()]
    context = make_context(config, winrate=rows, pairwise=pairs)
    sentences = context["analysis"]["baseline"] + context["analysis"]["pairwise"] + context["conclusion"]
    claims = [s for s in sentences if re.search(r"(?<!not )(?<!no )significant", s)]
    assert claims == []
    assert "do not separate it from settings 1, 3 and 4" in " ".join(context["conclusion"])


def test_best_without_paired_tests_is_not_called_ahead(config):
    results = make_context(config)["results"]
    sentences = conclusion_sentences(results, [])
    assert "No paired test compares it with settings 1, 3 and 4." in sentences
    assert not any("ahead" in s for s in sentences)


def test_a_setting_without_a_published_rate_shows_none(config):
    rows = winrate_rows()
    rows[3].update(published_win_rate=None, published_wins=None, published_n=None, published_p_value=None)
    tex = render_paper(make_context(config, winrate=rows))
    assert r"Ours (setting 4): Training tricks (Qwen3-4B) & 3 & 2 & 0 & 1 & 66.7 & [20.8, 93.9] & 1.000 & -- \\" in tex
    assert r"Setting 4 & 2/3 & -- & -- & -- \\" in tex


def test_published_rates_only_against_the_study_baseline(config):
    rows = winrate_rows()
    for row in rows:  # as winrate_table writes them when the run's baseline is not the study's
        row.update(published_win_rate=None, published_wins=None, published_n=None, published_p_value=None)
    context = make_context(config, winrate=rows)
    assert [r["published"] for r in context["results"]] == ["--"] * 4
    tex = render_paper(context)
    assert "a different baseline, so they are\nnot shown" in tex and "open\ndiamonds" not in tex
    assert r"\label{tab:published}" not in tex
    assert not any("published" in s for s in context["analysis"]["baseline"] + context["conclusion"])


def test_published_rates_are_tested_not_eyeballed(config):
    context = make_context(config)
    analysis = " ".join(context["analysis"]["baseline"])
    assert ("The study published 80.0% (16 of 20); Boschloo's exact test of our 13 of 20 against it gives "
            "p = 0.490: our rate is not significantly different from the published one.") in analysis
    assert "inside" not in analysis and "outside" not in analysis
    tex = render_paper(context)
    assert r"Setting 3 & 13/20 & 16/20 & 80.0 & 0.490 \\" in tex


def test_per_order_rates_position_bias_and_truncation(config):
    tex = render_paper(make_context(config))
    # setting 1: 15 wins of 20 -> 16/20 as first, 14/20 as second; flips 10%; 1 of 4 answers cut
    assert r"Setting 1 & 80.0 & 70.0 & 10.0 & 85.0 & 0 of 4 \\" in tex
    assert r"Setting 4 & 100.0 & 33.3 & 10.0 & 85.0 & 3 of 4 \\" in tex
    assert "FastChat drops such failed verdicts from its counts; we keep them in $n$ as\nnon-wins" in tex
    assert "The study judged each question once, in an order it does not state" in tex
    assert "each question from its own seed" in tex and "at most 800 new tokens" in tex


def test_fidelity_table_marks_what_differs_from_the_study(config):
    tex = render_paper(make_context(config))
    assert r"\label{tab:fidelity}" in tex and "none of them differs from the study's value" in tex
    assert r"Judge model & gpt-3.5-turbo & gpt-3.5-turbo & report §2, §3.4" in tex
    assert r"Split seed & not stated & 42 & assumption" in tex and tex.count("& ours \\") >= 5
    config["judge"]["model"] = "gpt-4o"
    tex = render_paper(make_context(config))
    assert "1 of them differ from the study's value in this run" in tex
    assert r"Judge model & gpt-3.5-turbo & gpt-4o & report §2, §3.4; the report names it ChatGPT-3 & differs \\" in tex


def test_augmentation_is_described_from_its_stats(config):
    tex = render_paper(make_context(config))
    assert "adds a rewritten copy (answer kept) of 118 of the 400 training questions" in tex
    assert "an LLM (deepseek-chat) rewrote the question" in " ".join(tex.split())
    assert "left unaugmented: 1 empty, 1 length" in " ".join(tex.split())


def test_tied_best_and_missing_win_rate(config):
    rows = winrate_rows()
    rows[0].update(wins=18, ties=1, losses=1, win_rate=0.9)
    rows[3].update(n=0, wins=0, ties=0, losses=0, win_rate=None, win_rate_ties_half=None, ci_low=None,
                   ci_high=None, consistency=None, mean_answer_chars=None)
    tex = render_paper(make_context(config, winrate=rows))
    assert "Settings 1 (Baseline recipe (Qwen3-4B)), 2 (Scaling (Qwen3-14B)) share the highest" in tex
    assert r"& 0 & 0 & 0 & 0 & -- & -- & 1.000 & 80.0 \\" in tex
    assert "Setting 4 (Training tricks (Qwen3-4B)) has no judged answers." in tex


def test_strict_undefined_raises_on_a_missing_key(config):
    context = make_context(config)
    del context["judge"]
    with pytest.raises(jinja2.UndefinedError):
        render_paper(context)
    context = make_context(config)
    del context["case"]["question"]
    with pytest.raises(jinja2.UndefinedError):
        render_paper(context)


def test_bad_inputs_are_user_errors(config):
    config["paper"]["case_study"] = 9
    with pytest.raises(PipelineError, match="case_study"):
        make_context(config)
    config["paper"]["case_study"] = 1
    with pytest.raises(PipelineError, match="no row for setting 'setting4'"):
        make_context(config, winrate=winrate_rows()[:3])
    with pytest.raises(PipelineError, match="figure path"):
        make_context(config, figures={"loss": "../loss curves.pdf", "winrate": "w.pdf", "lengths": "l.pdf"})
    rows = winrate_rows()
    del rows[1]["ci_low"]  # the win-rate table before its statistics columns
    with pytest.raises(PipelineError, match="winrate.json row of setting2: missing key 'ci_low'"):
        make_context(config, winrate=rows)
    with pytest.raises(PipelineError, match="pairwise.csv: setting 'setting9'"):
        make_context(config, pairwise=[{**pairwise_rows()[0], "setting_b": "setting9"}])


def test_pairwise_csv_and_judge_prompt_are_read(tmp_path):
    path = tmp_path / "pairwise.csv"
    pd.DataFrame(pairwise_rows()).to_csv(path, index=False)
    assert read_pairwise_csv(path) == pairwise_rows()
    path.write_text("setting_a,setting_b,n,a_better\n")
    with pytest.raises(PipelineError, match="pairwise.csv, line 1: field 'b_better'"):
        read_pairwise_csv(path)
    prompt = read_prompt(JUDGE_PROMPT)
    assert prompt.startswith(STUDY_PROMPT_START) and "\n" not in prompt
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(PipelineError, match="empty.txt: the prompt file is empty"):
        read_prompt(empty)


# --------------------------------------------------------------------------- provenance


def test_provenance_collects_from_the_run_files(tmp_path, config):
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"id": 1}\n', encoding="utf-8")
    winrate = tmp_path / "winrate.json"
    winrate.write_text(json.dumps(winrate_rows()), encoding="utf-8")
    adapters = {}
    for s in SETTINGS:
        (tmp_path / s).mkdir()
        stats = {"global_step": 3} if s == "setting4" else {"global_step": 3, "device": "NVIDIA H100 80GB HBM3"}
        (tmp_path / s / "train_stats.json").write_text(json.dumps(stats))
        adapters[s] = tmp_path / s
    manifest = tmp_path / "models" / "qwen3-4b" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"source": "Qwen/Qwen3-4B", "revision": "abc123"}))
    config["judge"]["base_url"] = "https://user:hunter2@example.org:8443/v1?api-key=xyz"
    prov = provenance.collect(config, winrate_rows(), winrate, raw, adapters, [manifest], cwd=tmp_path)
    assert prov["git"] == {"commit": None, "dirty": None}  # tmp_path is no git checkout
    assert prov["devices"] == {"setting1": "NVIDIA H100 80GB HBM3", "setting2": "NVIDIA H100 80GB HBM3",
                               "setting3": "NVIDIA H100 80GB HBM3", "setting4": "not recorded"}
    assert prov["models"] == {"qwen3-4b": "abc123"}
    assert prov["data"]["raw_sha256"] == provenance.file_sha256(raw) and len(prov["data"]["raw_sha256"]) == 64
    assert prov["judge"]["endpoint"] == "https://example.org:8443/v1"
    assert prov["judge"]["judge_calls"] == sum(r["judge_calls"] for r in winrate_rows())
    assert prov["judge"]["cost_usd"] == pytest.approx(0.36)  # setting4's null cost is left out
    assert set(prov["packages"]) == set(provenance.PACKAGES) and prov["packages"]["snakemake"] != "not installed"
    assert set(prov["dates"]) == {"raw data read", "last adapter trained", "win rates tabulated", "paper rendered"}
    shuffled = dict(reversed(list(config.items())))
    assert provenance.config_hash(shuffled) == prov["config_sha256"]
    commit = provenance.git_state(REPO)["commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)


def test_a_secret_in_an_output_stops_the_stage(config):
    secret = "sk-test-0123456789abcdef"
    environ = {"OPENAI_API_KEY": secret, "HF_TOKEN": "short"}
    provenance.check_no_secrets({"paper.tex": "no secret here: short"}, config, environ)
    with pytest.raises(PipelineError, match="paper.tex would contain the value of the environment variable OPENAI_API_KEY") as e:
        provenance.check_no_secrets({"paper.tex": f"title {secret}"}, config, environ)
    assert secret not in str(e.value)
    config["judge"]["api_key_env"] = "MY_JUDGE_KEY"
    with pytest.raises(PipelineError, match="MY_JUDGE_KEY"):
        provenance.check_no_secrets({"table.html": secret}, config, {"MY_JUDGE_KEY": secret})


# --------------------------------------------------------------------------- figures


def test_loss_figure_is_a_real_pdf(tmp_path):
    path = tmp_path / "paper" / "loss_curves.pdf"
    path.parent.mkdir()
    frames = {"Setting 1": loss_frame(), "Setting 2": loss_frame(with_val=False), "Setting 3": loss_frame(n_steps=1)}
    plot_loss_curves(frames, path)
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 1000
    plot_loss_curves(frames, path)
    assert path.read_bytes() == data  # deterministic: no creation date


@needs_xelatex
def test_figures_render_chinese(tmp_path, config):
    config["settings"]["setting1"]["title"] = "基线配方（Qwen3-4B）"
    path = tmp_path / "win_rates.pdf"
    plot_win_rates(make_context(config)["results"], path)
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True).stdout
    assert "NotoSansCJK" in fonts
    assert "基线配方" in squash(pdftotext(path))


# --------------------------------------------------------------------------- the stage and the PDF


def stage(tmp_path, config, template=REPO / "paper" / "paper.tex.j2"):
    """Run-like inputs in tmp_path and the snakemake object of rule render_paper."""
    test, baseline, generations = sample_records()

    def write(name, text):
        p = tmp_path / "in" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        return str(p)

    def jsonl(name, records):
        return write(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    losses, adapters = [], []
    for i, s in enumerate(SETTINGS):
        losses.append(write(f"{s}.csv", loss_frame(with_val=(i != 3)).to_csv(index=False)))
        adapters.append(str(Path(write(f"adapters/{s}/train_stats.json", json.dumps({"device": "cpu"}))).parent))
    models = [write(f"models/{m}/manifest.json", json.dumps({"source": m, "revision": "r1"}))
              for m in ("qwen3-4b", "qwen3-14b")]
    out = tmp_path / "results" / "study" / "paper"
    return fake_snakemake(
        input={"winrate": write("winrate.json", json.dumps(winrate_rows(), ensure_ascii=False)),
               "pairwise": write("pairwise.csv", pd.DataFrame(pairwise_rows()).to_csv(index=False)),
               "losses": losses, "split_stats": write("split_stats.json", json.dumps(SPLIT_STATS)),
               "raw": jsonl("raw.jsonl", test), "test": jsonl("test.jsonl", test),
               "baseline": jsonl("baseline.jsonl", baseline),
               "fidelity": write("fidelity.csv", pd.DataFrame(fidelity_rows(config)).to_csv(index=False)),
               "augment_stats": [write("augment_stats.json", json.dumps(AUGMENT_STATS))],
               "generations": [jsonl(f"gen_{s}.jsonl", generations[s]) for s in SETTINGS],
               "models": models, "judge_prompt": str(JUDGE_PROMPT),
               "template": str(template)},
        output={"tex": str(out / "paper.tex"), "pdf": str(out / "paper.pdf"),
                "loss_figure": str(out / "loss_curves.pdf"), "winrate_figure": str(out / "win_rates.pdf"),
                "length_figure": str(out / "answer_lengths.pdf"), "table": str(out / "table1.html"),
                "lengths_table": str(out / "answer_lengths.html"), "pairwise_table": str(out / "pairwise.html")},
        params={"config": config, "adapters": adapters},
    )


OUTPUTS = ["answer_lengths.html", "answer_lengths.pdf", "loss_curves.pdf", "pairwise.html", "paper.pdf",
           "paper.tex", "table1.html", "win_rates.pdf"]


@pytest.fixture(scope="module")
def built_paper(tmp_path_factory):
    """One compiled paper for the module's PDF tests (a few seconds)."""
    if shutil.which("xelatex") is None or shutil.which("latexmk") is None or shutil.which("pdftotext") is None:
        pytest.skip(f"xelatex/latexmk/pdftotext not installed (apt-get install {rp.APT_PACKAGES} poppler-utils)")
    with open(REPO / "config" / "config.yaml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg.pop("recipes")
    cfg["settings"]["setting3"]["title"] = SPECIAL
    tmp_path = tmp_path_factory.mktemp("paper")
    smk = stage(tmp_path, cfg)
    main(smk)
    return Path(smk.output.pdf).parent


def test_stage_writes_every_output_and_nothing_else(built_paper):
    assert sorted(p.name for p in built_paper.iterdir()) == OUTPUTS  # no build folder left behind
    assert (built_paper / "paper.pdf").read_bytes().startswith(b"%PDF")
    table = (built_paper / "table1.html").read_text(encoding="utf-8")
    assert "<td>[53.1, 88.8]</td>" in table and "50% 的 A&amp;B_C" in table


def test_pdf_table_has_the_numbers_of_the_winrate_table(built_paper):
    text = pdftotext(built_paper / "paper.pdf", layout=True)
    for k, row in enumerate(winrate_rows(), 1):
        cells = table_cells(row) + [PUBLISHED[row["setting"]]]
        pattern = r"\s+".join(re.escape(c) for c in cells)
        assert re.search(pattern, text), f"Table 1 row of setting {k}: {cells}"


def test_pdf_has_the_case_study_in_chinese_and_every_setting(built_paper):
    text = squash(pdftotext(built_paper / "paper.pdf"))
    assert squash(QUESTIONS[2]) in text
    assert squash("基线回答：多喝水，多喝水，") in text
    for k, row in enumerate(winrate_rows(), 1):
        assert squash(f"Ours (setting {k}): {row['title']}") in text
    assert squash(SPECIAL) in text  # LaTeX specials and Chinese survive escaping and compiling
    assert squash(STUDY_PROMPT_START) in text
    assert squash("Package versions are those of the environment") in text


def test_missing_xelatex_is_a_clear_error(tmp_path, config, monkeypatch):
    smk = stage(tmp_path, config)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PipelineError, match="not found on PATH") as e:
        main(smk)
    assert rp.APT_PACKAGES in str(e.value)
    assert not Path(smk.output.tex).parent.exists()


@needs_xelatex
def test_a_latex_error_leaves_no_outputs(tmp_path, config):
    template = tmp_path / "broken.tex.j2"
    template.write_text(r"\documentclass{article}\begin{document}\undefinedmacro\end{document}")
    smk = stage(tmp_path, config, template=template)
    with pytest.raises(PipelineError, match=r"xelatex failed on paper.tex:\n! Undefined control sequence"):
        main(smk)
    assert list(Path(smk.output.tex).parent.iterdir()) == []


def test_main_rejects_a_bad_loss_csv(tmp_path, config, monkeypatch):
    monkeypatch.setattr(rp, "check_build_tools", lambda: None)
    bad = tmp_path / "bad.csv"
    bad.write_text("step,epoch,split,loss\n1,0.1,test,2.0\n")
    smk = fake_snakemake(
        input={"winrate": "unused", "losses": [str(bad)] * 4, "split_stats": "unused", "test": "unused",
               "baseline": "unused", "generations": ["unused"] * 4},
        output={"tex": str(tmp_path / "paper.tex"), "pdf": str(tmp_path / "paper.pdf")},
        params={"config": config, "adapters": ["unused"] * 4},
    )
    with pytest.raises(PipelineError, match=r"bad.csv, line 2: field 'split'"):
        main(smk)
    assert not (tmp_path / "paper.tex").exists() and not (tmp_path / "paper.pdf").exists()
