"""The PDF: rule paper_pdf (latexmk -xelatex around paper.tex and the figures), run through
Snakemake alone in a copy of the workflow on a rendered .tex; what the PDF's text shows, and what
a LaTeX error or a missing TeX leaves behind."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from figure_answer_lengths import plot_answer_lengths
from figure_loss_curves import plot_loss_curves
from figure_ranking import plot_ranking, ranking_rows
from figure_win_rates import KEYS, plot_win_rates
from huatuo_study.paper.figure_style import APT_PACKAGES, setting_rows
from paper_data import (
    HAS_TEX,
    NO_TEX,
    PUBLISHED,
    QUESTIONS,
    RANKING,
    REPLICATES,
    SETTINGS,
    SIZES,
    SPECIAL,
    STUDY_PROMPT_START,
    TEST_SETS,
    TITLES,
    TRAINED,
    claims_rows,
    loss_frame,
    make_context,
    pdftotext,
    squash,
    study_config,
    table_cells,
    winrate_rows,
)
from render_tex import render_paper
from test_pipeline import DEMO, copy_repo, snakemake

PAPER = Path("results/demo/paper")  # config/demo.yaml's run
INPUTS = ["answer_lengths.pdf", "loss_curves.pdf", "paper.tex", "ranking.pdf", "win_rates.pdf"]
BUILD = (str(PAPER / "paper.pdf"), "--cores", "1", *DEMO, "--allowed-rules", "paper_pdf")


def workflow_with_tex(root: Path, tex: str) -> Path:
    """A copy of the workflow whose demo run has paper.tex and the three figures, and nothing
    else: with --allowed-rules paper_pdf they are its source files."""
    copy_repo(root)
    paper = root / PAPER
    paper.mkdir(parents=True)
    (paper / "paper.tex").write_text(tex, encoding="utf-8")
    rows = winrate_rows()
    plot_loss_curves(
        {
            f"Setting {k}: {TITLES[s]}": [loss_frame(scale=1 + r / 10) for r in range(REPLICATES)]
            for k, s in enumerate(TRAINED, 1)
        },
        paper / "loss_curves.pdf",
    )
    plot_win_rates(setting_rows(rows, KEYS), paper / "win_rates.pdf")
    plot_answer_lengths(
        setting_rows(rows, ("mean_answer_chars", "baseline_mean_answer_chars")), paper / "answer_lengths.pdf"
    )
    plot_ranking(ranking_rows(RANKING, {s: k for k, s in enumerate(SETTINGS, 1)}), paper / "ranking.pdf")
    return paper


@pytest.fixture(scope="module")
def built_paper(tmp_path_factory):
    """One compiled paper for the module's PDF tests (half a minute)."""
    if not HAS_TEX:
        pytest.skip(NO_TEX)
    root = tmp_path_factory.mktemp("paper")
    paper = workflow_with_tex(root, render_paper(make_context(study_config())))
    snakemake(root, *BUILD)
    return paper


def test_the_pdf_rule_writes_the_pdf_and_nothing_else(built_paper):
    assert sorted(p.name for p in built_paper.iterdir()) == sorted([*INPUTS, "paper.pdf"])  # no build files
    assert (built_paper / "paper.pdf").read_bytes().startswith(b"%PDF")
    assert "All targets (paper.pdf) are up-to-date" in (built_paper.parents[1] / "demo/logs/paper_pdf.log").read_text()


# What xelatex writes (into the paper_pdf rule's log, through latexmk) for a box that sticks out and
# for a character that no font of the paper has.
OVERFULL = re.compile(r"^Overfull \\[hv]box \((\d+(?:\.\d+)?)pt too (?:wide|high)\)", re.M)
MISSING = re.compile(r"^Missing character: There is no .*$", re.M)


def typesetting_problems(log: str, tolerance_pt: float = 1.0) -> list[str]:
    """Each box overfull by more than `tolerance_pt`, and each missing character, in a LaTeX log."""
    return [m[0] for m in OVERFULL.finditer(log) if float(m[1]) > tolerance_pt] + [m[0] for m in MISSING.finditer(log)]


def test_typesetting_problems_are_found_in_a_log():
    log = (
        "Overfull \\hbox (45.30782pt too wide) in paragraph at lines 493--493\n"
        "Overfull \\hbox (0.6pt too wide) in alignment at lines 1--2\n"
        "Overfull \\vbox (3.0pt too high) has occurred while \\output is active\n"
        "Missing character: There is no \ufffd (U+FFFD) in font [lmroman10-regular]:mapping=tex-text;!\n"
        "Underfull \\hbox (badness 10000) in paragraph at lines 5--6\n"
    )
    assert typesetting_problems(log) == [
        "Overfull \\hbox (45.30782pt too wide)",
        "Overfull \\vbox (3.0pt too high)",
        "Missing character: There is no \ufffd (U+FFFD) in font [lmroman10-regular]:mapping=tex-text;!",
    ]


def test_no_box_sticks_out_and_no_character_is_missing(built_paper):
    """The fixture has long paths and ids in narrow cells, U+FFFD and control characters in answers."""
    log = (built_paper.parents[1] / "demo/logs/paper_pdf.log").read_text(encoding="utf-8", errors="replace")
    assert "Output written on paper.xdv" in log  # xelatex's own messages are in this log
    assert typesetting_problems(log) == []


def test_demo_paper_typesets_cleanly_with_its_notice_on_every_page(demo_run):
    """The demo's tiny built models: every page says the numbers are not the study's."""
    results = demo_run / PAPER.parent
    log = (results / "logs/paper_pdf.log").read_text(encoding="utf-8", errors="replace")
    assert typesetting_problems(log) == []
    pdf = results / "paper/paper.pdf"
    pages = int(
        re.search(
            r"^Pages:\s+(\d+)$",
            subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout,
            re.M,
        )[1]
    )
    for page in range(1, pages + 1):
        text = subprocess.run(
            ["pdftotext", "-f", str(page), "-l", str(page), str(pdf), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert squash("so these numbers say nothing about medicine") in squash(text), f"page {page} of {pages}"
    context = json.loads((results / "paper/context.json").read_text(encoding="utf-8"))
    rows = {r["parameter"]: r["this_run"] for g in context["fidelity"] for r in g["rows"]}
    assert rows["Model, settings 1, 3, 4"] == "build" and rows["Test set"] == "heldout"  # the demo's, not 'absent'


def cells_pattern(cells):
    """A table row's cells in the PDF's text, in order; TeX typesets -- as an en dash."""
    return r"\s+".join("(?:--|–)" if c == "--" else re.escape(c) for c in cells)


def test_pdf_table_has_the_numbers_of_the_winrate_table(built_paper):
    text = pdftotext(built_paper / "paper.pdf", layout=True)
    for k, row in enumerate(winrate_rows(), 1):  # the controls' rows too, with no published rate
        cells = table_cells(row) + [PUBLISHED[row["setting"]]]
        assert re.search(cells_pattern(cells), text), f"Table 1 row of setting {k}: {cells}"


def test_pdf_has_the_claims_table_of_each_test_set(built_paper):
    text = pdftotext(built_paper / "paper.pdf", layout=True)
    captions = [
        f"The study’s claims on test set {t} (primary judge; {SIZES[t]} questions × {REPLICATES} replicates;"
        for t in TEST_SETS
    ]
    starts = [text.index(caption) for caption in captions]
    for test_set, start, end in zip(TEST_SETS, starts, starts[1:] + [len(text)]):
        table, at = text[start:end], 0
        for row in claims_rows(test_set):  # each row in order: published and ours, then Holm p, power, verdict
            p = "<0.001" if row["p_holm"] < 0.001 else f"{row['p_holm']:.3f}"
            power = "--" if row["power"] is None else f"{100 * row['power']:.1f}"
            for cells in ([points(row["published_effect"]), points(row["effect"])], [p, power]):
                found = re.compile(cells_pattern(cells)).search(table, at)
                assert found, f"claims table {test_set}, claim {row['id']}: {cells}"
                at = found.end()
            found = re.compile(re.escape(row["verdict"]) + ":").search(table, at)
            assert found, f"claims table {test_set}, claim {row['id']}: verdict {row['verdict']}"
            at = found.end()


def points(value):
    return "--" if value is None else f"{100 * value:+.1f}"


def test_pdf_has_the_case_study_in_chinese_and_every_setting(built_paper):
    text = squash(pdftotext(built_paper / "paper.pdf"))
    assert squash(QUESTIONS[2]) in text
    assert squash("基线回答：多喝水，多喝水，") in text
    for k, row in enumerate(winrate_rows(), 1):
        assert squash(f"Ours (setting {k}): {row['title']}") in text
    assert squash("Untuned controls, each a base model answering with no adapter") in text
    assert squash(SPECIAL) in text  # LaTeX specials and Chinese survive escaping and compiling
    assert squash(STUDY_PROMPT_START) in text
    assert squash("Package versions are those of the environment") in text


@pytest.mark.skipif(not HAS_TEX, reason=NO_TEX)
def test_a_latex_error_leaves_no_pdf(tmp_path):
    paper = workflow_with_tex(tmp_path, r"\documentclass{article}\begin{document}\undefinedmacro\end{document}")
    proc = snakemake(tmp_path, *BUILD, check=False)
    assert proc.returncode != 0
    assert re.search(r"xelatex failed on paper.tex .*:\n! Undefined control sequence", proc.stderr)
    assert sorted(p.name for p in paper.iterdir()) == INPUTS
    assert "! Undefined control sequence" in (tmp_path / "results/demo/logs/paper_pdf.log").read_text()


def test_missing_xelatex_is_a_clear_error_before_any_job(tmp_path):
    paper = workflow_with_tex(tmp_path, "unused")
    bin_dir = tmp_path / "bin"  # what Snakemake itself runs, without TeX
    bin_dir.mkdir()
    for tool in ("bash", "sh", "which", "git"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    proc = snakemake(tmp_path, *BUILD, env={"PATH": str(bin_dir)}, check=False)
    assert proc.returncode != 0
    assert "latexmk/xelatex not found" in proc.stderr and APT_PACKAGES in proc.stderr
    assert sorted(p.name for p in paper.iterdir()) == INPUTS
