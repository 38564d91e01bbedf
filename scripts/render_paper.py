"""Paper stage: render paper/paper.tex.j2 from the run's numbers (design from the config, Table 1
from the win-rate table, paired tests, figures, case study, generated analysis, provenance) and
compile it with latexmk -xelatex into results/<run>/paper/paper.pdf. Everything is built in a
temporary folder beside the outputs and moved into place only once the PDF exists."""


import csv
import functools
import math
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2
import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from common import DataError, PipelineError, log, read_json, read_jsonl, read_prompt, run_stage  # noqa: E402
from provenance import check_no_secrets, collect as collect_provenance  # noqa: E402

TEMPLATE = Path(__file__).resolve().parents[1] / "paper" / "paper.tex.j2"

EXCERPT_CHARS = 300
ALPHA = 0.05  # every test in the paper, uncorrected for multiple comparisons (the paper says so)
# How the fidelity table marks a row, by its status (fidelity_table.py).
FIDELITY_MARKS = {"deviation": "differs", "not stated": "ours", "execution": "speed only", "by design": "by design"}

APT_PACKAGES = "latexmk texlive-xetex texlive-lang-chinese texlive-fonts-recommended fonts-noto-cjk"
LATEXMK = ["latexmk", "-xelatex", "-interaction=nonstopmode", "-halt-on-error"]
LATEX_TIMEOUT_S = 300

# ctex's `ubuntu` fontset typesets with Noto CJK, whose PDFs carry ToUnicode maps, so every PDF
# library extracts the Chinese text (Fandol's lack them: only poppler can); the figures use it too.
CJK_FAMILY = "Noto Sans CJK SC"
CJK_FONT_FILES = ("NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "NotoSansCJKSC-Regular.otf")

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
# Control characters (which models do emit) cannot be typeset and stop xelatex: dropped.
_CONTROL = {c: None for c in [*range(0x20), 0x7F] if chr(c) not in "\t\n\r"}
_LATEX_TABLE = str.maketrans({**_LATEX_SPECIALS, **_CONTROL})

# \includegraphics takes file names verbatim: the figures' names, the only unescaped values, must be plain.
_SAFE_FIGURE_PATH = re.compile(r"[A-Za-z0-9._/-]+")


def latex_escape(s: Any) -> str:
    """Map LaTeX's special characters, one by one, to the forms that typeset them literally."""
    return str(s).translate(_LATEX_TABLE)


# ---------------------------------------------------------------------------------------------
# Rendering


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


def render_paper(context: Mapping[str, Any], template: str | os.PathLike = TEMPLATE) -> str:
    """Render the LaTeX source; a key the template uses but the context lacks raises
    jinja2.UndefinedError (StrictUndefined)."""
    template = Path(template)
    return make_environment(template.parent).get_template(template.name).render(**context)


# ---------------------------------------------------------------------------------------------
# Building the PDF


def check_build_tools() -> None:
    """latexmk, xelatex and the Noto CJK fonts, checked before anything is read or written."""
    missing = [tool for tool in ("latexmk", "xelatex") if shutil.which(tool) is None]
    if missing:
        raise PipelineError(
            f"{' and '.join(missing)} not found on PATH: the paper's PDF is built with latexmk -xelatex. "
            f"Install the Debian/Ubuntu packages {APT_PACKAGES} (sudo apt-get install -y {APT_PACKAGES})")
    cjk_font()


def _latex_errors(log_path: Path, stdout: str) -> str:
    """The '!' lines of the LaTeX log with the two lines after each (where TeX shows the spot)."""
    if log_path.exists():
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        errors = [i for i, line in enumerate(lines) if line.startswith("!")]
        if errors:
            return "\n".join("\n".join(lines[i:i + 3]) for i in errors[:5])
    return "\n".join(stdout.splitlines()[-20:])


def compile_pdf(tex: Path, timeout_s: int = LATEX_TIMEOUT_S) -> Path:
    """latexmk runs xelatex as often as the cross-references need; its by-products stay in tex's
    folder (a temporary one, in main)."""
    try:
        proc = subprocess.run([*LATEXMK, tex.name], cwd=tex.parent, capture_output=True, text=True,
                              errors="replace", stdin=subprocess.DEVNULL, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise PipelineError(f"latexmk did not finish {tex.name} within {timeout_s} s") from None
    pdf = tex.with_suffix(".pdf")
    if proc.returncode != 0 or not pdf.exists():
        raise PipelineError(f"xelatex failed on {tex.name}:\n{_latex_errors(tex.with_suffix('.log'), proc.stdout)}")
    return pdf


# ---------------------------------------------------------------------------------------------
# Figures


@functools.cache
def cjk_font() -> str:
    """Register Noto Sans CJK with matplotlib (it is not a default font) and return its family."""
    for path in font_manager.findSystemFonts():
        if Path(path).name in CJK_FONT_FILES:
            font_manager.fontManager.addfont(path)
            return CJK_FAMILY
    raise PipelineError(f"the font {CJK_FAMILY} (Debian package fonts-noto-cjk) is not installed; the paper "
                        f"and its figures need it for Chinese text. Install {APT_PACKAGES} "
                        f"(sudo apt-get install -y {APT_PACKAGES})")


def _figure_rc() -> dict:
    return {"font.family": "sans-serif", "font.sans-serif": [cjk_font(), "DejaVu Sans"],
            "axes.unicode_minus": False, "pdf.fonttype": 3}


def _save(fig: Figure, path: str | os.PathLike) -> None:
    # No creation date: the same numbers give the same bytes.
    fig.savefig(path, format="pdf", metadata={"CreationDate": None})


def plot_loss_curves(loss_frames: Mapping[str, pd.DataFrame], path: str | os.PathLike) -> None:
    """One panel per setting (keyed by its label): train loss solid, validation loss dashed,
    against the optimiser step. A setting without validation rows gets its train curve only."""
    if not loss_frames:
        raise PipelineError("no loss curves to plot (no settings)")
    n = len(loss_frames)
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
    with matplotlib.rc_context(_figure_rc()):
        fig = Figure(figsize=(6.4 if ncols == 2 else 4.8, 2.6 * nrows + 0.4), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, (label, frame) in zip(axes, loss_frames.items()):
            missing = {"step", "split", "loss"} - set(frame.columns)
            if missing:
                raise PipelineError(f"loss curve of {label}: missing column(s) {sorted(missing)}")
            drawn = False
            for split, style, name in (("train", "-", "train"), ("val", "--", "validation")):
                rows = frame[frame["split"] == split][["step", "loss"]].dropna().sort_values("step")
                if rows.empty:
                    continue
                ax.plot(rows["step"], rows["loss"], linestyle=style, label=name,
                        marker="o" if len(rows) == 1 else None, markersize=3)
                drawn = True
            if drawn:
                ax.legend(fontsize=7)
            else:
                ax.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_title("\n".join(textwrap.wrap(str(label), 40)), fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.set_ylabel("loss", fontsize=8)
            ax.tick_params(labelsize=7)
        for ax in axes[n:]:
            ax.set_visible(False)
        _save(fig, path)


def _axis_label(row: Mapping) -> str:
    return f"Setting {row['k']}\n" + "\n".join(textwrap.wrap(row["title"], 26))


def plot_win_rates(results: Sequence[Mapping], path: str | os.PathLike) -> None:
    """Win rate per setting with its 95% Wilson interval, and the study's published rate where
    there is one; settings without judged answers keep their row, empty."""
    with matplotlib.rc_context(_figure_rc()):
        fig = Figure(figsize=(6.4, 0.75 * len(results) + 1.2), layout="constrained")
        ax = fig.subplots()
        ys = list(range(len(results)))[::-1]
        scored = [(y, r) for y, r in zip(ys, results) if r["win_rate"] is not None]
        if scored:
            rates = [100 * r["win_rate"] for _, r in scored]
            low = [rate - 100 * r["ci_low"] for rate, (_, r) in zip(rates, scored)]
            high = [100 * r["ci_high"] - rate for rate, (_, r) in zip(rates, scored)]
            ax.errorbar(rates, [y for y, _ in scored], xerr=[low, high], fmt="o", capsize=4,
                        label="ours, with 95% Wilson interval")
        published = [(y, r["published_value"]) for y, r in zip(ys, results) if r["published_value"] is not None]
        if published:
            ax.scatter([p for _, p in published], [y for y, _ in published], marker="D", facecolors="none",
                       edgecolors="black", zorder=3, label="published by the study")
        ax.set_yticks(ys, [_axis_label(r) for r in results], fontsize=8)
        ax.set_xlim(0, 100)
        ax.set_ylim(-0.6, len(results) - 0.4)
        ax.set_xlabel("win rate against the baseline (%)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        _save(fig, path)


def plot_answer_lengths(results: Sequence[Mapping], path: str | os.PathLike) -> None:
    """Mean answer length of each setting beside the baseline's on the same questions."""
    with matplotlib.rc_context(_figure_rc()):
        fig = Figure(figsize=(6.4, 0.75 * len(results) + 1.2), layout="constrained")
        ax = fig.subplots()
        ys = list(range(len(results)))[::-1]
        height = 0.38

        def bar(offset, key, label):
            rows = [(y, r[key]) for y, r in zip(ys, results) if r[key] is not None]
            ax.barh([y + offset for y, _ in rows], [v for _, v in rows], height=height, label=label)

        bar(height / 2, "mean_answer_chars", "setting")
        bar(-height / 2, "baseline_mean_answer_chars", "baseline")
        ax.set_yticks(ys, [_axis_label(r) for r in results], fontsize=8)
        ax.set_xlabel("mean answer length (characters)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
        _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Inputs


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


PAIRWISE_COLUMNS = ("setting_a", "setting_b", "n", "a_better", "b_better", "p_value")


def read_pairwise_csv(path: str | os.PathLike) -> list[dict]:
    """tables/pairwise.csv: one row per pair of settings, counts as ints and p_value a float."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PAIRWISE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, 1, missing[0], "missing column")
        rows = []
        for lineno, row in enumerate(reader, 2):
            try:
                rows.append({"setting_a": row["setting_a"], "setting_b": row["setting_b"],
                             **{k: int(row[k]) for k in ("n", "a_better", "b_better")},
                             "p_value": float(row["p_value"])})
            except ValueError as e:
                raise DataError(path, lineno, None, f"not a number ({e})") from None
    return rows


def read_fidelity_csv(path: str | os.PathLike) -> list[dict]:
    """tables/fidelity.csv: every value as text (an empty note stays empty, not NaN)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("group", "parameter", "study", "this_run", "source", "note", "status"):
        if column not in frame.columns:
            raise DataError(path, 1, column, "missing column")
    return frame.to_dict(orient="records")


# ---------------------------------------------------------------------------------------------
# Context: formatting


def _fmt(value: Any) -> str:
    """A config value as table text: yes/no, compact floats (2e-5), lists joined, None as --."""
    if value is None:
        return "--"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:  # learning rates: 2e-5, 1e-4
            mantissa, exponent = f"{value:.4e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _pct(fraction: float | None) -> str:
    return "--" if fraction is None else f"{100 * fraction:.1f}"


def _p(p: float | None) -> str:
    if p is None:
        return "--"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_phrase(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _significant(p: float | None) -> bool:
    return p is not None and p < ALPHA


def _count(value: Any) -> str:
    return "--" if value is None else f"{value:,}"


def _oneline(text: Any) -> str:
    """Collapse whitespace: a blank line inside a LaTeX argument would end the paragraph."""
    return " ".join(str(text).split())


def _excerpt(text: Any, n: int = EXCERPT_CHARS) -> dict:
    text = _oneline(text)
    return {"text": text[:n], "truncated": len(text) > n}


def _need(mapping: Any, key: str, where: str) -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise PipelineError(f"{where}: missing key '{key}'")
    return mapping[key]


def _fraction(row: Mapping, key: str, where: str) -> float | None:
    value = _need(row, key, where)
    if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
        raise PipelineError(f"{where}: {key} must be a number in [0, 1], got {value!r}")
    return value


def _settings_list(settings: Sequence[int]) -> str:
    """'setting 2', 'settings 1 and 3', 'settings 1, 3 and 4'."""
    if len(settings) == 1:
        return f"setting {settings[0]}"
    return "settings " + ", ".join(str(k) for k in settings[:-1]) + f" and {settings[-1]}"


# ---------------------------------------------------------------------------------------------
# Context: design


def _warmup(training: Mapping) -> str:
    if "warmup_ratio" in training:
        return f"{_fmt(training['warmup_ratio'] * 100)}% of steps"
    steps = training.get("warmup_steps")
    if isinstance(steps, float) and steps < 1:
        return f"{_fmt(steps * 100)}% of steps"
    return f"{_fmt(steps)} steps" if steps is not None else "--"


def _model_source(spec: Mapping) -> str:
    source = spec.get("source", "--")
    if source == "build":
        build = spec.get("build", {})
        return (f"built by the pipeline: hidden size {_fmt(build.get('hidden_size'))}, "
                f"{_fmt(build.get('num_hidden_layers'))} layers")
    revision = spec.get("revision")
    return f"{source}, revision {revision}" if revision else str(source)


def _baseline_text(config: Mapping) -> str:
    baseline = config.get("baseline", {}) or {}
    source = baseline.get("source")
    if source == "file":
        return "the ChatGPT answers of the course's test file"
    if source == "model":
        return f"the answers of the untuned base model {baseline.get('model', '--')}"
    if source == "openai":
        return f"the answers of {baseline.get('model', '--')} through an OpenAI-compatible API"
    return f"answers from {_fmt(source)}"


def _hparam_rows(settings: list[dict]) -> list[dict]:
    def column(get):
        return [_fmt(get(s)) for s in settings]

    lora = lambda s, k: s["lora"].get(k)  # noqa: E731
    train = lambda s, k: s["training"].get(k)  # noqa: E731
    return [
        {"label": "Model", "values": column(lambda s: s["model"])},
        {"label": "Data variant", "values": column(lambda s: s["data"])},
        {"label": "LoRA r", "values": column(lambda s: lora(s, "r"))},
        {"label": "LoRA alpha", "values": column(lambda s: lora(s, "alpha"))},
        {"label": "LoRA dropout", "values": column(lambda s: lora(s, "dropout"))},
        {"label": "LoRA targets", "values": column(lambda s: lora(s, "target_modules"))},
        {"label": "Epochs", "values": column(lambda s: train(s, "epochs"))},
        {"label": "Batch size", "values": column(lambda s: train(s, "batch_size"))},
        {"label": "Grad. accumulation", "values": column(lambda s: train(s, "grad_accum"))},
        {"label": "Learning rate", "values": column(lambda s: train(s, "lr"))},
        {"label": "Weight decay", "values": column(lambda s: train(s, "weight_decay"))},
        {"label": "Warmup", "values": [_warmup(s["training"]) for s in settings]},
        {"label": "Scheduler", "values": column(lambda s: train(s, "scheduler"))},
        {"label": "Optimizer", "values": column(lambda s: train(s, "optimizer"))},
        {"label": "Gradient checkpointing", "values": column(lambda s: train(s, "gradient_checkpointing"))},
        {"label": "Eval steps", "values": column(lambda s: train(s, "eval_steps"))},
    ]


def _split_text(split_stats: Mapping) -> dict:
    where = "split stats"
    dropped = _need(split_stats, "dropped", where) or {}
    reasons = [f"{n} {reason.replace('_', ' ')}" for reason, n in dropped.items() if n]
    return {
        "n_raw": _need(split_stats, "n_raw", where),
        "n_kept": _need(split_stats, "n_kept", where),
        "dropped": "; ".join(reasons) if reasons else "none",
        "seed": _need(split_stats, "seed", where),
        **{k: _need(split_stats, k, where) for k in ("n_train", "n_val", "n_heldout", "n_unused")},
    }


# ---------------------------------------------------------------------------------------------
# Context: results and analysis


def _truncation(generations: list[dict], where: str) -> dict:
    """How many answers stopped at max_new_tokens instead of ending (cut off mid-answer)."""
    hits = sum(bool(_need(g, "hit_token_limit", where)) for g in generations)
    return {"truncated": hits, "truncated_text": f"{hits} of {len(generations)}"}


def _result_rows(winrate: Sequence[Mapping], settings: list[dict],
                 generations: Mapping[str, list[dict]]) -> list[dict]:
    by_setting = {}
    for i, row in enumerate(winrate):
        name = _need(row, "setting", f"winrate.json row {i + 1}")
        by_setting[name] = row
    rows = []
    for s in settings:
        if s["key"] not in by_setting:
            raise PipelineError(f"winrate.json: no row for setting '{s['key']}'")
        row = by_setting[s["key"]]
        where = f"winrate.json row of {s['key']}"
        counts = {k: _need(row, k, where) for k in ("n", "wins", "ties", "losses", "invalid")}
        rates = {k: _fraction(row, k, where)
                 for k in ("win_rate", "win_rate_ties_half", "ci_low", "ci_high", "p_value", "consistency",
                           "win_rate_as_first", "win_rate_as_second", "order_flip_share",
                           "published_win_rate", "published_p_value")}
        other = {k: _need(row, k, where) for k in ("mean_answer_chars", "baseline_mean_answer_chars",
                                                   "judge_calls", "prompt_tokens", "completion_tokens", "cost_usd",
                                                   "order_flips", "published_wins", "published_n")}
        published = None if rates["published_win_rate"] is None else 100 * rates["published_win_rate"]
        rows.append({
            "k": s["k"],
            "setting": s["key"],
            "title": s["title"],
            **counts, **rates, **other,
            "win_rate_pct": _pct(rates["win_rate"]),
            "half_pct": _pct(rates["win_rate_ties_half"]),
            "ci_text": ("--" if rates["ci_low"] is None or rates["ci_high"] is None
                        else f"[{_pct(rates['ci_low'])}, {_pct(rates['ci_high'])}]"),
            "p_text": _p(rates["p_value"]),
            "consistency_pct": _pct(rates["consistency"]),
            "published_value": published,
            "published": "--" if published is None else f"{published:.1f}",
            "published_p_text": _p(rates["published_p_value"]),
            "as_first_pct": _pct(rates["win_rate_as_first"]),
            "as_second_pct": _pct(rates["win_rate_as_second"]),
            "flip_pct": _pct(rates["order_flip_share"]),
            **_truncation(generations[s["key"]], f"generations of {s['key']}"),
            "mean_chars_text": "--" if other["mean_answer_chars"] is None else f"{other['mean_answer_chars']:.0f}",
            "baseline_chars_text": ("--" if other["baseline_mean_answer_chars"] is None
                                    else f"{other['baseline_mean_answer_chars']:.0f}"),
            "calls_text": _count(other["judge_calls"]),
            "prompt_tokens_text": _count(other["prompt_tokens"]),
            "completion_tokens_text": _count(other["completion_tokens"]),
            "cost_text": "--" if other["cost_usd"] is None else f"{other['cost_usd']:.2f}",
        })
    return rows


def _pair_rows(pairwise: Sequence[Mapping], settings: list[dict]) -> list[dict]:
    k_of = {s["key"]: s["k"] for s in settings}
    rows = []
    for row in pairwise:
        for key in (row["setting_a"], row["setting_b"]):
            if key not in k_of:
                raise PipelineError(f"pairwise.csv: setting '{key}' is not in the config's settings")
        rows.append({**row, "a_k": k_of[row["setting_a"]], "b_k": k_of[row["setting_b"]],
                     "p_text": _p(row["p_value"]), "significant": _significant(row["p_value"])})
    return rows


def baseline_sentences(results: Sequence[Mapping]) -> list[str]:
    """One paragraph per setting: its verdicts, interval and sign test against the baseline.
    'Significant' appears only where the sign test's p-value is below ALPHA."""
    paragraphs = []
    for r in results:
        name = f"Setting {r['k']} ({r['title']})"
        if not r["n"] or r["win_rate"] is None:
            paragraphs.append(f"{name} has no judged answers.")
            continue
        text = (f"{name} wins {r['wins']} of {r['n']} questions against the baseline ({r['win_rate_pct']}%, "
                f"95% interval {r['ci_text']}%), with {r['ties']} ties and {r['losses']} losses; counting a tie "
                f"as half a win gives {r['half_pct']}%.")
        p = r["p_value"]
        if p is None:
            text += " No sign test is available."
        elif _significant(p) and r["wins"] != r["losses"]:
            preferred = "this setting's answers" if r["wins"] > r["losses"] else "the baseline's answers"
            text += (f" The sign test on wins against losses gives {_p_phrase(p)}: the judge prefers "
                     f"{preferred} significantly more often than the other way round.")
        else:
            text += (f" The sign test on wins against losses gives {_p_phrase(p)}: the difference between "
                     "wins and losses is not significant.")
        if r["published_value"] is not None and r["published_p_value"] is not None:
            p = r["published_p_value"]
            differs = "differs significantly from" if _significant(p) else "is not significantly different from"
            text += (f" The study published {r['published']}% ({r['published_wins']} of {r['published_n']}); "
                     f"Boschloo's exact test of our {r['wins']} of {r['n']} against it gives {_p_phrase(p)}: "
                     f"our rate {differs} the published one.")
        paragraphs.append(text)
    return paragraphs


def pairwise_sentences(pairs: Sequence[Mapping]) -> list[str]:
    sentences = []
    for p in pairs:
        text = (f"Setting {p['a_k']} against setting {p['b_k']}: of {p['n']} questions judged for both, "
                f"setting {p['a_k']} alone won {p['a_better']} and setting {p['b_k']} alone won {p['b_better']} "
                f"({_p_phrase(p['p_value'])}); ")
        if p["significant"] and p["a_better"] != p["b_better"]:
            better, worse = (p["a_k"], p["b_k"]) if p["a_better"] > p["b_better"] else (p["b_k"], p["a_k"])
            text += f"setting {better} wins significantly more often than setting {worse}."
        else:
            text += "the difference is not significant."
        sentences.append(text)
    return sentences


def _best_against_others(best: Mapping, results: Sequence[Mapping], pairs: Sequence[Mapping]) -> list[str]:
    """What the paired tests say about the top setting's lead: only a significant test in its
    favour counts as being ahead."""
    ahead, level, behind, untested = [], [], [], []
    for other in results:
        if other["k"] == best["k"] or other["win_rate"] is None:
            continue
        pair = next((p for p in pairs if {p["a_k"], p["b_k"]} == {best["k"], other["k"]}), None)
        if pair is None:
            untested.append(other["k"])
            continue
        best_wins, other_wins = ((pair["a_better"], pair["b_better"]) if pair["a_k"] == best["k"]
                                 else (pair["b_better"], pair["a_better"]))
        if pair["significant"] and best_wins > other_wins:
            ahead.append(other["k"])
        elif pair["significant"] and best_wins < other_wins:
            behind.append(other["k"])
        else:
            level.append(other["k"])
    sentences = []
    if ahead:
        sentences.append(f"The paired tests put it significantly ahead of {_settings_list(ahead)}.")
    if level:
        sentences.append(f"The paired tests do not separate it from {_settings_list(level)}, so its lead over "
                         f"{'it' if len(level) == 1 else 'them'} may be chance.")
    if behind:
        sentences.append(f"On the questions themselves, {_settings_list(behind)} "
                         f"{'wins' if len(behind) == 1 else 'win'} significantly more often than it.")
    if untested:
        sentences.append(f"No paired test compares it with {_settings_list(untested)}.")
    return sentences


def conclusion_sentences(results: Sequence[Mapping], pairs: Sequence[Mapping]) -> list[str]:
    scored = [r for r in results if r["win_rate"] is not None and r["n"]]
    if not scored:
        return ["No setting has judged answers, so no setting can be called best."]
    best_rate = max(r["win_rate"] for r in scored)
    best = [r for r in scored if r["win_rate"] == best_rate]
    if len(best) > 1:
        names = ", ".join(f"{b['k']} ({b['title']})" for b in best)
        sentences = [f"Settings {names} share the highest win rate against the baseline, {best[0]['win_rate_pct']}%."]
    else:
        b = best[0]
        text = (f"Setting {b['k']} ({b['title']}) reaches the highest win rate against the baseline, "
                f"{b['win_rate_pct']}% (wins/ties/losses {b['wins']}/{b['ties']}/{b['losses']} of {b['n']}, "
                f"95% interval {b['ci_text']}%)")
        text += f"; the study published {b['published']}%." if b["published_value"] is not None else "."
        sentences = [text, *_best_against_others(b, results, pairs)]
    better = [r["k"] for r in scored if _significant(r["p_value"]) and r["wins"] > r["losses"]]
    worse = [r["k"] for r in scored if _significant(r["p_value"]) and r["wins"] < r["losses"]]
    neither = [r["k"] for r in scored if r["k"] not in better + worse]
    if better:
        sentences.append(f"Against the baseline, {_settings_list(better)} "
                         f"{'is' if len(better) == 1 else 'are'} judged significantly better.")
    if worse:
        sentences.append(f"Against the baseline, {_settings_list(worse)} "
                         f"{'is' if len(worse) == 1 else 'are'} judged significantly worse.")
    if neither:
        sentences.append(f"For {_settings_list(neither)}, the sign test finds no significant difference "
                         "from the baseline.")
    widths = [100 * (r["ci_high"] - r["ci_low"]) for r in scored if r["ci_low"] is not None and r["ci_high"] is not None]
    if widths:
        sizes = sorted({r["n"] for r in scored})
        n_text = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
        sentences.append(f"With {n_text} questions per setting, the 95% intervals span {min(widths):.0f} to "
                         f"{max(widths):.0f} percentage points; differences between win rates smaller than "
                         "that should not be read as real.")
    return sentences


def _case_study(config: Mapping, test: list[dict], baseline: list[dict],
                generations: Mapping[str, list[dict]], settings: list[dict]) -> dict:
    index = _need(_need(config, "paper", "config"), "case_study", "config 'paper'")
    if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= len(test):
        raise PipelineError(f"config paper.case_study: {index!r} is not a question number "
                            f"between 1 and {len(test)} (the test set's size)")
    question = test[index - 1]
    qid = _need(question, "id", f"test set record {index}")

    def answer_of(records: list[dict], what: str) -> str:
        for record in records:
            if record.get("id") == qid:
                return _need(record, "answer", f"{what}, id {qid}")
        raise PipelineError(f"{what}: no answer for the case-study question (id {qid})")

    answers = []
    for s in settings:
        if s["key"] not in generations:
            raise PipelineError(f"no generations for setting '{s['key']}'")
        answers.append({"k": s["k"], "title": s["title"],
                        **_excerpt(answer_of(generations[s["key"]], f"generations of {s['key']}"))})
    return {
        "index": index,
        "id": _oneline(qid),
        "question": _oneline(_need(question, "question", f"test set record {index}")),
        "baseline": _excerpt(answer_of(baseline, "baseline answers")),
        "answers": answers,
        "excerpt_chars": EXCERPT_CHARS,
    }


def _provenance_context(prov: Mapping, settings: list[dict]) -> dict:
    """The provenance's values as text lines for the template."""
    k_of = {s["key"]: s["k"] for s in settings}
    git = prov["git"]
    if git["commit"] is None:
        code = "not a git checkout"
    else:
        state = {True: "uncommitted changes present", False: "clean", None: "state unknown"}[git["dirty"]]
        code = f"{git['commit']} ({state})"
    by_device: dict[str, list[int]] = {}
    for key, device in prov["devices"].items():
        by_device.setdefault(device, []).append(k_of.get(key, key))
    judge = prov["judge"]
    return {
        "code": code,
        "config_sha256": prov["config_sha256"],
        "data": f"{_fmt(prov['data']['source'])}, revision {_fmt(prov['data']['revision'])}",
        "raw_sha256": prov["data"]["raw_sha256"],
        "models": [{"name": name, "revision": _fmt(rev)} for name, rev in prov["models"].items()],
        "devices": [f"{device} ({_settings_list(ks)})" for device, ks in by_device.items()],
        "packages": [{"name": name, "version": version} for name, version in prov["packages"].items()],
        "python": prov["python"],
        "xelatex": prov["xelatex"],
        "dates": [{"what": what, "when": when} for what, when in prov["dates"].items()],
        "judge": {
            "endpoint": _fmt(judge["endpoint"]),
            "temperature": _fmt(judge["temperature"]),
            "calls": _count(judge["judge_calls"]),
            "prompt_tokens": _count(judge["prompt_tokens"]),
            "completion_tokens": _count(judge["completion_tokens"]),
            "cost": "not estimated (no prices in the config)" if judge["cost_usd"] is None
                    else f"{judge['cost_usd']:.2f} USD (estimate)",
        },
    }


def _augmentation_text(stats: Mapping) -> str:
    """What augment_train.py did, from its stats: method, share and what was left unaugmented."""
    where = "augment_stats.json"
    method = _need(stats, "method", where)
    how = (f"an LLM ({_need(stats, 'usage', where)['model']}) rewrote the question with the study's prompt"
           if method == "llm" else "strict Cilin synonyms of the same part of speech replaced up to a few words")
    reasons = _need(stats, "unaugmented_reasons", where)
    left = ", ".join(f"{n} {reason}" for reason, n in reasons.items() if n) or "none"
    return (f"The augmented training set adds a rewritten copy (answer kept) of {_need(stats, 'n_augmented', where)} "
            f"of the {_need(stats, 'n_train', where)} training questions: {_fmt(100 * _need(stats, 'ratio', where))}% "
            f"were selected with seed {_need(stats, 'seed', where)} and {how}; selected but left unaugmented: {left}")


def _decoding_text(generation: Mapping) -> str:
    if generation["do_sample"]:
        how = (f"sampled (temperature {_fmt(generation['temperature'])}, top-p {_fmt(generation['top_p'])}, "
               f"repetition penalty {_fmt(generation.get('repetition_penalty', 1.0))}), each question from its own "
               f"seed derived from seed {_fmt(generation.get('seed', 0))} and its id, so that an answer does not "
               "depend on the other questions of its batch")
    else:
        how = (f"decoded greedily (repetition penalty {_fmt(generation.get('repetition_penalty', 1.0))})")
    return f"Answers are {how}, with at most {_fmt(generation['max_new_tokens'])} new tokens"


def _fidelity_groups(rows: Sequence[Mapping]) -> list[dict]:
    """tables/fidelity.csv's rows under their group headings, in file order."""
    groups: list[dict] = []
    for row in rows:
        if not groups or groups[-1]["name"] != row["group"]:
            groups.append({"name": row["group"], "rows": []})
        groups[-1]["rows"].append({**row, "mark": FIDELITY_MARKS.get(row["status"], "")})
    return groups


def paper_context(config: Mapping, winrate: Sequence[Mapping], pairwise: Sequence[Mapping],
                  split_stats: Mapping, test: list[dict], baseline: list[dict],
                  generations: Mapping[str, list[dict]], provenance: Mapping, judge_prompt: str,
                  fidelity: Sequence[Mapping] = (), augment_stats: Mapping | None = None,
                  figures: Mapping[str, str] | None = None) -> dict:
    """Everything the template needs, as raw (unescaped) strings and numbers: the template
    escapes each value with the `latex` filter. `figures` maps loss, winrate and lengths to
    file names relative to the .tex file."""
    figures = dict(figures or {"loss": "loss_curves.pdf", "winrate": "win_rates.pdf", "lengths": "answer_lengths.pdf"})
    for name in figures.values():
        if not _SAFE_FIGURE_PATH.fullmatch(name) or name.startswith("/") or ".." in name.split("/"):
            raise PipelineError(f"figure path {name!r}: use a plain relative file name "
                                "(letters, digits, . _ - /) beside the .tex file")
    config_settings = _need(config, "settings", "config")
    if not config_settings:
        raise PipelineError("config: 'settings' is empty")
    settings = []
    for k, (key, spec) in enumerate(config_settings.items(), 1):
        where = f"config settings.{key}"
        settings.append({
            "k": k, "key": key,
            "title": _oneline(spec.get("title") or key),
            "model": _need(spec, "model", where),
            "data": spec.get("data", "original"),
            "lora": _need(spec, "lora", where),
            "training": _need(spec, "training", where),
        })

    data_cfg = _need(config, "data", "config")
    subset = data_cfg.get("subset")
    subset_text = None
    if subset:
        subset_text = (f"A sample of {_fmt(subset.get('n'))} rows drawn from rows "
                       f"{_fmt(subset.get('start'))} to {_fmt(subset.get('stop'))} "
                       f"with seed {_fmt(subset.get('seed'))}")
    augmentation_text = _augmentation_text(augment_stats) if augment_stats else None

    models_cfg = _need(config, "models", "config")
    models, seen = [], set()
    for s in settings:
        if s["model"] in seen:
            continue
        seen.add(s["model"])
        spec = _need(models_cfg, s["model"], "config models")
        models.append({"name": s["model"], "source": _model_source(spec)})

    quant = config.get("quantization") or {}
    test_cfg = config.get("test") or {}
    test_source = test_cfg.get("source")
    test_source_text = ("sampled from the held-out split" if test_source == "heldout"
                        else f"from {_fmt(test_source)}")
    judge = _need(config, "judge", "config")

    results = _result_rows(winrate, settings, generations)
    # The table has published rates only where the run's test set and baseline are the study's.
    study_baseline = any(r["published_value"] is not None for r in results)
    pairs = _pair_rows(pairwise, settings)
    return {
        "title": _oneline(_need(_need(config, "paper", "config"), "title", "config 'paper'")),
        "run": _need(config, "run", "config"),
        "data": {
            "source": _need(data_cfg, "source", "config 'data'"),
            "revision": _fmt(data_cfg.get("revision")),
            "subset": subset_text,
            "augmentation": augmentation_text,
        },
        "splits": _split_text(split_stats),
        "models": models,
        "quantization": {
            "quant_type": _fmt(quant.get("quant_type")),
            "double_quant": _fmt(quant.get("double_quant")),
            "compute_dtype": _fmt(quant.get("compute_dtype")),
        },
        "settings": [{"k": s["k"], "key": s["key"], "title": s["title"]} for s in settings],
        "hparams": _hparam_rows(settings),
        "hparam_col_width": f"{0.72 / len(settings):.3f}",
        "test": {"n": len(test), "source": test_source_text},
        "baseline": _baseline_text(config),
        "study_baseline": study_baseline,
        "judge": {"backend": _fmt(judge.get("backend")), "model": _fmt(judge.get("model")),
                  "tie_margin": _fmt(judge.get("tie_margin")), "prompt": judge_prompt},
        "decoding": _decoding_text(_need(config, "generation", "config")),
        "fidelity": _fidelity_groups(fidelity),
        "deviations": sum(row["status"] == "deviation" for row in fidelity),
        "alpha": _fmt(ALPHA),
        "results": results,
        "total_invalid": sum(r["invalid"] for r in results),
        "pairs": pairs,
        "analysis": {"baseline": baseline_sentences(results), "pairwise": pairwise_sentences(pairs)},
        "conclusion": conclusion_sentences(results, pairs),
        "figures": figures,
        "case": _case_study(config, test, baseline, generations, settings),
        "provenance": _provenance_context(provenance, settings),
    }


# ---------------------------------------------------------------------------------------------
# Report tables (HTML, so that Snakemake's report shows them inline)


def report_tables(context: Mapping) -> dict[str, str]:
    """Table 1, the answer lengths and the paired tests as small HTML pages, keyed by the
    names of rule render_paper's outputs."""
    def page(title: str, frame: pd.DataFrame) -> str:
        return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
                f"<body>\n<h3>{title}</h3>\n{frame.to_html(index=False, escape=True, na_rep='--')}\n</body></html>\n")

    results = context["results"]
    table1 = pd.DataFrame([{
        "setting": f"Ours (setting {r['k']}): {r['title']}", "n": r["n"], "wins": r["wins"], "ties": r["ties"],
        "losses": r["losses"], "invalid": r["invalid"], "win rate (%)": r["win_rate_pct"],
        "95% Wilson interval (%)": r["ci_text"], "sign test p": r["p_text"], "published (%)": r["published"],
    } for r in results])
    lengths = pd.DataFrame([{
        "setting": f"Setting {r['k']}: {r['title']}", "mean answer chars": r["mean_chars_text"],
        "baseline mean answer chars": r["baseline_chars_text"],
    } for r in results])
    pairs = pd.DataFrame([{
        "setting a": p["a_k"], "setting b": p["b_k"], "n": p["n"], "a alone won": p["a_better"],
        "b alone won": p["b_better"], "exact p": p["p_text"],
    } for p in context["pairs"]], columns=["setting a", "setting b", "n", "a alone won", "b alone won", "exact p"])
    return {
        "table": page("Table 1: win rate against the baseline", table1),
        "lengths_table": page("Answer length per setting and baseline", lengths),
        "pairwise_table": page("Paired tests between settings", pairs),
    }


# ---------------------------------------------------------------------------------------------
# Stage


def _paths(value: Any) -> list[str]:
    return [str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value]


def main(smk) -> None:
    check_build_tools()  # first: without TeX nothing is worth reading, and the message says what to install
    config = smk.params.config
    settings = list(_need(config, "settings", "config"))
    inputs = {"losses": _paths(smk.input.losses), "generations": _paths(smk.input.generations),
              "adapters": _paths(smk.params.adapters)}
    for what, paths in inputs.items():
        if len(paths) != len(settings):
            raise PipelineError(f"input '{what}': {len(paths)} file(s) for {len(settings)} settings")

    loss_frames = {f"Setting {k}: {_oneline(config['settings'][key].get('title') or key)}": read_loss_csv(path)
                   for k, (key, path) in enumerate(zip(settings, inputs["losses"]), 1)}
    out = smk.output
    tex_dir = Path(out.tex).parent
    figure_outputs = {"loss": out.loss_figure, "winrate": out.winrate_figure, "lengths": out.length_figure}
    figures = {name: Path(os.path.relpath(path, tex_dir)).as_posix() for name, path in figure_outputs.items()}
    winrate = read_json(smk.input.winrate)
    context = paper_context(
        config=config,
        winrate=winrate,
        pairwise=read_pairwise_csv(smk.input.pairwise),
        split_stats=read_json(smk.input.split_stats),
        test=read_jsonl(smk.input.test),
        baseline=read_jsonl(smk.input.baseline),
        generations={key: read_jsonl(path) for key, path in zip(settings, inputs["generations"])},
        provenance=collect_provenance(config, winrate, smk.input.winrate, smk.input.raw,
                                      dict(zip(settings, inputs["adapters"])), _paths(smk.input.models)),
        judge_prompt=read_prompt(smk.input.judge_prompt),
        fidelity=read_fidelity_csv(smk.input.fidelity),
        augment_stats=read_json(smk.input.augment_stats[0]) if smk.input.augment_stats else None,
        figures=figures,
    )
    tex = render_paper(context, smk.input.template)
    tables = report_tables(context)
    check_no_secrets({"paper.tex": tex, **tables}, config)

    # Built aside and moved in only once the PDF exists, so a failure leaves no outputs behind.
    tex_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".paper-build.", dir=tex_dir) as build:
        build = Path(build)
        built = {out.tex: build / "paper.tex"}
        for name, path in figure_outputs.items():
            built[path] = build / figures[name]
            built[path].parent.mkdir(parents=True, exist_ok=True)
        plot_loss_curves(loss_frames, built[out.loss_figure])
        plot_win_rates(context["results"], built[out.winrate_figure])
        plot_answer_lengths(context["results"], built[out.length_figure])
        for name, html in tables.items():
            built[getattr(out, name)] = build / f"{name}.html"
            built[getattr(out, name)].write_text(html, encoding="utf-8")
        built[out.tex].write_text(tex, encoding="utf-8")
        built[out.pdf] = compile_pdf(built[out.tex])
        for target, source in built.items():
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
    log.info("paper: wrote %s", ", ".join(built))


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
