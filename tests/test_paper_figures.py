"""The paper's figures, each a stage of its own: the loss curves of the trained settings'
replicates from the losses tables, the win rates and answer lengths of every setting (controls
too) from the headline winrate.json; Chinese labels through the Noto CJK font."""

import json
import re
import subprocess

import pytest
from matplotlib import rc_context
from matplotlib.figure import Figure

import figure_answer_lengths
import figure_loss_curves
import figure_win_rates
from conftest import fake_snakemake
from figure_loss_curves import loss_figure, plot_loss_curves
from figure_win_rates import draw_win_rates, plot_win_rates
from huatuo_study.common import PipelineError
from huatuo_study.paper.figure_style import figure_rc, setting_rows
from paper_data import (
    REPLICATES,
    SETTINGS,
    TRAINED,
    loss_frame,
    needs_xelatex,
    pdftotext,
    squash,
    study_config,
    winrate_rows,
)


def loss_numbers():
    """figure_loss_curves' params.numbers as rules/common.smk trained_numbers() gives them for the
    study config: trained setting -> (its number in the paper, its title)."""
    settings = study_config()["settings"]
    return {s: (k, f"Title {s}") for k, s in enumerate(settings, 1) if "training" in settings[s]}


def write_losses(folder):
    """losses/<setting>/rep<r>.csv of the trained settings, in settings x replicates order; setting4's
    second replicate without validation rows."""
    paths = []
    for s in TRAINED:
        for r in range(REPLICATES):
            path = folder / s / f"rep{r}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            loss_frame(with_val=(s, r) != ("setting4", 1), scale=1 + r / 10).to_csv(path, index=False)
            paths.append(str(path))
    return paths


def test_loss_figure_is_a_real_pdf(tmp_path):
    path = tmp_path / "paper" / "loss_curves.pdf"
    path.parent.mkdir()
    frames = {
        "Setting 1": [loss_frame(), loss_frame(scale=1.2)],
        "Setting 2": [loss_frame(with_val=False)],
        "Setting 3": [loss_frame(n_steps=1), loss_frame(n_steps=1, scale=2.0)],
    }
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


def test_win_rate_figure_has_a_labelled_50_percent_line():
    rows = setting_rows(winrate_rows(), figure_win_rates.KEYS)
    ax = Figure().subplots()
    draw_win_rates(ax, list(range(len(rows)))[::-1], rows)
    lines = [line for line in ax.get_lines() if line.get_label() == "50%"]
    assert len(lines) == 1
    assert list(lines[0].get_xdata()) == [50, 50] and list(lines[0].get_ydata()) == [0, 1]  # axvline: full height
    assert "50%" in ax.get_legend_handles_labels()[1]


def test_loss_panels_share_one_y_axis():
    frames = {
        "Setting 1": [loss_frame(scale=0.5)],
        "Setting 2": [loss_frame(scale=4.0)],
        "Setting 3": [loss_frame(scale=1.0), loss_frame(scale=2.0)],
    }
    with rc_context(figure_rc()):
        fig = loss_figure(frames)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3
    limits = {ax.get_ylim() for ax in visible}
    assert len(limits) == 1
    low, high = limits.pop()
    assert low <= 0.5 * 3.0 / 20 and high >= 4.0 * 3.0  # the lowest and the highest panel inside the one range


def test_each_figure_stage_writes_its_figure(tmp_path):
    winrate = tmp_path / "winrate.json"
    winrate.write_text(json.dumps(winrate_rows(), ensure_ascii=False), encoding="utf-8")
    for program in (figure_win_rates, figure_answer_lengths):
        out = tmp_path / f"{program.__name__}.pdf"
        program.main(fake_snakemake(input={"winrate": str(winrate)}, output={"figure": str(out)}))
        assert out.read_bytes().startswith(b"%PDF")
    assert len(json.loads(winrate.read_text(encoding="utf-8"))) == len(SETTINGS)  # controls too
    out = tmp_path / "loss_curves.pdf"
    figure_loss_curves.main(
        fake_snakemake(
            input={"losses": write_losses(tmp_path / "losses")},
            output={"figure": str(out)},
            params={"numbers": loss_numbers(), "replicates": REPLICATES},
        )
    )
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
    smk = fake_snakemake(
        input={"losses": [str(bad)] * (len(TRAINED) * REPLICATES)},
        output={"figure": str(out)},
        params={"numbers": loss_numbers(), "replicates": REPLICATES},
    )
    with pytest.raises(PipelineError, match=r"bad.csv, line 2: field 'split'"):
        figure_loss_curves.main(smk)
    assert not out.exists()


def test_loss_figure_needs_every_replicate_of_every_trained_setting(tmp_path):
    out = tmp_path / "loss_curves.pdf"
    losses = write_losses(tmp_path / "losses")
    for paths in (losses[:-1], losses + losses[:4]):  # a replicate missing; 6 settings' count (controls too)
        smk = fake_snakemake(
            input={"losses": paths},
            output={"figure": str(out)},
            params={"numbers": loss_numbers(), "replicates": REPLICATES},
        )
        message = rf"input 'losses': {len(paths)} file\(s\) for 4 settings x 2 replicates"
        with pytest.raises(PipelineError, match=message):
            figure_loss_curves.main(smk)
    assert not out.exists()


@needs_xelatex
def test_loss_figure_has_a_panel_per_trained_setting_and_a_curve_per_replicate(tmp_path):
    out = tmp_path / "loss_curves.pdf"
    figure_loss_curves.main(
        fake_snakemake(
            input={"losses": write_losses(tmp_path / "losses")},
            output={"figure": str(out)},
            params={"numbers": loss_numbers(), "replicates": REPLICATES},
        )
    )
    text = pdftotext(out)
    panels = re.findall(r"Setting (\d): Title (\S+)", text)
    assert sorted(panels) == [("1", "setting1"), ("2", "setting2"), ("3", "setting3"), ("4", "setting4")]
    assert "control" not in text  # the controls train nothing: no panel
    for r in range(REPLICATES):
        assert text.count(f"train, replicate {r}") == 4
    assert text.count("validation, replicate 0") == 4 and text.count("validation, replicate 1") == 3  # setting4's
