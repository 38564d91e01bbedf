"""Paper stage: render paper/paper.tex.j2 with the run's context.json into paper.tex (Jinja2 with
LaTeX-safe delimiters and StrictUndefined; every value from data, config or models goes through
the one `latex` filter). Rule paper_pdf compiles it."""

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from huatuo_study.common import PipelineError, log, read_json, run_stage, write_text
from huatuo_study.paper.formatting import UNDECODABLE
from huatuo_study.paper.provenance import check_no_secrets

TEMPLATE = Path(__file__).resolve().parents[1] / "paper" / "paper.tex.j2"

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
# Paths, hub ids and identifiers have no spaces: a line may break after their slashes and
# underscores, so that a narrow table cell does not overflow into the next.
_BREAKS = {"/": r"/\allowbreak{}", "_": r"\_\allowbreak{}"}
# Control characters (which models do emit) cannot be typeset and stop xelatex: dropped.
_CONTROL = {c: None for c in [*range(0x20), 0x7F] if chr(c) not in "\t\n\r"}
# U+FFFD is in no font of the paper: marked by a boxed question mark instead.
_UNDECODABLE = {UNDECODABLE: r"{\fboxsep=1pt\fbox{?}}"}
_LATEX_TABLE = str.maketrans({**_LATEX_SPECIALS, **_BREAKS, **_CONTROL, **_UNDECODABLE})

# \includegraphics takes file names verbatim: the figures' names, the only unescaped values, must be plain.
_SAFE_FIGURE_PATH = re.compile(r"[A-Za-z0-9._/-]+")


def latex_escape(s: Any) -> str:
    """Map LaTeX's special characters, one by one, to the forms that typeset them literally (with
    a break allowed after / and _), and U+FFFD to a mark the fonts can typeset."""
    return str(s).translate(_LATEX_TABLE)


def make_environment(template_dir: str | os.PathLike = TEMPLATE.parent) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        block_start_string=r"\BLOCK{",
        block_end_string="}",
        variable_start_string=r"\VAR{",
        variable_end_string="}",
        comment_start_string=r"\#{",
        comment_end_string="}",
        line_statement_prefix="%%",
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["latex"] = latex_escape
    return env


def check_figure_paths(figures: Mapping[str, str]) -> None:
    for name in figures.values():
        if not _SAFE_FIGURE_PATH.fullmatch(name) or name.startswith("/") or ".." in name.split("/"):
            raise PipelineError(
                f"figure path {name!r}: use a plain relative file name (letters, digits, . _ - /) beside the .tex file"
            )


def render_paper(context: Mapping[str, Any], template: str | os.PathLike = TEMPLATE) -> str:
    """Render the LaTeX source; a key the template uses but the context lacks raises
    jinja2.UndefinedError (StrictUndefined)."""
    check_figure_paths(context["figures"])
    template = Path(template)
    return make_environment(template.parent).get_template(template.name).render(**context)


def main(smk) -> None:
    tex = render_paper(read_json(smk.input.context), smk.input.template)
    check_no_secrets({"paper.tex": tex}, smk.params.secret_envs)
    write_text(smk.output.tex, tex)
    log.info("paper: wrote %s", smk.output.tex)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
