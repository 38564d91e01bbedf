"""Stage fidelity: for every parameter of the study (config/study.yaml: its value and source),
this run's value, read from the run's config, and whether it deviates.

tables/fidelity.csv, one row per parameter (COLUMNS):
  group, parameter, study, this_run, source, note   the values as text; `study` is "not stated"
                      where the study gives none (source: assumption).
  status              same | deviation (this run's value differs from the study's) | not stated
                      (the study gives no value: ours is an assumption) | execution (changes
                      speed only, never a deviation) | by design (our protocol differs on purpose).
"""

import math
import re
from typing import Any

import pandas as pd
import yaml

from common import PipelineError, log, run_stage, write_text
from paper_format import fmt

COLUMNS = ["group", "parameter", "study", "this_run", "source", "note", "status"]
ABSENT = object()  # a key this run's config does not have


def lookup(config: dict, key: str) -> Any:
    """The value at a dotted key, or ABSENT. A part in braces is looked up first: `{first}` is the
    first entry of the mapping at that point (the headline test set), `{a.b}` the value at the
    dotted key a.b (models.{settings.setting1.model}.source: the source of setting 1's model)."""
    value: Any = config
    for part in re.split(r"\.(?![^{]*\})", key):
        if part.startswith("{") and part.endswith("}"):
            inner = part[1:-1]
            part = (next(iter(value), ABSENT) if inner == "first" and isinstance(value, dict)
                    else lookup(config, inner))
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


def run_values(config: dict, key: str, study_settings: list[str]) -> dict[str, Any]:
    """{label: value} of a key; `settings.*.x` gives one entry per study setting."""
    if key.startswith("settings.*."):
        rest = key.removeprefix("settings.*.")
        return {name: lookup(config, f"settings.{name}.{rest}") for name in study_settings}
    return {"": lookup(config, key)}


def fidelity_row(param: dict, config: dict, study_settings: list[str]) -> dict:
    where = f"config/study.yaml parameter {param.get('label')!r}"
    for field in ("group", "label", "key", "source"):
        if field not in param:
            raise PipelineError(f"{where}: missing '{field}'")
    stated = "value" in param
    if param.get("protocol"):
        ours = str(param["ours"]) if "ours" in param else text(lookup(config, param["key"]))
        status = "by design"
    else:
        values = run_values(config, param["key"], study_settings)
        distinct = []
        for v in values.values():
            if not any(same(v, d) for d in distinct):
                distinct.append(v)
        ours = (text(distinct[0]) if len(distinct) == 1
                else "; ".join(f"{name}: {text(v)}" for name, v in values.items()))
        if param.get("execution"):
            status = "execution"
        elif not stated:
            status = "not stated"
        else:
            status = "same" if all(same(v, param["value"]) for v in values.values()) else "deviation"
    return {
        "group": param["group"],
        "parameter": param["label"],
        "study": text(param["value"]) if stated else "not stated",
        "this_run": ours,
        "source": param["source"],
        "note": param.get("note", ""),
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
    log.info("fidelity: %d parameters, %d deviate from the study%s", len(table), len(deviations),
             (": " + ", ".join(deviations["parameter"])) if len(deviations) else "")


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
