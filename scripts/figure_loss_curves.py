"""Figure stage: the training and validation loss of each trained setting's replicates
(losses/<setting>/rep<r>.csv) as paper/loss_curves.pdf, one panel per setting, one colour per
replicate."""

import math
import os
import textwrap
from collections.abc import Mapping

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from huatuo_study.common import DataError, PipelineError, log, run_stage
from huatuo_study.paper.figure_style import figure_rc, save
from huatuo_study.paper.formatting import oneline


def read_loss_csv(path: str | os.PathLike) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(path, None, None, "empty file (expected columns step, epoch, split, loss)") from None
    for column in ("step", "split", "loss"):
        if column not in frame.columns:
            raise DataError(path, 1, column, "missing column")
    bad = ~frame["split"].isin(["train", "val"])
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(path, i + 2, "split", f"expected 'train' or 'val', got {frame['split'].iloc[i]!r}")
    return frame


def _panel(ax, label: str, frames: list[pd.DataFrame]) -> None:
    """Train loss solid, validation loss dashed, against the optimiser step; replicate r in colour r."""
    drawn = False
    for r, frame in enumerate(frames):
        for split, style, name in (("train", "-", "train"), ("val", "--", "validation")):
            rows = frame[frame["split"] == split][["step", "loss"]].dropna().sort_values("step")
            if rows.empty:
                continue
            ax.plot(
                rows["step"],
                rows["loss"],
                linestyle=style,
                color=f"C{r}",
                label=name if len(frames) == 1 else f"{name}, replicate {r}",
                marker="o" if len(rows) == 1 else None,
                markersize=3,
            )
            drawn = True
    if drawn:
        ax.legend(fontsize=6)
    else:
        ax.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("\n".join(textwrap.wrap(str(label), 40)), fontsize=9)
    ax.set_xlabel("step", fontsize=8)
    if ax.get_subplotspec().is_first_col():
        ax.set_ylabel("loss", fontsize=8)
    ax.tick_params(labelsize=7)


def loss_figure(loss_frames: Mapping[str, list[pd.DataFrame]]) -> Figure:
    """One panel per setting (keyed by its label), its replicates' curves in it, all panels on
    one y scale so that their losses compare at a glance. A replicate without validation rows
    gets its train curve only. Call inside matplotlib.rc_context(figure_rc())."""
    if not loss_frames:
        raise PipelineError("no loss curves to plot (no settings)")
    n = len(loss_frames)
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(6.4 if ncols == 2 else 4.8, 2.2 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    for ax, (label, frames) in zip(axes, loss_frames.items()):
        for frame in frames:
            missing = {"step", "split", "loss"} - set(frame.columns)
            if missing:
                raise PipelineError(f"loss curve of {label}: missing column(s) {sorted(missing)}")
        _panel(ax, label, frames)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


def plot_loss_curves(loss_frames: Mapping[str, list[pd.DataFrame]], path: str | os.PathLike) -> None:
    with matplotlib.rc_context(figure_rc()):
        save(loss_figure(loss_frames), path)


def main(smk) -> None:
    numbers = smk.params.numbers  # trained setting -> (its number in the paper, its title), in config order
    k = smk.params.replicates
    paths = [smk.input.losses] if isinstance(smk.input.losses, str) else list(smk.input.losses)
    if len(paths) != len(numbers) * k:
        raise PipelineError(f"input 'losses': {len(paths)} file(s) for {len(numbers)} settings x {k} replicates")
    frames = {
        f"Setting {number}: {oneline(title)}": [read_loss_csv(p) for p in paths[i * k : (i + 1) * k]]
        for i, (number, title) in enumerate(numbers.values())
    }
    plot_loss_curves(frames, smk.output.figure)
    log.info("figure: wrote %s", smk.output.figure)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
