"""The paper's context (design, results, analysis, case study, claims, provenance rows) and its
LaTeX: what paper_context.py puts in context.json and what render_tex.py makes of it, on the
study config's fixture run (6 settings, the last 2 untuned controls; 2 replicates; the test sets
course and heldout; the judges primary and gpt-4o)."""

import json
import math
import re
from pathlib import Path

import jinja2
import pandas as pd
import pytest
import yaml
from statsmodels.stats.multitest import multipletests

import fidelity_table
import paper_context
import render_tex
import report_tables
from conftest import REPO, fake_snakemake
from huatuo_study.common import PipelineError, read_prompt
from huatuo_study.paper import provenance
from huatuo_study.paper.design import hparam_rows, setting_specs, shared_rows
from huatuo_study.run_plan import secret_envs
from paper_context import read_pairwise_csv
from paper_data import (
    EXPECTED_PCT,
    JUDGE_PROMPT,
    JUDGES,
    LEAKAGE,
    PUBLISHED,
    PUBLISHED_NONE,
    QUESTIONS,
    REPLICATES,
    SETTINGS,
    SIZES,
    SPECIAL,
    SPECIAL_ESCAPED,
    STUDY,
    STUDY_PROMPT_START,
    TABLES,
    TEST_SETS,
    TRAINED,
    WIDEST_SPREAD,
    agreement_rows,
    all_claims,
    all_winrates,
    answer,
    claims_rows,
    config,  # noqa: F401
    context_params,
    make_context,
    pairwise_rows,
    sample_records,
    table_cells,
    winrate_rows,
    write_run_files,
)
from render_tex import latex_escape, render_paper


def section(tex, start, end=r"\end{tabular}"):
    """The part of the .tex from `start` to the next `end`."""
    i = tex.index(start)
    return tex[i : tex.index(end, i)]


# --------------------------------------------------------------------------- the .tex


def test_latex_escape_maps_every_special_character():
    assert latex_escape(SPECIAL) == SPECIAL_ESCAPED
    assert latex_escape("\\&") == r"\textbackslash{}\&"  # character by character: no double escaping
    assert latex_escape("中文 plain") == "中文 plain"
    assert latex_escape("a\x07b\x00c\td\x7f") == "abc\td"  # control characters stop xelatex
    assert latex_escape("data/x_y.jsonl") == r"data/\allowbreak{}x\_\allowbreak{}y.jsonl"  # narrow cells may break
    assert latex_escape("病\ufffd。") == r"病{\fboxsep=1pt\fbox{?}}。"  # in no font: marked


def test_table_rows_have_the_numbers_of_the_winrate_table(config):
    tex = render_paper(make_context(config))
    assert tex.startswith(r"\documentclass[fontset=ubuntu]{ctexart}")
    assert tex.rstrip().endswith(r"\end{document}")
    assert "Win rate against the baseline" in tex
    rows = winrate_rows()
    assert [row["setting"] for row in rows] == list(SETTINGS)  # the controls too, after the trained settings
    for k, row in enumerate(rows, 1):
        s = row["setting"]
        cells = table_cells(row)
        assert cells[3] == EXPECTED_PCT[s]
        expected = (
            f"Ours (setting {k}): {latex_escape(row['title'])} & " + " & ".join(cells) + f" & {PUBLISHED[s]} \\\\"
        )
        assert expected in tex
    # n, 20 questions x 2 replicates pooled, in the caption, never as a count; a control has no published rate
    assert r"\caption{Win rate against the baseline (20 questions $\times$ 2 replicates per setting)}" in tex
    assert (
        r"Ours (setting 1): Baseline recipe (Qwen3-4B) & 30 & 1 & 9 & 75.0 & [59.8, 85.8] & 0.001 & "
        r"75.0 \\"
    ) in tex
    assert (
        r"Ours (setting 5): Untuned control (Qwen3-4B) & 10 & 6 & 24 & 25.0 & [14.2, 40.2] & 0.024 & "
        r"-- \\"
    ) in tex
    assert "& 40 &" not in section(tex, r"\label{tab:winrate}")


def test_pairwise_comparisons_are_one_table_with_holm_across_its_pairs(config):
    context = make_context(config)
    rows = pairwise_rows()
    holm = multipletests([r["p_value"] for r in rows], method="holm")[1]
    assert [p["p_holm"] for p in context["pairs"]] == pytest.approx(list(holm))
    assert "pairwise" not in context["analysis"]  # no per-pair paragraphs
    tex = render_paper(context)
    pairs = section(tex, r"\label{tab:pairs}")  # every pair of the 6 settings once: 15, Holm's family
    assert r"\caption{Paired comparisons between settings (20 questions $\times$ 2 replicates per pair)}" in tex
    assert r"Setting $a$ & Setting $b$ & Only $a$ won & Only $b$ won & $p$ & Holm $p$ \\" in pairs
    cells = re.findall(r"^Setting (\d) & Setting (\d) & (\d+) & (\d+) & ([\d.<]+) & ([\d.<]+) \\\\$", pairs, re.M)
    assert len(cells) == 15
    for (a, b, a_better, b_better, _p, p_holm), row, adjusted in zip(cells, rows, holm):
        assert (SETTINGS[int(a) - 1], SETTINGS[int(b) - 1]) == (row["setting_a"], row["setting_b"])
        assert (int(a_better), int(b_better)) == (row["a_better"], row["b_better"])
        assert p_holm == ("<0.001" if adjusted < 0.001 else f"{adjusted:.3f}")
    # By hand: 0.0117 is the 7th smallest of 15, so x 9 = 0.105 (above the 6 before it); 0.227, the
    # 13th, x 3 = 0.680 is raised to the 11th's 0.146 x 5 = 0.730 (Holm's adjusted p never decreases).
    assert r"Setting 2 & Setting 3 & 10 & 1 & 0.012 & 0.105 \\" in pairs
    assert r"Setting 5 & Setting 6 & 3 & 8 & 0.227 & 0.730 \\" in pairs
    assert "over the table's 15 pairs" in tex
    assert "Setting 1 against setting 2" not in tex  # the paragraphs are gone


def test_a_pairwise_row_of_another_n_is_refused(config):
    rows = pairwise_rows()
    rows[3] = {**rows[3], "n": 38}
    with pytest.raises(PipelineError, match="setting1 against control-4b has n 38, not 20 questions x 2 replicates"):
        make_context(config, pairwise=rows)


def test_answer_lengths_are_a_figure_not_a_table_too(config):
    tex = render_paper(make_context(config))
    assert r"\label{fig:lengths}" in tex and r"\label{tab:lengths}" not in tex


def test_hyperparameter_table_reads_the_sftconfig_keys(config):
    """The study's rows as they were when `training:` had our own names (epochs, batch_size, ...);
    the trained settings' columns only."""
    rows = {row["label"]: row["values"] for row in hparam_rows(setting_specs(config))}
    assert list(rows)[6:] == [
        "Epochs",
        "Batch size",
        "Grad. accumulation",
        "Learning rate",
        "Weight decay",
        "Warmup",
        "Scheduler",
        "Optimizer",
        "Gradient checkpointing",
        "Eval steps",
    ]
    assert all(len(values) == len(TRAINED) for values in rows.values())
    assert rows["Model"] == ["qwen3-4b", "qwen3-14b", "qwen3-4b", "qwen3-4b"]
    assert rows["Epochs"] == ["1"] * 4 and rows["Weight decay"] == ["0.001"] * 4
    assert rows["Batch size"] == ["2", "2", "2", "10"] and rows["Grad. accumulation"] == ["8", "8", "8", "1"]
    assert rows["Learning rate"] == ["2e-5", "2e-5", "2e-5", "1e-4"] and rows["Eval steps"] == ["10", "10", "10", "1"]
    assert rows["Warmup"] == ["3% of steps"] * 4 and rows["Scheduler"] == ["cosine"] * 4
    assert rows["Optimizer"] == ["paged_adamw_32bit"] * 4 and rows["Gradient checkpointing"] == ["yes"] * 4


def test_hyperparameters_all_settings_share_are_stated_once(config):
    context = make_context(config)
    differ = {row["label"]: row["values"] for row in context["hparams"]}
    assert list(differ) == ["Model", "Data variant", "Batch size", "Grad. accumulation", "Learning rate", "Eval steps"]
    shared = {row["label"]: row["value"] for row in context["hparams_shared"]}
    assert list(shared) == [
        "LoRA r",
        "LoRA alpha",
        "LoRA dropout",
        "LoRA targets",
        "Epochs",
        "Weight decay",
        "Warmup",
        "Scheduler",
        "Optimizer",
        "Gradient checkpointing",
    ]
    assert shared["Warmup"] == "3% of steps"
    tex = render_paper(context)
    assert (
        "Table~\\ref{tab:hparams} lists the hyperparameters in which the trained settings differ; they\n"
        "share the others: LoRA r 16; LoRA alpha 16; "
    ) in tex
    table = section(tex, r"\label{tab:hparams}", r"\end{tabularx}")
    assert r"Batch size & 2 & 2 & 2 & 10 \\" in table and "Weight decay" not in table
    # One trained setting has nothing to share with: every value stays in its column.
    assert shared_rows([{"label": "Epochs", "values": ["1"]}]) == []


def test_controls_are_settings_without_hyperparameters(config):
    context = make_context(config)
    assert [(s["k"], s["key"], s["control"]) for s in context["settings"]] == [
        (1, "setting1", False),
        (2, "setting2", False),
        (3, "setting3", False),
        (4, "setting4", False),
        (5, "control-4b", True),
        (6, "control-14b", True),
    ]
    assert context["trained"] == [{"k": k, "key": s} for k, s in enumerate(TRAINED, 1)]
    tex = render_paper(context)
    assert "The study compares 6 settings" in tex
    assert (
        "Untuned controls, each a base model answering with no adapter and the same decoding:\n"
        "setting 5 (Untuned control (Qwen3-4B)); \nsetting 6 (Untuned control (Qwen3-14B))."
    ) in tex
    hparams = section(tex, r"\label{tab:hparams}", r"\end{tabularx}")
    assert r"\begin{tabularx}{\linewidth}{@{}l*{4}{" in hparams
    assert [int(k) for k in re.findall(r"^ & Setting (\d+)$", hparams, re.M)] == [1, 2, 3, 4]
    assert "Setting 5" not in hparams and "Setting 6" not in hparams and "Untuned" not in hparams
    assert r"Model & qwen3-4b & qwen3-14b & qwen3-4b & qwen3-4b \\" in hparams
    # A control is in every result table, e.g. the case study and the per-order table.
    assert r"\paragraph{Ours (setting 6): Untuned control (Qwen3-14B).}" in tex
    assert re.search(r"^Setting 6 & [\d.]+ & [\d.]+ & 10\.0 & 85\.0 & 0 & 11 of 40 \\\\$", tex, re.M)


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
    # Every setting's answer of its first replicate (replicate 0), the controls' too.
    for s in SETTINGS:
        first = " ".join(answer(s, 0).replace("\x07", "").split())
        assert latex_escape(first) in tex
        assert f"{s} 第1轮的回答" not in tex
    assert "setting1 第0轮的回答 第二段 " + SPECIAL_ESCAPED + r"{\fboxsep=1pt\fbox{?}}" in tex
    assert "\ufffd" not in tex  # in no font of the paper: marked, and the mark explained
    assert r"\fbox{?}} marks bytes" in tex


def test_case_study_explains_the_mark_only_where_an_excerpt_has_one(config):
    tests, baseline, generations = sample_records()
    clean = {
        s: [[{**g, "answer": g["answer"].replace("\ufffd", "")} for g in rep] for rep in reps]
        for s, reps in generations.items()
    }
    context = make_context(config, generations=clean)
    assert context["case"]["undecodable"] is False
    assert "marks bytes" not in render_paper(context)


def test_every_page_says_when_the_models_are_built_not_the_studys(config):
    tex = render_paper(make_context(config))
    assert "fancypagestyle" not in tex and "say nothing about medicine" not in tex  # the study's hub models
    config["test_sets"]["heldout"]["baseline"] = {"source": "model", "model": "tiny-chat"}
    config["models"]["tiny-chat"] = {"source": "build", "build": {"hidden_size": 64}}
    assert make_context(config)["notice"] is not None  # a built baseline model is enough
    config["models"]["qwen3-14b"] = {"source": "build", "build": {"hidden_size": 64}}
    context = make_context(config)
    notice = (
        "Not the study's Qwen3: models built by this pipeline from random weights, so these numbers say "
        "nothing about medicine"
    )
    assert context["notice"] == notice
    tex = render_paper(context)
    preamble = tex[: tex.index(r"\begin{document}")]
    # The header of the plain style, which \maketitle's page uses too, and the style of every page.
    assert (
        r"\fancypagestyle{plain}{%"
        + "\n"
        + r"  \fancyhf{}%"
        + "\n"
        + r"  \fancyhead[C]{\footnotesize\itshape "
        + latex_escape(notice)
        + "}%"
    ) in preamble
    assert "\\renewcommand{\\headrulewidth}{0pt}}\n\\pagestyle{plain}\n" in preamble
    assert tex.count(r"\pagestyle{") == 1 and r"\thispagestyle" not in tex


def test_the_fidelity_table_shows_the_runs_models_and_test_set():
    """The demo's models and test sets are not the study config's names: the rows follow its
    settings' models and its first test set instead of showing 'absent'."""
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text(encoding="utf-8"))
    rows = {r["parameter"]: r for r in fidelity_table.fidelity_table(STUDY, demo).to_dict(orient="records")}
    assert rows["Model, settings 1, 3, 4"]["this_run"] == "build" and rows["Model, setting 2"]["this_run"] == "build"
    assert (rows["Test set"]["this_run"], rows["Test questions"]["this_run"], rows["Baseline answers"]["this_run"]) == (
        "heldout",
        "12",
        "model",
    )
    assert all(rows[p]["status"] == "deviation" for p in ("Model, setting 2", "Test set", "Test questions"))
    demo["settings"]["setting2"]["model"] = "tiny-s"
    demo["models"]["tiny-s"]["source"] = "Qwen/Qwen3-14B"  # setting 2's model, whatever its name
    assert fidelity_table.fidelity_table(STUDY, demo).set_index("parameter").loc["Model, setting 2", "status"] == "same"


def test_design_section_comes_from_the_config(config):
    tex = render_paper(make_context(config))
    assert r"\texttt{FreedomIntelligence/\allowbreak{}Huatuo26M-Lite}" in tex
    assert "Of 500 rows read, 500 remain" in tex and "With seed\n42 they are split into 400 training" in tex
    assert latex_escape("Qwen/Qwen3-14B") in tex
    assert r"4-bit nf4" in tex
    assert r"Learning rate & 2e-5 & 2e-5 & 2e-5 & 1e-4 \\" in tex
    assert r"Gradient checkpointing yes" in tex  # shared by every setting: stated once
    assert latex_escape("LoRA targets q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj;") in tex
    assert r"\texttt{openai}, model" in tex and r"\texttt{gpt-3.5-turbo}" in tex
    assert r"the panel:" + "\n" + r" \texttt{gpt-4o} (backend \texttt{openai}, model \texttt{gpt-4o})" in tex
    assert STUDY_PROMPT_START in tex and "does not affect your judgment." in tex
    # Each test set, the first the headline, with its size and its baseline.
    assert (
        r"Test set \texttt{course}: 20 questions (from data/\allowbreak{}zh\_\allowbreak{}med.json); baseline:" + "\n"
        r"the ChatGPT answers of the course's test file (the headline test set of Table~\ref{tab:winrate})."
    ) in tex
    assert (
        r"Test set \texttt{heldout}: 8 questions (a slice of the held-out split); baseline:" + "\n"
        "the answers of gpt-3.5-turbo through an OpenAI-compatible API."
    ) in tex
    assert "Every setting runs 2 times (replicates)" in tex
    assert "its verdicts are on 20 questions\n$\\times$ 2 replicates" in tex
    for name in ("loss_curves.pdf", "win_rates.pdf", "answer_lengths.pdf"):
        assert f"{{{name}}}" in tex
    assert "Invalid judge replies (not parsed as a verdict): 1 in all" in tex
    assert r"\VAR{" not in tex and r"\BLOCK{" not in tex
    for env in set(re.findall(r"\\begin\{(\w+)\}", tex)):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}"), env


def test_one_replicate_is_not_called_replicates(config):
    config["replicates"] = 1
    one = {
        key: [{**r, "replicates": 1, "replicate_win_rate_sd": None} for r in rows]
        for key, rows in all_winrates().items()
    }
    tests, baseline, generations = sample_records()
    context = make_context(
        config,
        winrates=one,
        generations={s: reps[:1] for s, reps in generations.items()},
        pairwise=[{**p, "n": 20} for p in pairwise_rows()],
    )
    assert context["seed_noise"] is None
    tex = render_paper(context)
    assert "(replicates)" not in tex and "times replicates" not in tex and "seed noise" not in tex
    assert re.search(r"^Setting 1 & [\d.]+ & [\d.]+ & 10\.0 & 85\.0 & 0 & 0 of 20 \\\\$", tex, re.M)
    assert r"(20 questions per setting)" in tex and r"(20 questions per pair)" in tex


def test_provenance_section(config):
    tex = render_paper(make_context(config)).split(r"\section{Provenance}")[1]
    assert r"\texttt{0123456789abcdef0123456789abcdef01234567 (uncommitted changes present)}" in tex
    assert "ab" * 32 in tex and "cd" * 32 in tex
    assert r"Model \texttt{qwen3-14b} & \texttt{8268fe3026cb304910457689366670e803a6fd56}" in tex
    assert r"Training device & NVIDIA H100 80GB HBM3 (settings 1, 2, 3 and 4) \\" in tex  # controls train nothing
    for name in provenance.PACKAGES:
        assert f"\\texttt{{{name}}} & 1.0" in tex
    # The headline table's usage: 6 settings x 40 verdicts x 2 calls.
    assert r"Judge calls & 480" in tex and "126,240 prompt, 30,000 completion" in tex
    assert "0.60 USD (estimate)" in tex


def test_analysis_calls_significant_only_what_the_tests_say(config):
    context = make_context(config)
    analysis = " ".join(context["analysis"]["baseline"])
    assert "Setting 1 (Baseline recipe (Qwen3-4B)) wins 30 of 40 judged answers" in analysis
    assert "p = 0.001: the judge prefers this setting's answers significantly more often" in analysis
    assert "p = 0.143: the difference between wins and losses is not significant" in analysis
    assert (
        "Setting 5 (Untuned control (Qwen3-4B)) wins 10 of 40 judged answers against the baseline (25.0%, "
        "95% interval [14.2, 40.2]%)"
    ) in analysis
    assert "p = 0.024: the judge prefers the baseline's answers significantly more often" in analysis


def test_significance_is_at_the_configs_alpha(config):
    """statistics.alpha, not a constant: at 0.01, p = 0.001 stays significant, p = 0.024 does not."""
    config["statistics"]["alpha"] = 0.01
    context = make_context(config)
    assert "p = 0.001: the judge prefers this setting's answers significantly more often" in " ".join(
        context["analysis"]["baseline"]
    )
    assert "p = 0.024: the difference between wins and losses is not significant" in " ".join(
        context["analysis"]["baseline"]
    )
    tex = render_paper(context)
    assert "gives $p < 0.01$" in tex and "corrected $p$ is below\n0.01 and" in tex


def test_no_significance_claimed_when_no_test_is_significant(config):
    rows = winrate_rows()
    for row in rows:
        row["p_value"] = max(row["p_value"], 0.2)
    pairs = [{**p, "p_value": max(p["p_value"], 0.06)} for p in pairwise_rows()]
    context = make_context(config, winrate=rows, pairwise=pairs)
    sentences = context["analysis"]["baseline"]
    claims = [s for s in sentences if re.search(r"(?<!not )(?<!no )significant", s)]
    assert claims == []


def test_a_setting_without_a_published_rate_shows_none(config):
    rows = winrate_rows()
    rows[3].update(PUBLISHED_NONE)
    tex = render_paper(make_context(config, winrate=rows))
    assert (
        r"Ours (setting 4): Training tricks (Qwen3-4B) & 22 & 4 & 14 & 55.0 & [39.8, 69.3] & 0.243 & "
        r"-- \\"
    ) in tex
    assert r"Setting 4 & 57.5 & -- & -- & -- \\" in tex
    assert r"Setting 5 & 32.5 & -- & -- & -- \\" in tex  # the controls: the study had none


def test_published_rates_only_against_the_study_baseline(config):
    rows = winrate_rows()
    for row in rows:  # as winrate_table writes them when the run's baseline is not the study's
        row.update(PUBLISHED_NONE)
    context = make_context(config, winrate=rows)
    assert [r["published"] for r in context["results"]] == ["--"] * 6
    tex = render_paper(context)
    assert "a different baseline, so they are\nnot shown" in tex and "open\ndiamonds" not in tex
    assert r"\label{tab:published}" not in tex
    assert "Published" not in section(tex, r"\label{tab:winrate}")  # no column of dashes
    assert not any("published" in s for s in context["analysis"]["baseline"] + context["conclusion"])


def test_published_rates_are_compared_on_the_studys_terms(config):
    context = make_context(config)
    analysis = " ".join(context["analysis"]["baseline"])
    assert (
        "The study published 80.0%; in its order alone (the baseline as Assistant 1, our assumption from the "
        "course's code), each question once, ours scores 62.5%; ours minus the study's is -17.5 [-45.5, +10.5] "
        "points (estimate [95% interval]); the equivalence test gives p = 0.612: our rate is not shown "
        "equivalent to the study's within ±15 points, which is no evidence of a difference either."
    ) in analysis
    assert (
        "ours minus the study's is +2.5 [-7.5, +12.5] points (estimate [95% interval]); the equivalence test "
        "gives p = 0.031: our rate is within ±15 points of the study's (equivalent)."
    ) in analysis
    assert "significantly different" not in analysis and "Boschloo" not in analysis
    assert not any("The study published" in s for s in context["analysis"]["baseline"][4:])  # controls
    tex = render_paper(context)
    assert r"Within $\pm$15 points ($p$) \\" in tex and r"within $\pm$15 points (two one-sided tests" in tex
    assert r"Setting 2 & 92.5 & 90.0 & +2.5 [-7.5, +12.5] & equivalent (0.031) \\" in tex
    assert r"Setting 3 & 62.5 & 80.0 & -17.5 [-45.5, +10.5] & not shown equivalent (0.612) \\" in tex
    assert r"Setting 5 & 32.5 & -- & -- & -- \\" in tex


def test_per_order_rates_position_bias_and_truncation(config):
    tex = render_paper(make_context(config))
    # setting 1: 30 wins of 40 -> 31/40 as first, 29/40 as second; flips 10%; truncation counts
    # both replicates: 0 of replicate 0's 20 answers, 1 of replicate 1's
    assert r"Setting 1 & 77.5 & 72.5 & 10.0 & 85.0 & 0 & 1 of 40 \\" in tex
    assert r"Setting 3 & 62.5 & 57.5 & 10.0 & 85.0 & 1 & 5 of 40 \\" in tex  # its invalid verdict
    assert r"Setting 4 & 57.5 & 52.5 & 10.0 & 85.0 & 0 & 7 of 40 \\" in tex
    assert "FastChat drops such failed verdicts from its counts; we keep them in $n$ as\nnon-wins" in tex
    assert "The study does not say in how many orders it judged a question" in tex
    assert "each question from its own seed" in tex and "at most 800 new tokens" in tex


def test_fidelity_table_marks_what_differs_from_the_study(config):
    tex = render_paper(make_context(config))
    # The study config deviates only in bf16 mixed precision (ours, declared), and says so.
    assert r"\label{tab:fidelity}" in tex and "1 differs from it in this run (``differs'')" in tex
    assert "bf16 mixed precision, setting 4 & not set in §3.3's arguments (transformers' default: no) & yes" in tex
    assert (
        r"Judge model & ChatGPT-3 & gpt-3.5-turbo & report §2, §3.4; our reading: gpt-3.5-turbo & our reading \\" in tex
    )
    assert r"Split seed & not stated & 42 & assumption; our assumption: 42" in tex and tex.count("& ours \\") >= 5
    assert r"Runs per setting & one (one win rate per setting) & 2 & report Table 1" in tex
    assert tex.count("& by design \\") >= 3 and tex.count("& speed only \\") >= 4
    config["judge"]["model"] = "gpt-4o"
    tex = render_paper(make_context(config))
    assert "2 differ from it in this run (``differs'')" in tex
    assert r"Judge model & ChatGPT-3 & gpt-4o & report §2, §3.4; our reading: gpt-3.5-turbo & differs \\" in tex


def test_augmentation_is_described_from_its_stats(config):
    tex = render_paper(make_context(config))
    assert "adds a rewritten copy (answer kept) of 118 of the 400 training questions" in tex
    assert "an LLM (deepseek-chat) rewrote the question" in " ".join(tex.split())
    assert "left unaugmented: 1 empty, 1 length" in " ".join(tex.split())


def test_missing_win_rate(config):
    rows = winrate_rows()
    rows[3].update(
        n=0,
        wins=0,
        ties=0,
        losses=0,
        win_rate=None,
        win_rate_ties_half=None,
        ci_low=None,
        ci_high=None,
        p_value=1.0,
        consistency=None,
        mean_answer_chars=None,
    )
    tex = render_paper(make_context(config, winrate=rows))
    assert r"Ours (setting 4): Training tricks (Qwen3-4B) & 0 & 0 & 0 & -- & -- & 1.000 & 80.0 \\" in tex
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
    config["paper"]["case_study"] = 21  # the headline test set has 20 questions
    with pytest.raises(PipelineError, match=r"case_study: 21 is not a question number between 1 and 20"):
        make_context(config)
    config["paper"]["case_study"] = 1
    with pytest.raises(PipelineError, match="no row for setting 'setting4'"):
        make_context(config, winrate=winrate_rows()[:3])
    with pytest.raises(PipelineError, match="figure path"):
        render_paper(
            make_context(config, figures={"loss": "../loss curves.pdf", "winrate": "w.pdf", "lengths": "l.pdf"})
        )
    rows = winrate_rows()
    del rows[1]["ci_low"]  # the win-rate table before its statistics columns
    with pytest.raises(PipelineError, match="winrate.json row of setting2: missing key 'ci_low'"):
        make_context(config, winrate=rows)
    with pytest.raises(PipelineError, match="pairwise.csv: setting 'setting9'"):
        make_context(config, pairwise=[{**pairwise_rows()[0], "setting_b": "setting9"}])
    generations = sample_records()[2]
    del generations["control-14b"]
    with pytest.raises(PipelineError, match="no generations for setting 'control-14b'"):
        make_context(config, generations=generations)
    winrates = all_winrates()
    winrates["heldout", "gpt-4o"] = winrates["heldout", "gpt-4o"][:5]
    with pytest.raises(PipelineError, match="winrate table of heldout/gpt-4o: no row for setting 'control-14b'"):
        make_context(config, winrates=winrates)
    claims = all_claims()
    claims["heldout"][2]["verdict"] = "refuted"
    with pytest.raises(PipelineError, match="claims table of heldout row 3: unknown verdict 'refuted'"):
        make_context(config, claims=claims)
    claims = all_claims()
    del claims["course"][0]["verdict"]
    with pytest.raises(PipelineError, match="claims table of course row 1: missing key 'verdict'"):
        make_context(config, claims=claims)


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


# --------------------------------------------------------------------------- the claims section


def points(value):
    return "--" if value is None else f"{100 * value:+.1f}"


def claim_cells(row, compares):
    """What a claims table row shows for a claims.json row, formatted as the paper formats it."""
    p = row["p_holm"]
    ran = row["effect"] is not None
    return [
        f"{row['claim']} ({row['source']}): {compares}",
        points(row["published_effect"]),
        points(row["effect"]),
        f"[{points(row['ci_low'])}, {points(row['ci_high'])}]" if ran else "--",
        "--" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}",
        "--" if row["power"] is None else f"{100 * row['power']:.1f}",
        f"\\textbf{{{row['verdict']}}}: {row['reading']}",
    ]


def test_claims_tables_per_test_set(config):
    context = make_context(config)
    assert [t["test_set"] for t in context["claims"]] == list(TEST_SETS)
    assert context["margin"] == "15.0"
    tex = render_paper(context)
    assert re.search(r"within the published effect \$\\pm\$\s+15\.0 points", tex)
    for test_set in TEST_SETS:
        table = section(tex, f"\\caption{{The study's claims on test set \\texttt{{{test_set}}} (primary judge")
        assert f"\\label{{tab:claims-{test_set}}}" in table
        # n as questions x replicates, never pooled
        assert f"{SIZES[test_set]} questions × {REPLICATES} replicates" in table
        lines = [line for line in table.splitlines() if line.endswith(r" \\")][1:]  # past the header
        rows = claims_rows(test_set)
        assert len(lines) == len(rows) == 11
        by_id = {r["id"]: r for r in rows}
        for line, row in zip(lines, rows):
            assert line.startswith(latex_escape(row["claim"]))
            assert f"\\textbf{{{row['verdict']}}}: {latex_escape(row['reading'])}" in line
        # the run's own models are named: setting k (its model)
        scaling = lines[[r["id"] for r in rows].index("scaling")]
        assert "setting 2 (qwen3-14b) vs setting 1 (qwen3-4b)" in scaling
        baseline_row = lines[[r["id"] for r in rows].index("beats_baseline_1")]
        assert "setting 1 (qwen3-4b) vs the baseline" in baseline_row
        assert by_id["scaling"]["published_effect"] == pytest.approx(0.15)
    course = section(tex, r"\label{tab:claims-course}")
    assert (
        r"& +15.0 & +15.0 & [-2.5, +32.5] & 0.155 & 22.7 & \textbf{inconclusive}: fixture reading of scaling" in course
    )
    assert r"& -- & +50.0 & [+30.0, +67.5] & <0.001 & -- & \textbf{supported}" in course


def test_the_calibration_table_shows_the_runs_design(config):
    tex = render_paper(make_context(config))
    table = section(tex, r"\label{tab:calibration}")
    for test_set in TEST_SETS:
        assert (
            f"\\texttt{{{test_set}}} & {SIZES[test_set]} questions × {REPLICATES} replicates & 97.0 & 96.0 & "
            f"95.0 & 98.0 & 0.4 & 400"
        ) in table


def test_the_conclusion_is_written_from_the_claims_tables_alone(config):
    context = make_context(config)
    conclusion = context["conclusion"]
    assert conclusion[0] == (
        f"On test set course ({SIZES['course']} questions × {REPLICATES} replicates, primary judge), of the 11 claims "
        "tested 5 supported (scaling_over_tricks (setting 2 (qwen3-14b) vs setting 4 (qwen3-4b)), beats_baseline_1 "
        "(setting 1 (qwen3-4b) vs the baseline), beats_baseline_2 (setting 2 (qwen3-14b) vs the baseline), "
        "sft_effective_4b (setting 1 (qwen3-4b) vs setting 5 (qwen3-4b)) and sft_effective_14b (setting 2 "
        "(qwen3-14b) vs setting 6 (qwen3-14b))) and 6 inconclusive."
    )
    # power below 80% at the published effect: scaling, augmentation, tricks, scaling over augmentation
    assert conclusion[1].startswith("For 4 of the inconclusive claims the procedure has less than 80% power")
    assert "1 reproduced (scaling_over_tricks" in conclusion[2] and "1 contradicted (training_tricks" in conclusion[2]
    tex = render_paper(context)
    body = tex[tex.index(r"\section{Conclusion}") : tex.index(r"\section{Fidelity to the study}")]
    assert "significantly ahead" not in body and "McNemar" not in body
    for sentence in conclusion:
        assert latex_escape(sentence) in body


def test_a_claim_not_run_says_so(config):
    """As claims_table writes a claim whose setting or comparison is not in the run."""
    claims = all_claims()
    claims["course"][10].update(
        against="control of setting2",
        n=None,
        replicates=None,
        effect=None,
        ci_low=None,
        ci_high=None,
        published_in_ci=None,
        p_value=None,
        p_holm=None,
        power=None,
        n_for_80_power=None,
        verdict="not run",
        reading="a setting it compares is not in this run",
    )
    context = make_context(config, claims=claims)
    tex = render_paper(context)
    assert (
        r"(report §4.1): setting 2 (qwen3-14b) vs control of setting2 & -- & -- & -- & -- & -- & "
        r"\textbf{not run}: a setting it compares is not in this run \\"
    ) in tex
    assert "of the 10 claims tested" in context["conclusion"][0]


def test_judges_win_rates_with_length_control(config):
    context = make_context(config)
    assert context["judge_rates"]["columns"] == [{"test_set": t, "judge": j} for t in TEST_SETS for j in JUDGES]
    tex = render_paper(context)
    table = section(tex, r"\label{tab:judges}")
    assert r"\begin{tabular}{@{}l*{4}{r}@{}}" in table
    assert (
        r"Setting & \texttt{course}/\texttt{primary} & \texttt{course}/\texttt{gpt-4o} & "
        r"\texttt{heldout}/\texttt{primary} & \texttt{heldout}/\texttt{gpt-4o} \\"
    ) in table
    for k, s in enumerate(SETTINGS, 1):
        cells = []
        for t in TEST_SETS:
            for j in JUDGES:
                rep_wins, _, _, _, lc = TABLES[t, j][s]
                rate = 100 * sum(rep_wins) / (SIZES[t] * REPLICATES)
                cells.append(f"{rate:.1f} ({'--' if lc is None else f'{100 * lc:.1f}'})")
        assert f"Setting {k} & " + " & ".join(cells) + r" \\" in table
    # Every verdict a win: no length control fitted.
    assert r"Setting 2 & 90.0 (87.4) & 90.0 (88.1) & 87.5 (85.1) & 100.0 (--) \\" in table
    assert r"Setting 5 & 25.0 (26.8) & 25.0 (24.3) & 18.8 (20.3) & 18.8 (19.4) \\" in table


def test_judges_agreement_with_kappa_alpha_and_their_intervals(config):
    tex = render_paper(make_context(config))
    table = section(tex, r"\label{tab:agreement}")
    assert r"\texttt{course} & \texttt{gpt-4o} & 20 & 239 & 72.0 & 0.58 [0.49, 0.67] & 0.57 [0.47, 0.66] \\" in table
    assert r"\texttt{heldout} & \texttt{gpt-4o} & 8 & 96 & 64.0 & 0.44 [0.29, 0.59] & 0.41 [0.25, 0.58] \\" in table
    assert "primary" not in table.split(r"\midrule")[1]  # each panel judge against the primary one
    # Both judges using one category alone: both statistics 0/0, as judge_agreement.csv leaves them (NaN);
    # a statistic whose resamples are too often undefined: the value without an interval.
    rows = agreement_rows()
    rows[1].update(
        agreement=1.0,
        weighted_kappa=math.nan,
        weighted_kappa_low=math.nan,
        weighted_kappa_high=math.nan,
        alpha_low=math.nan,
        alpha_high=math.nan,
    )
    table = section(render_paper(make_context(config, agreement=rows)), r"\label{tab:agreement}")
    assert r"\texttt{heldout} & \texttt{gpt-4o} & 8 & 96 & 100.0 & -- & 0.41 \\" in table
    # No panel: no agreement table.
    assert r"\label{tab:agreement}" not in render_paper(make_context(config, agreement=[]))


def test_agreement_without_valid_verdicts_shows_no_number(config):
    rows = agreement_rows()
    rows[1].update(
        n_questions=0,
        n_pairs=0,
        agreement=math.nan,
        **{
            k: math.nan
            for k in ("weighted_kappa", "weighted_kappa_low", "weighted_kappa_high", "alpha", "alpha_low", "alpha_high")
        },
    )
    table = section(render_paper(make_context(config, agreement=rows)), r"\label{tab:agreement}")
    assert r"\texttt{heldout} & \texttt{gpt-4o} & 0 & 0 & -- & -- & -- \\" in table


def human_agreement_rows():
    """tables/human_agreement.csv: people against both judges on the course's labelled pairs."""
    return [
        {**r, "test_set": "course", "judge_a": "human", "judge_b": judge, "n_questions": 9, "n_pairs": 12}
        for r, judge in zip(agreement_rows(), ("primary", "gpt-4o"))
    ]


def test_judges_agreement_with_people_only_where_labels_are_configured(config):
    assert r"\label{tab:human}" not in render_paper(make_context(config))
    tex = render_paper(make_context(config, human_agreement=human_agreement_rows()))
    table = section(tex, r"\label{tab:human}")
    assert r"\texttt{course} & \texttt{primary} & 9 & 12 & 72.0 & 0.58 [0.49, 0.67] & 0.57 [0.47, 0.66] \\" in table
    assert r"\texttt{course} & \texttt{gpt-4o} & 9 & 12 & 64.0 & 0.44 [0.29, 0.59] & 0.41 [0.25, 0.58] \\" in table
    assert "Table~\\ref{tab:human} checks the judges against people" in tex
    # The judges' own agreement table is there too, unchanged.
    assert r"\texttt{course} & \texttt{gpt-4o} & 20 & 239 & 72.0" in section(tex, r"\label{tab:agreement}")


def test_the_context_stage_reads_the_human_agreement_table(tmp_path, config):
    smk = context_stage(tmp_path, config)
    path = tmp_path / "in" / "tables" / "human_agreement.csv"
    path.write_text(pd.DataFrame(human_agreement_rows()).to_csv(index=False), encoding="utf-8")
    smk.input.human_agreement = [str(path)]
    paper_context.main(smk)
    context = json.loads(Path(smk.output.context).read_text(encoding="utf-8"))
    assert [(r["judge"], r["pairs"], r["kappa"]) for r in context["human_agreement"]] == [
        ("primary", 12, "0.58 [0.49, 0.67]"),
        ("gpt-4o", 12, "0.44 [0.29, 0.59]"),
    ]


def test_seed_noise_names_the_widest_replicate_spread(config):
    context = make_context(config)
    setting, test_set, judge, width = WIDEST_SPREAD
    k = SETTINGS.index(setting) + 1
    expected = (
        f"Each setting ran {REPLICATES} times with different seeds (training data order, LoRA initialisation, "
        f"decoding). Across them, one setting's win rate moves by up to {width} points (setting {k}, test set "
        f"{test_set}, judge {judge}); a difference between two settings of that size can be seed noise alone."
    )
    assert context["seed_noise"] == expected
    assert expected in render_paper(context)
    # A wider spread elsewhere (the headline control-4b: 0 and 15 of 20) is the one named.
    winrates = all_winrates()
    row = winrates["course", "primary"][4]
    row.update(replicate_win_rate_min=0.0, replicate_win_rate_max=0.75)
    assert (
        "moves by up to 75.0 points (setting 5, test set course, judge primary)"
        in make_context(config, winrates=winrates)["seed_noise"]
    )


def renamed(mapping, old, new):
    """A mapping by test set (or by (test set, judge)) with test set `old` named `new`, in order."""

    def key(k):
        return (new if k[0] == old else k[0], k[1]) if isinstance(k, tuple) else new if k == old else k

    return {key(k): v for k, v in mapping.items()}


def test_labels_stay_plain_for_any_test_set_name(config):
    config["test_sets"] = renamed(config["test_sets"], "heldout", "held_out")  # ^[A-Za-z0-9_.-]+$ in the schema
    tests = sample_records()[0]
    agreement = [
        {**r, "test_set": "held_out" if r["test_set"] == "heldout" else r["test_set"]} for r in agreement_rows()
    ]
    tex = render_paper(
        make_context(
            config,
            tests=renamed(tests, "heldout", "held_out"),
            leakage=renamed(LEAKAGE, "heldout", "held_out"),
            claims=renamed(all_claims(), "heldout", "held_out"),
            winrates=renamed(all_winrates(), "heldout", "held_out"),
            agreement=agreement,
        )
    )
    assert r"\texttt{held\_\allowbreak{}out}" in tex  # shown escaped
    keys = re.findall(r"\\(?:label|ref)\{([^}]*)\}", tex)
    assert "tab:claims-course" in keys
    assert [k for k in keys if "\\" in k] == []  # a label is a name, not typeset text


# --------------------------------------------------------------------------- the stages


def context_stage(tmp_path, config):
    """Rule paper_context's snakemake object on run-like files, writing tmp_path/paper/context.json."""
    return fake_snakemake(
        input=write_run_files(tmp_path / "in", config),
        output={"context": str(tmp_path / "paper" / "context.json")},
        params=context_params(config),
    )


def test_context_json_holds_raw_values_that_render_the_paper(tmp_path, config):
    smk = context_stage(tmp_path, config)
    paper_context.main(smk)
    context = json.loads(Path(smk.output.context).read_text(encoding="utf-8"))
    assert context["results"][2]["title"] == SPECIAL  # raw: the template escapes
    assert context["provenance"]["devices"] == ["cpu (settings 1, 2, 3 and 4)"]  # trained settings' replicates
    assert context["figures"] == {
        "loss": "loss_curves.pdf",
        "winrate": "win_rates.pdf",
        "lengths": "answer_lengths.pdf",
        "ranking": "ranking.pdf",
    }
    assert [r["truncated_text"] for r in context["results"]] == [f"{2 * k + 1} of 40" for k in range(6)]
    assert [t["test_set"] for t in context["claims"]] == list(TEST_SETS)
    tex_path = tmp_path / "paper" / "paper.tex"
    render_tex.main(
        fake_snakemake(
            input={"context": smk.output.context, "template": str(render_tex.TEMPLATE)},
            output={"tex": str(tex_path)},
            params={"secret_envs": secret_envs(config)},
        )
    )
    tex = tex_path.read_text(encoding="utf-8")
    # The same .tex as rendering the context in memory (the primary judge's claims, every table of
    # every test set and judge), the provenance's dates and checkout aside.
    in_memory = {**make_context(config), "provenance": context["provenance"]}
    assert tex == render_paper(in_memory)
    assert f"Ours (setting 3): {SPECIAL_ESCAPED} & " + " & ".join(table_cells(winrate_rows()[2])) in tex


def test_context_stage_checks_its_inputs_counts(tmp_path, config):
    smk = context_stage(tmp_path, config)
    smk.input.generations = smk.input.generations[:-1]  # one replicate of control-14b missing
    with pytest.raises(PipelineError, match=r"11 file\(s\) for 6 settings x 2 replicates"):
        paper_context.main(smk)
    smk = context_stage(tmp_path, config)
    smk.input.tests = smk.input.tests[:1]
    with pytest.raises(PipelineError, match=r"input 'tests': 1 file\(s\) for 2"):
        paper_context.main(smk)
    assert not Path(smk.output.context).exists()


def test_report_tables_are_html_pages_of_the_context(tmp_path, config):
    context = tmp_path / "context.json"
    context.write_text(json.dumps(make_context(config), ensure_ascii=False), encoding="utf-8")
    names = ("table", "lengths_table", "pairwise_table")
    output = {name: str(tmp_path / f"{name}.html") for name in names}
    report_tables.main(
        fake_snakemake(input={"context": str(context)}, output=output, params={"secret_envs": secret_envs(config)})
    )
    table = Path(output["table"]).read_text(encoding="utf-8")
    assert "<td>[59.8, 85.8]</td>" in table and "50% 的 A&amp;B_C" in table
    assert "<td>Ours (setting 6): Untuned control (Qwen3-14B)</td>" in table
    assert "<td>20 × 2</td>" in table and "<th>questions × replicates</th>" in table
    pairs = Path(output["pairwise_table"]).read_text(encoding="utf-8")
    assert "<td>0.012</td>\n      <td>0.105</td>" in pairs and "<th>Holm p</th>" in pairs
    assert "<td>210</td>" in Path(output["lengths_table"]).read_text(encoding="utf-8")


def test_a_secret_in_the_context_stops_the_stage_before_writing(tmp_path, config, monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    config["paper"]["title"] = f"Leaked {secret}"
    smk = context_stage(tmp_path, config)
    with pytest.raises(PipelineError, match="context.json would contain the value of the environment variable"):
        paper_context.main(smk)
    assert not Path(smk.output.context).exists()


def test_near_duplicates_are_reported_with_the_closest_pairs(config):
    tex = " ".join(render_paper(make_context(config)).split())
    assert (
        "Near-duplicates in test set course: 1 of its 20 questions have a question among the 400 train, 100 val "
        "rows whose character 2-grams overlap with Jaccard similarity of at least 0.5"
    ) in tex
    assert "the run stops at 0.9." in tex
    assert (
        r"\item test q001 and train 17 (0.67): 高血压患者平时饮食需要注意什么？ / "
        "高血压患者平时的饮食需要注意些什么？"
    ) in tex
    assert "Near-duplicates in test set heldout: 0 of its 8 questions have a question among the 400 train" in tex
    assert tex.count("The closest pairs") == 1  # course's; heldout has none
    none_found = {
        **LEAKAGE["course"],
        "n_pairs": 0,
        "n_test_with_near_duplicate": 0,
        "closest": [],
        "stop_threshold": None,
    }
    tex = " ".join(render_paper(make_context(config, leakage={**LEAKAGE, "course": none_found})).split())
    assert "Near-duplicates in test set course: 0 of its 20" in tex and "The closest pairs" not in tex
    assert tex.count("the run stops at") == 1  # heldout's
