"""What the paper's three figures share: the CJK font (found once, here), the matplotlib style,
the setting labels and a save that gives the same bytes for the same numbers. Each figure is its
own stage program (figure_loss_curves.py, figure_win_rates.py, figure_answer_lengths.py), so a
change to one reruns that figure only."""

import contextlib
import functools
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from huatuo_study.common import PipelineError, atomic_path  # noqa: E402
from huatuo_study.paper.formatting import need, oneline  # noqa: E402

APT_PACKAGES = "latexmk texlive-xetex texlive-lang-chinese texlive-fonts-recommended fonts-noto-cjk"

# ctex's `ubuntu` fontset typesets with Noto CJK, whose PDFs carry ToUnicode maps, so every PDF
# library extracts the Chinese text (Fandol's lack them: only poppler can); the figures use it too.
CJK_FAMILY = "Noto Sans CJK SC"
CJK_FONT_FILES = ("NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "NotoSansCJKSC-Regular.otf")


@functools.cache
def cjk_font() -> str:
    """Register Noto Sans CJK with matplotlib (it is not a default font) and return its family."""
    for path in font_manager.findSystemFonts():
        if Path(path).name in CJK_FONT_FILES:
            font_manager.fontManager.addfont(path)
            return CJK_FAMILY
    raise PipelineError(
        f"the font {CJK_FAMILY} (Debian package fonts-noto-cjk) is not installed; the paper "
        f"and its figures need it for Chinese text. Install {APT_PACKAGES} "
        f"(sudo apt-get install -y {APT_PACKAGES})"
    )


def figure_rc() -> dict:
    return {
        "font.family": "sans-serif",
        "font.sans-serif": [cjk_font(), "DejaVu Sans"],
        "axes.unicode_minus": False,
        "pdf.fonttype": 3,
    }


def save(fig: Figure, path) -> None:
    """Written aside and moved into place, so a failed plot leaves no figure. No creation date:
    the same numbers give the same bytes."""
    with atomic_path(path, suffix=".pdf") as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})


def axis_label(row: Mapping) -> str:
    return f"Setting {row['k']}\n" + "\n".join(textwrap.wrap(row["title"], 26))


@contextlib.contextmanager
def settings_figure(results: Sequence[Mapping], xlabel: str, path) -> Iterator[tuple]:
    """A figure with one row per setting down the y axis (setting 1 at the top) and a value
    along x: yields (axes, y of each row) to draw on, then labels the axes and saves it."""
    with matplotlib.rc_context(figure_rc()):
        fig = Figure(figsize=(6.4, 0.45 * len(results) + 0.9), layout="constrained")
        ax = fig.subplots()
        ys = list(range(len(results)))[::-1]
        yield ax, ys
        ax.set_yticks(ys, [axis_label(r) for r in results], fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
        save(fig, path)


def setting_rows(winrate: Sequence[Mapping], keys: Sequence[str]) -> list[dict]:
    """winrate.json's rows (one per setting, in config order) numbered from 1 as the paper
    numbers them, with their titles on one line; each must have `keys`."""
    rows = []
    for k, row in enumerate(winrate, 1):
        where = f"winrate.json row {k}"
        rows.append(
            {"k": k, "title": oneline(need(row, "title", where)), **{key: need(row, key, where) for key in keys}}
        )
    return rows
