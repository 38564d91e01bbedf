"""Figure stage: each setting's win rate against the baseline with its 95% Wilson interval, and
the study's published rate where there is one, from the headline tables/<test set>/primary/winrate.json as paper/win_rates.pdf."""

import os
from collections.abc import Mapping, Sequence

from huatuo_study.common import log, run_stage
from huatuo_study.paper.figure_style import setting_rows, settings_figure
from huatuo_study.records import read_table_json

KEYS = ("win_rate", "ci_low", "ci_high", "published_win_rate")


def draw_win_rates(ax, ys: Sequence[int], results: Sequence[Mapping]) -> None:
    """Settings without judged answers keep their row, empty. The dotted line at 50% is where a
    setting wins as often as it does not."""
    ax.axvline(50, color="grey", linestyle=":", linewidth=1, label="50%")
    scored = [(y, r) for y, r in zip(ys, results) if r["win_rate"] is not None]
    if scored:
        rates = [100 * r["win_rate"] for _, r in scored]
        low = [rate - 100 * r["ci_low"] for rate, (_, r) in zip(rates, scored)]
        high = [100 * r["ci_high"] - rate for rate, (_, r) in zip(rates, scored)]
        ax.errorbar(
            rates, [y for y, _ in scored], xerr=[low, high], fmt="o", capsize=4, label="ours, with 95% Wilson interval"
        )
    published = [(y, 100 * r["published_win_rate"]) for y, r in zip(ys, results) if r["published_win_rate"] is not None]
    if published:
        ax.scatter(
            [p for _, p in published],
            [y for y, _ in published],
            marker="D",
            facecolors="none",
            edgecolors="black",
            zorder=3,
            label="published by the study",
        )
    ax.set_xlim(0, 100)
    ax.set_ylim(-0.6, len(results) - 0.4)
    ax.grid(axis="x", alpha=0.3)


def plot_win_rates(results: Sequence[Mapping], path: str | os.PathLike) -> None:
    with settings_figure(results, "win rate against the baseline (%)", path) as (ax, ys):
        draw_win_rates(ax, ys, results)


def main(smk) -> None:
    plot_win_rates(setting_rows(read_table_json(smk.input.winrate, "winrate_row"), KEYS), smk.output.figure)
    log.info("figure: wrote %s", smk.output.figure)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
