"""Stage fidelity: for every parameter of the study (config/study.yaml: its value and source),
this run's value, read from the run's config, and whether it deviates.

tables/fidelity.csv, one row per parameter (COLUMNS):
  group, parameter, study, this_run, source, note   the values as text; `study` is "not stated"
                      where the study gives none (source: assumption; the note then gives our
                      assumed value).
  status              same (this run has the value the study states) | deviation (this run's
                      value differs from the study's, or from our reading of it) | not stated
                      (the study gives no value: ours is an assumption) | our reading (the study
                      names it in words a config cannot hold, e.g. "ChatGPT-3", and this run has
                      our reading of them) | execution (changes speed only, at most rounding; never a
                      deviation) |
                      by design (our protocol differs on purpose).
"""

import math
import re
from typing import Any

import pandas as pd
import yaml

from huatuo_study.common import PipelineError, log, run_stage, write_text
from huatuo_study.paper.formatting import fmt
from huatuo_study.records import FIDELITY_COLUMNS

COLUMNS = FIDELITY_COLUMNS
ABSENT = object()  # a key this run's config does not have
# A parameter's fields (config/README.md, "config/study.yaml").
FIELDS = {
    "group",
    "label",
    "key",
    "value",
    "study",
    "reading",
    "assumed",
    "settings",
    "source",
    "note",
    "execution",
    "protocol",
    "ours",
}


def lookup(config: dict, key: str) -> Any:
    """The value at a dotted key, or ABSENT. A part in braces is looked up first: `{first}` is the
    first entry of the mapping at that point (the headline test set), `{a.b}` the value at the
    dotted key a.b (models.{settings.setting1.model}.source: the source of setting 1's model)."""
    value: Any = config
    for part in re.split(r"\.(?![^{]*\})", key):
        if part.startswith("{") and part.endswith("}"):
            inner = part[1:-1]
            part = next(iter(value), ABSENT) if inner == "first" and isinstance(value, dict) else lookup(config, inner)
            if part is ABSENT:
                return ABSENT
        if not isinstance(value, dict) or part not in value:
            return ABSENT
        value = value[part]
    return value


def same(a: Any, b: Any) -> bool:
    """Equal as config values: numbers by value (2e-5 == 2.0e-05), lists item by item; an absent
    key is null (the schema's default)."""
    a, b = (None if v is ABSENT else v for v in (a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def text(value: Any) -> str:
    """A value as table text, as the paper writes config values; None is "none", a missing key "absent"."""
    if value is ABSENT:
        return "absent"
    return "none" if value is None else fmt(value)


def run_values(config: dict, key: str, settings: list[str]) -> dict[str, Any]:
    """{label: value} of a key; `settings.*.x` gives one entry per setting of `settings`."""
    if key.startswith("settings.*."):
        rest = key.removeprefix("settings.*.")
        return {name: lookup(config, f"settings.{name}.{rest}") for name in settings}
    return {"": lookup(config, key)}


def row_settings(param: dict, study_settings: list[str]) -> list[str]:
    """The study settings a `settings.*` row covers: its `settings`, else all of them."""
    where = f"config/study.yaml parameter {param['label']!r}"
    if "settings" not in param:
        return study_settings
    chosen = param["settings"]
    if not str(param["key"]).startswith("settings.*."):
        raise PipelineError(f"{where}: 'settings' needs a key 'settings.*.<name>', not {param['key']!r}")
    if not isinstance(chosen, list) or not chosen or not set(chosen) <= set(study_settings):
        raise PipelineError(f"{where}: 'settings' must be a non-empty list of {study_settings}, not {chosen!r}")
    return chosen


def check_param(param: dict) -> None:
    """Stop on a parameter whose fields contradict each other, naming it."""
    where = f"config/study.yaml parameter {param.get('label')!r}"
    for field in ("group", "label", "key", "source"):
        if field not in param:
            raise PipelineError(f"{where}: missing '{field}'")
    # An unquoted comma in a YAML flow mapping starts a new key: caught here, not printed cut short.
    unknown = sorted(set(param) - FIELDS, key=str)
    if unknown:
        raise PipelineError(f"{where}: unknown field(s) {unknown} (fields: {sorted(FIELDS)})")
    if "value" in param and "assumed" in param:
        raise PipelineError(f"{where}: 'assumed' is ours where the study gives no 'value'; not both")
    if "study" in param and "value" not in param:
        raise PipelineError(f"{where}: 'study' gives the words of the study's 'value', which is missing")
    if param.get("reading") and "study" not in param:
        raise PipelineError(f"{where}: 'reading' needs the study's words in 'study' and our reading in 'value'")
    if "ours" in param and not (param.get("protocol") or param.get("execution")):
        raise PipelineError(
            f"{where}: 'ours' is for a 'protocol' or 'execution' row; any other row compares this run's value at 'key'"
        )


def fidelity_row(param: dict, config: dict, study_settings: list[str]) -> dict:
    check_param(param)
    stated = "value" in param
    if "ours" in param:
        ours = str(param["ours"])
    else:
        values = run_values(config, param["key"], row_settings(param, study_settings))
        distinct = []
        for v in values.values():
            if not any(same(v, d) for d in distinct):
                distinct.append(v)
        ours = (
            text(distinct[0]) if len(distinct) == 1 else "; ".join(f"{name}: {text(v)}" for name, v in values.items())
        )
    if param.get("protocol"):
        status = "by design"
    elif param.get("execution"):
        status = "execution"
    elif not stated:
        status = "not stated"
    elif all(same(v, param["value"]) for v in values.values()):
        status = "our reading" if param.get("reading") else "same"
    else:
        status = "deviation"
    # What is ours (an assumption, a reading) stays visible even where this run has another value.
    notes = [
        f"our assumption: {text(param['assumed'])}" if "assumed" in param else "",
        f"our reading: {text(param['value'])}" if param.get("reading") else "",
        str(param.get("note", "")),
    ]
    return {
        "group": param["group"],
        "parameter": param["label"],
        "study": str(param.get("study", text(param["value"]))) if stated else "not stated",
        "this_run": ours,
        "source": param["source"],
        "note": "; ".join(n for n in notes if n),
        "status": status,
    }


def fidelity_table(study: dict, config: dict) -> pd.DataFrame:
    params = study.get("parameters")
    if not isinstance(params, list) or not params:
        raise PipelineError("config/study.yaml: 'parameters' must be a non-empty list")
    rows = [fidelity_row(p, config, list(study.get("settings") or [])) for p in params]
    return pd.DataFrame(rows, columns=COLUMNS)


def main(smk) -> None:
    with open(smk.input.study, encoding="utf-8") as f:
        study = yaml.safe_load(f)
    table = fidelity_table(study, smk.params.config)
    write_text(smk.output[0], table.to_csv(index=False))
    deviations = table[table["status"] == "deviation"]
    log.info(
        "fidelity: %d parameters, %d deviate from the study%s",
        len(table),
        len(deviations),
        (": " + ", ".join(deviations["parameter"])) if len(deviations) else "",
    )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
