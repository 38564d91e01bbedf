"""The paper's context (design, results, analysis, case study, provenance rows) and its LaTeX:
what paper_context.py puts in context.json and what render_tex.py makes of it."""

import json
import re
from pathlib import Path

import jinja2
import pandas as pd
import pytest

import paper_context
import provenance
import render_tex
import report_tables
from common import PipelineError, read_prompt
from conftest import fake_snakemake
from paper_context import read_pairwise_csv
from paper_data import (JUDGE_PROMPT, LEAKAGE, PUBLISHED, QUESTIONS, SPECIAL, SPECIAL_ESCAPED, STUDY_PROMPT_START,
                        EXPECTED_PCT, config, make_context, pairwise_rows, sample_records, table_cells,  # noqa: F401
                        winrate_rows, write_run_files)
from paper_results import conclusion_sentences
from render_tex import latex_escape, render_paper

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


def test_hyperparameter_table_reads_the_sftconfig_keys(config):
    """The study's rows as they were when `training:` had our own names (epochs, batch_size, ...)."""
    rows = {row["label"]: row["values"] for row in make_context(config)["hparams"]}
    assert list(rows)[6:] == ["Epochs", "Batch size", "Grad. accumulation", "Learning rate", "Weight decay", "Warmup",
                              "Scheduler", "Optimizer", "Gradient checkpointing", "Eval steps"]
    assert rows["Epochs"] == ["1"] * 4 and rows["Weight decay"] == ["0.001"] * 4
    assert rows["Batch size"] == ["2", "2", "2", "10"] and rows["Grad. accumulation"] == ["8", "8", "8", "1"]
    assert rows["Learning rate"] == ["2e-5", "2e-5", "2e-5", "1e-4"] and rows["Eval steps"] == ["10", "10", "10", "1"]
    assert rows["Warmup"] == ["3% of steps"] * 4 and rows["Scheduler"] == ["cosine"] * 4
    assert rows["Optimizer"] == ["paged_adamw_32bit"] * 4 and rows["Gradient checkpointing"] == ["yes"] * 4


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
        render_paper(make_context(config, figures={"loss": "../loss curves.pdf", "winrate": "w.pdf",
                                                   "lengths": "l.pdf"}))
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




# --------------------------------------------------------------------------- the stages


def context_stage(tmp_path, config):
    """Rule paper_context's snakemake object on run-like files, writing tmp_path/paper/context.json."""
    return fake_snakemake(input=write_run_files(tmp_path / "in", config),
                          output={"context": str(tmp_path / "paper" / "context.json")},
                          params={"config": config, "figures": paper_context.FIGURES})


def test_context_json_holds_raw_values_that_render_the_paper(tmp_path, config):
    smk = context_stage(tmp_path, config)
    paper_context.main(smk)
    context = json.loads(Path(smk.output.context).read_text(encoding="utf-8"))
    assert context["results"][2]["title"] == SPECIAL  # raw: the template escapes
    assert context["provenance"]["devices"] == ["cpu (settings 1, 2, 3 and 4)"]
    assert context["figures"] == {"loss": "loss_curves.pdf", "winrate": "win_rates.pdf",
                                  "lengths": "answer_lengths.pdf"}
    tex_path = tmp_path / "paper" / "paper.tex"
    render_tex.main(fake_snakemake(input={"context": smk.output.context, "template": str(render_tex.TEMPLATE)},
                                   output={"tex": str(tex_path)}, params={"config": config}))
    tex = tex_path.read_text(encoding="utf-8")
    # The same .tex as rendering the context in memory, the provenance's dates and checkout aside.
    in_memory = {**make_context(config), "provenance": context["provenance"]}
    assert tex == render_paper(in_memory)
    assert f"Ours (setting 3): {SPECIAL_ESCAPED} & " + " & ".join(table_cells(winrate_rows()[2])) in tex


def test_report_tables_are_html_pages_of_the_context(tmp_path, config):
    context = tmp_path / "context.json"
    context.write_text(json.dumps(make_context(config), ensure_ascii=False), encoding="utf-8")
    names = ("table", "lengths_table", "pairwise_table")
    output = {name: str(tmp_path / f"{name}.html") for name in names}
    report_tables.main(fake_snakemake(input={"context": str(context)}, output=output, params={"config": config}))
    table = Path(output["table"]).read_text(encoding="utf-8")
    assert "<td>[53.1, 88.8]</td>" in table and "50% 的 A&amp;B_C" in table
    assert "<td>0.031</td>" in Path(output["pairwise_table"]).read_text(encoding="utf-8")
    assert "<td>195</td>" in Path(output["lengths_table"]).read_text(encoding="utf-8")


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
    assert ("Near-duplicates: 1 of the 4 test questions have a question among the 400 train, 100 val rows whose "
            "character 2-grams overlap with Jaccard similarity of at least 0.5") in tex
    assert "the run stops at 0.9." in tex
    assert (r"\item test q001 and train 17 (0.67): 高血压患者平时饮食需要注意什么？ / "
            "高血压患者平时的饮食需要注意些什么？") in tex
    none_found = {**LEAKAGE, "n_pairs": 0, "n_test_with_near_duplicate": 0, "closest": [], "stop_threshold": None}
    tex = render_paper(make_context(config, leakage=none_found))
    assert "Near-duplicates: 0 of the 4" in " ".join(tex.split()) and "The closest pairs" not in tex
