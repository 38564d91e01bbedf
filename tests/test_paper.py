import copy
import json
import re
from pathlib import Path

import jinja2
import pandas as pd
import pytest
import yaml

from common import PipelineError
from conftest import REPO, fake_snakemake
from render_paper import latex_escape, main, paper_context, plot_loss_curves, render_paper

SPECIAL = "50% 的 A&B_C #1 {x} ~ ^ \\"
SPECIAL_ESCAPED = r"50\% 的 A\&B\_C \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}"

QUESTIONS = [
    "高血压患者平时饮食需要注意什么？",
    "糖尿病的早期症状有哪些？",
    "请描述一下病毒性感染的传播途径以及如何防止传播？",
    "儿童发烧38度需要去医院吗？",
]


@pytest.fixture
def config():
    with open(REPO / "config" / "config.yaml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg.pop("recipes")  # as rules/paper.smk passes it
    cfg["settings"]["setting3"]["title"] = SPECIAL
    return cfg


def winrate_rows():
    def row(setting, title, wins, ties, losses, invalid=0):
        n = wins + ties + losses + invalid
        return {"setting": setting, "title": title, "n": n, "wins": wins, "ties": ties,
                "losses": losses, "invalid": invalid, "win_rate": wins / n}

    return [
        row("setting1", "Baseline recipe (Qwen3-4B)", 15, 2, 3),
        row("setting2", "Scaling (Qwen3-14B)", 18, 1, 1),
        row("setting3", SPECIAL, 13, 1, 5, invalid=1),
        row("setting4", "Training tricks (Qwen3-4B)", 2, 0, 1),
    ]


EXPECTED_PCT = {"setting1": "75.0", "setting2": "90.0", "setting3": "65.0", "setting4": "66.7"}
PUBLISHED = {"setting1": "75.0", "setting2": "90.0", "setting3": "80.0", "setting4": "80.0"}


def sample_records():
    test = [{"id": f"q{i:03d}", "question": q, "reference": "参考答案"} for i, q in enumerate(QUESTIONS, 1)]
    baseline = [{"id": r["id"], "question": r["question"], "answer": "基线回答：" + "多喝水，" * 100} for r in test]
    generations = {
        s: [{"id": r["id"], "question": r["question"], "answer": f"{s} 的回答\n\n第二段 {SPECIAL}"} for r in test]
        for s in ("setting1", "setting2", "setting3", "setting4")
    }
    return test, baseline, generations


def make_context(config, **overrides):
    test, baseline, generations = sample_records()
    kwargs = dict(config=config, winrate=winrate_rows(),
                  split_stats={"n_train": 400, "n_val": 50, "n_heldout": 50},
                  test=test, baseline=baseline, generations=generations)
    kwargs.update(overrides)
    return paper_context(**kwargs)


def loss_frame(n_steps=20, val_every=5, with_val=True):
    rows = [{"step": s, "epoch": s / n_steps, "split": "train", "loss": 3.0 / s} for s in range(1, n_steps + 1)]
    if with_val:
        rows += [{"step": s, "epoch": s / n_steps, "split": "val", "loss": 3.2 / s}
                 for s in range(val_every, n_steps + 1, val_every)]
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "loss"])


def test_latex_escape_maps_every_special_character():
    assert latex_escape(SPECIAL) == SPECIAL_ESCAPED
    assert latex_escape("\\&") == r"\textbackslash{}\&"  # character by character: no double escaping
    assert latex_escape("中文 plain") == "中文 plain"


def test_table_rows_have_the_right_percentages(config):
    tex = render_paper(make_context(config))
    assert tex.startswith(r"\documentclass[fontset=fandol]{ctexart}")
    assert tex.rstrip().endswith(r"\end{document}")
    assert "Win rate against the baseline" in tex
    for k, row in enumerate(winrate_rows(), 1):
        s = row["setting"]
        expected = (f"Ours (setting {k}): {latex_escape(row['title'])} & {row['n']} & {row['wins']} & "
                    f"{row['ties']} & {row['losses']} & {EXPECTED_PCT[s]} & {PUBLISHED[s]} \\\\")
        assert expected in tex


def test_specials_mixed_with_chinese_are_escaped(config):
    tex = render_paper(make_context(config))
    assert SPECIAL_ESCAPED in tex
    assert SPECIAL not in tex
    # No raw special character from the data survives anywhere (template text aside).
    assert "A&B" not in tex and "B_C" not in tex and "#1" not in tex.replace(r"\#1", "")


def test_case_study_and_conclusion(config):
    tex = render_paper(make_context(config))
    assert config["paper"]["case_study"] == 3
    assert latex_escape(QUESTIONS[2]) in tex
    assert "(id \\texttt{q003})" in tex
    # Excerpts: first 300 characters, on one line (a blank line would end the paragraph).
    baseline_answer = sample_records()[1][2]["answer"]
    assert baseline_answer[:300] + r"\ldots" in tex
    assert baseline_answer[:301] not in tex
    assert "setting1 的回答 第二段 " + SPECIAL_ESCAPED in tex
    # Best setting by win rate: setting 2.
    conclusion = tex.split(r"\section{Conclusion}")[1]
    assert "Setting 2 (Scaling (Qwen3-14B)) reaches the highest win rate" in conclusion
    assert r"90.0\% (wins/ties/losses" in conclusion and "18/1/1 of 20" in conclusion


def test_design_section_comes_from_the_config(config):
    tex = render_paper(make_context(config))
    assert r"\texttt{FreedomIntelligence/Huatuo26M-Lite}" in tex
    assert "400 training, 50 validation and" in tex
    assert "Qwen/Qwen3-14B" in tex
    assert r"4-bit nf4" in tex
    assert r"Learning rate & 2e-5 & 2e-5 & 2e-5 & 1e-4 \\" in tex
    assert r"Gradient checkpointing & yes & yes & yes & no \\" in tex
    assert r"LoRA targets & q\_proj, k\_proj, v\_proj, o\_proj &" in tex
    assert r"\texttt{openai}, model" in tex and r"\texttt{gpt-4o}" in tex
    assert "Test set: 4 questions" in tex
    assert r"\includegraphics[width=\linewidth]{loss_curves.pdf}" in tex
    assert "Invalid judge replies (not parsed as a verdict): 1 in all" in tex
    assert r"\VAR{" not in tex and r"\BLOCK{" not in tex
    for env in set(re.findall(r"\\begin\{(\w+)\}", tex)):
        assert tex.count(f"\\begin{{{env}}}") == tex.count(f"\\end{{{env}}}"), env


def test_published_rate_only_for_matching_setting_names(config):
    config = copy.deepcopy(config)
    config["settings"] = {("tricks" if k == "setting4" else k): v for k, v in config["settings"].items()}
    rows = winrate_rows()
    rows[3]["setting"] = "tricks"
    test, baseline, generations = sample_records()
    generations["tricks"] = generations.pop("setting4")
    tex = render_paper(make_context(config, winrate=rows, generations=generations))
    assert r"Ours (setting 4): Training tricks (Qwen3-4B) & 3 & 2 & 0 & 1 & 66.7 & -- \\" in tex


def test_tied_best_and_missing_win_rate(config):
    rows = winrate_rows()
    rows[0].update(wins=18, ties=1, losses=1, win_rate=0.9)
    rows[3].update(n=0, wins=0, ties=0, losses=0, win_rate=None)
    tex = render_paper(make_context(config, winrate=rows))
    assert "Settings 1 (Baseline recipe (Qwen3-4B)), 2 (Scaling (Qwen3-14B))" in tex
    assert r"& 0 & 0 & 0 & 0 & -- & 80.0 \\" in tex


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
        make_context(config, figure="../loss curves.pdf")


def test_loss_figure_is_a_real_pdf(tmp_path):
    path = tmp_path / "paper" / "loss_curves.pdf"
    frames = {"Setting 1": loss_frame(), "Setting 2": loss_frame(with_val=False), "Setting 3": loss_frame(n_steps=1)}
    plot_loss_curves(frames, path)
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 1000
    assert sorted(p.name for p in path.parent.iterdir()) == ["loss_curves.pdf"]  # no temp file left
    plot_loss_curves(frames, path)
    assert path.read_bytes() == data  # deterministic: no creation date


def test_main_writes_tex_and_figure(tmp_path, config):
    test, baseline, generations = sample_records()
    settings = list(config["settings"])

    def jsonl(name, records):
        p = tmp_path / name
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        return str(p)

    losses = []
    for i, s in enumerate(settings):
        p = tmp_path / f"{s}.csv"
        loss_frame(with_val=(i != 3)).to_csv(p, index=False)
        losses.append(str(p))
    (tmp_path / "winrate.json").write_text(json.dumps(winrate_rows(), ensure_ascii=False), encoding="utf-8")
    (tmp_path / "split_stats.json").write_text(json.dumps({"n_train": 400, "n_val": 50, "n_heldout": 50}))
    out = tmp_path / "results" / "study" / "paper"
    smk = fake_snakemake(
        input={"winrate": str(tmp_path / "winrate.json"), "losses": losses,
               "split_stats": str(tmp_path / "split_stats.json"), "test": jsonl("test.jsonl", test),
               "baseline": jsonl("baseline.jsonl", baseline),
               "generations": [jsonl(f"gen_{s}.jsonl", generations[s]) for s in settings],
               "template": str(REPO / "paper" / "paper.tex.j2")},
        output={"tex": str(out / "paper.tex"), "figure": str(out / "loss_curves.pdf")},
        params={"config": config},
    )
    main(smk)
    tex = (out / "paper.tex").read_text(encoding="utf-8")
    assert r"\includegraphics[width=\linewidth]{loss_curves.pdf}" in tex
    assert "Ours (setting 2): Scaling (Qwen3-14B) & 20 & 18 & 1 & 1 & 90.0 & 90.0" in tex
    assert (out / "loss_curves.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in out.iterdir()) == ["loss_curves.pdf", "paper.tex"]


def test_main_rejects_a_bad_loss_csv(tmp_path, config):
    bad = tmp_path / "bad.csv"
    bad.write_text("step,epoch,split,loss\n1,0.1,test,2.0\n")
    smk = fake_snakemake(
        input={"winrate": "unused", "losses": [str(bad)] * 4, "split_stats": "unused", "test": "unused",
               "baseline": "unused", "generations": ["unused"] * 4},
        output={"tex": str(tmp_path / "paper.tex"), "figure": str(tmp_path / "loss_curves.pdf")},
        params={"config": config},
    )
    with pytest.raises(PipelineError, match=r"bad.csv, line 2: field 'split'"):
        main(smk)
    assert not (tmp_path / "paper.tex").exists() and not (tmp_path / "loss_curves.pdf").exists()
