"""The paper's figures, each a stage of its own: the loss curves from the losses tables, the win
rates and answer lengths from winrate.json; Chinese labels through the Noto CJK font."""

import json
import subprocess

import pytest

import figure_answer_lengths
import figure_loss_curves
import figure_win_rates
from common import PipelineError
from conftest import fake_snakemake
from figure_loss_curves import plot_loss_curves
from figure_style import setting_rows
from figure_win_rates import plot_win_rates
from paper_data import SETTINGS, loss_frame, needs_xelatex, pdftotext, squash, winrate_rows

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
def test_figures_render_chinese(tmp_path):
    rows = winrate_rows()
    rows[0]["title"] = "基线配方（Qwen3-4B）"
    path = tmp_path / "win_rates.pdf"
    plot_win_rates(setting_rows(rows, figure_win_rates.KEYS), path)
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True).stdout
    assert "NotoSansCJK" in fonts
    assert "基线配方" in squash(pdftotext(path))




def test_each_figure_stage_writes_its_figure(tmp_path):
    winrate = tmp_path / "winrate.json"
    winrate.write_text(json.dumps(winrate_rows(), ensure_ascii=False), encoding="utf-8")
    for program in (figure_win_rates, figure_answer_lengths):
        out = tmp_path / f"{program.__name__}.pdf"
        program.main(fake_snakemake(input={"winrate": str(winrate)}, output={"figure": str(out)}))
        assert out.read_bytes().startswith(b"%PDF")
    losses = []
    for i, s in enumerate(SETTINGS):
        losses.append(tmp_path / f"{s}.csv")
        loss_frame(with_val=(i != 3)).to_csv(losses[-1], index=False)
    out = tmp_path / "loss_curves.pdf"
    figure_loss_curves.main(fake_snakemake(input={"losses": [str(p) for p in losses]}, output={"figure": str(out)},
                                           params={"titles": {s: f"Title {s}" for s in SETTINGS}}))
    assert out.read_bytes().startswith(b"%PDF")
    assert [p.name for p in tmp_path.glob(".*")] == []  # no temporary file left


def test_a_winrate_row_without_its_columns_is_a_user_error(tmp_path):
    rows = winrate_rows()
    del rows[1]["ci_low"]
    with pytest.raises(PipelineError, match="winrate.json row 2: missing key 'ci_low'"):
        setting_rows(rows, figure_win_rates.KEYS)


def test_loss_figure_rejects_a_bad_loss_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("step,epoch,split,loss\n1,0.1,test,2.0\n")
    out = tmp_path / "loss_curves.pdf"
    smk = fake_snakemake(input={"losses": [str(bad)] * 4}, output={"figure": str(out)},
                         params={"titles": {s: s for s in SETTINGS}})
    with pytest.raises(PipelineError, match=r"bad.csv, line 2: field 'split'"):
        figure_loss_curves.main(smk)
    assert not out.exists()
