"""Figure stage: the mean answer length of each setting beside the baseline's on the same
questions, from the headline tables/<test set>/primary/winrate.json as paper/answer_lengths.pdf."""

import os
from collections.abc import Mapping, Sequence

from huatuo_study.common import log, run_stage
from huatuo_study.paper.figure_style import setting_rows, settings_figure
from huatuo_study.records import read_table_json

KEYS = ("mean_answer_chars", "baseline_mean_answer_chars")
BAR_HEIGHT = 0.38


def plot_answer_lengths(results: Sequence[Mapping], path: str | os.PathLike) -> None:
    with settings_figure(results, "mean answer length (characters)", path) as (ax, ys):
        for offset, key, label in (
            (BAR_HEIGHT / 2, "mean_answer_chars", "setting"),
            (-BAR_HEIGHT / 2, "baseline_mean_answer_chars", "baseline"),
        ):
            rows = [(y, r[key]) for y, r in zip(ys, results) if r[key] is not None]
            ax.barh([y + offset for y, _ in rows], [v for _, v in rows], height=BAR_HEIGHT, label=label)


def main(smk) -> None:
    plot_answer_lengths(setting_rows(read_table_json(smk.input.winrate, "winrate_row"), KEYS), smk.output.figure)
    log.info("figure: wrote %s", smk.output.figure)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
