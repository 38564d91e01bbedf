"""Figure stage: the settings ranked by their Bradley-Terry score against the baseline, each with
its 95% crossed interval, the baseline's 1000 as a dashed line, from the headline
tables/<test set>/primary/ranking.json as paper/ranking.pdf (best at the top; a setting not run
keeps its row, empty, at the bottom)."""

import os
from collections.abc import Mapping, Sequence

from huatuo_study.common import PipelineError, log, run_stage
from huatuo_study.paper.figure_style import settings_figure
from huatuo_study.paper.formatting import oneline
from huatuo_study.records import read_table_json
from huatuo_study.statistics.ranking_scale import ANCHOR, BASELINE


def ranking_rows(ranking: Sequence[Mapping], numbers: Mapping[str, int]) -> list[dict]:
    """ranking.json's setting rows in rank order (the baseline is the line), labelled as the paper
    numbers them (k) with their titles on one line."""
    rows = []
    for row in ranking:
        if row["setting"] == BASELINE:
            continue
        if row["setting"] not in numbers:
            raise PipelineError(
                f"ranking: setting {row['setting']!r} has no number in the paper (settings: {', '.join(numbers)})"
            )
        rows.append({**row, "k": numbers[row["setting"]], "title": oneline(row["title"])})
    if not rows:
        raise PipelineError("ranking: no setting to plot")
    return rows


def plot_ranking(rows: Sequence[Mapping], path: str | os.PathLike) -> None:
    with settings_figure(rows, f"Bradley-Terry score against the baseline (baseline = {ANCHOR:.0f})", path) as (ax, ys):
        scored = [(y, r) for y, r in zip(ys, rows) if r["score"] is not None]
        ax.axvline(ANCHOR, color="grey", linestyle="--", linewidth=1, label="baseline (anchored)")
        if scored:
            scores = [r["score"] for _, r in scored]
            low = [s - r["ci_low"] for s, (_, r) in zip(scores, scored)]
            high = [r["ci_high"] - s for s, (_, r) in zip(scores, scored)]
            ax.errorbar(
                scores,
                [y for y, _ in scored],
                xerr=[low, high],
                fmt="o",
                capsize=4,
                label="score, with 95% interval (questions and runs)",
            )
            for (y, r), s in zip(scored, scores):
                ax.annotate(f"#{r['rank']}", (s, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
        ax.set_ylim(-1.4, len(rows) - 0.4)  # room below the last row for the legend
        ax.grid(axis="x", alpha=0.3)


def main(smk) -> None:
    rows = ranking_rows(read_table_json(smk.input.ranking, "ranking_row"), dict(smk.params.numbers))
    plot_ranking(rows, smk.output.figure)
    log.info("figure: wrote %s", smk.output.figure)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
