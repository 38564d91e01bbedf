"""Paper stage: render paper/paper.tex.j2 into results/<run>/paper/paper.tex (Table 1 from the
win-rate table, the study's design from the config, a case study) and draw the loss curves
into loss_curves.pdf beside it. The PDF build (xelatex) is a later stage."""


import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2
import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from common import DataError, PipelineError, atomic_path, log, read_json, read_jsonl, run_stage, write_text  # noqa: E402

TEMPLATE = Path(__file__).resolve().parents[1] / "paper" / "paper.tex.j2"

# Win rates against ChatGPT published by the study (percent), shown beside ours for reference.
PUBLISHED_WIN_RATES = {"setting1": 75, "setting2": 90, "setting3": 80, "setting4": 80}

EXCERPT_CHARS = 300

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
_LATEX_TABLE = str.maketrans(_LATEX_SPECIALS)

# \includegraphics takes its file name verbatim, so the one unescaped value must be plain.
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
# Loss curves


def plot_loss_curves(loss_frames: Mapping[str, pd.DataFrame], path: str | os.PathLike) -> None:
    """One panel per setting (keyed by its label): train loss solid, validation loss dashed,
    against the optimiser step. A setting without validation rows gets its train curve only.
    Written atomically (temp file beside `path`, then rename)."""
    if not loss_frames:
        raise PipelineError("no loss curves to plot (no settings)")
    n = len(loss_frames)
    ncols = 1 if n == 1 else 2
    nrows = math.ceil(n / ncols)
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
        ax.set_title(str(label), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    with atomic_path(path, suffix=".pdf") as tmp:
        # No creation date: the same curves give the same bytes.
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None})


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


# ---------------------------------------------------------------------------------------------
# Context


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


def _result_rows(winrate: Sequence[Mapping], settings: list[dict]) -> list[dict]:
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
        counts = {k: _need(row, k, where) for k in ("n", "wins", "ties", "losses")}
        win_rate = _need(row, "win_rate", where)
        if win_rate is not None and not (isinstance(win_rate, (int, float)) and 0 <= win_rate <= 1):
            raise PipelineError(f"{where}: win_rate must be a number in [0, 1], got {win_rate!r}")
        published = PUBLISHED_WIN_RATES.get(s["key"])
        rows.append({
            "k": s["k"],
            "setting": s["key"],
            "title": _oneline(row.get("title") or s["title"]),
            **counts,
            "invalid": row.get("invalid", 0) or 0,
            "win_rate": win_rate,
            "win_rate_pct": "--" if win_rate is None else f"{100 * win_rate:.1f}",
            "published": "--" if published is None else f"{published:.1f}",
        })
    return rows


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


def paper_context(config: Mapping, winrate: Sequence[Mapping], split_stats: Mapping,
                  test: list[dict], baseline: list[dict], generations: Mapping[str, list[dict]],
                  figure: str = "loss_curves.pdf") -> dict:
    """Everything the template needs, as raw (unescaped) strings and numbers: the template
    escapes each value with the `latex` filter."""
    if not _SAFE_FIGURE_PATH.fullmatch(figure) or figure.startswith("/") or ".." in figure.split("/"):
        raise PipelineError(f"figure path {figure!r}: use a plain relative file name "
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
        subset_text = (f"The course's sample: {_fmt(subset.get('n'))} rows drawn from rows "
                       f"{_fmt(subset.get('start'))} to {_fmt(subset.get('stop'))} "
                       f"with seed {_fmt(subset.get('seed'))}")
    augmentation_text = None
    if any(s["data"] == "augmented" for s in settings):
        ratio = (config.get("augmentation") or {}).get("ratio")
        augmentation_text = ("The augmented training set adds a synonym-replaced copy of "
                             f"{_fmt(ratio * 100) if isinstance(ratio, (int, float)) else '--'}% "
                             "of the training questions (answer kept)")

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

    results = _result_rows(winrate, settings)
    scored = [r for r in results if r["win_rate"] is not None and r["n"]]
    best_rate = max((r["win_rate"] for r in scored), default=None)
    best = [r for r in scored if r["win_rate"] == best_rate]

    return {
        "title": _oneline(_need(_need(config, "paper", "config"), "title", "config 'paper'")),
        "run": _need(config, "run", "config"),
        "data": {
            "source": _need(data_cfg, "source", "config 'data'"),
            "revision": _fmt(data_cfg.get("revision")),
            "subset": subset_text,
            "augmentation": augmentation_text,
        },
        "splits": {k: _need(split_stats, k, "split stats") for k in ("n_train", "n_val", "n_heldout")},
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
        "judge": {"backend": _fmt(judge.get("backend")), "model": _fmt(judge.get("model"))},
        "results": results,
        "total_invalid": sum(r["invalid"] for r in results),
        "best": best,
        "figure": figure,
        "case": _case_study(config, test, baseline, generations, settings),
    }


# ---------------------------------------------------------------------------------------------
# Stage


def _paths(value: Any) -> list[str]:
    return [str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value]


def _panel_label(k: int, key: str) -> str:
    return f"Setting {k}" if key == f"setting{k}" else f"Setting {k} ({key})"


def main(smk) -> None:
    config = smk.params.config
    settings = list(_need(config, "settings", "config"))
    loss_paths = _paths(smk.input.losses)
    generation_paths = _paths(smk.input.generations)
    for what, paths in (("losses", loss_paths), ("generations", generation_paths)):
        if len(paths) != len(settings):
            raise PipelineError(f"input '{what}': {len(paths)} file(s) for {len(settings)} settings")

    loss_frames = {_panel_label(k, key): read_loss_csv(path)
                   for k, (key, path) in enumerate(zip(settings, loss_paths), 1)}
    tex_dir = Path(smk.output.tex).parent
    figure = Path(os.path.relpath(Path(smk.output.figure), tex_dir)).as_posix()
    context = paper_context(
        config=config,
        winrate=read_json(smk.input.winrate),
        split_stats=read_json(smk.input.split_stats),
        test=read_jsonl(smk.input.test),
        baseline=read_jsonl(smk.input.baseline),
        generations={key: read_jsonl(path) for key, path in zip(settings, generation_paths)},
        figure=figure,
    )
    template = getattr(smk.input, "template", None) or TEMPLATE
    tex = render_paper(context, template)  # render first: a template error leaves no outputs behind
    plot_loss_curves(loss_frames, smk.output.figure)
    write_text(smk.output.tex, tex)
    log.info("paper: wrote %s and %s", smk.output.tex, smk.output.figure)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
