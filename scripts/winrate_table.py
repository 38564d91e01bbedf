"""Win rates of the settings against the baseline, from the pairwise judge's verdicts.

win_rate = wins / n as the study counts it (a fraction in [0, 1]); n counts every judged
question, invalid judge replies included, so an unparseable reply is never a silent win or tie.
win_rate_ties_half = (wins + ties / 2) / n is given beside it.
"""


import math
from typing import Mapping

import pandas as pd

from common import DataError, PipelineError, iter_jsonl, log, run_stage, write_json, write_text

VERDICTS = ("win", "tie", "loss", "invalid")
COLUMNS = ["setting", "title", "n", "wins", "ties", "losses", "invalid", "win_rate", "win_rate_ties_half"]


def winrate_row(setting: str, title: str, records: list[dict]) -> dict:
    counts = {v: 0 for v in VERDICTS}
    for record in records:
        verdict = record.get("verdict")
        if verdict not in counts:
            raise PipelineError(f"{setting}: unknown verdict {verdict!r} (expected one of {', '.join(VERDICTS)})")
        counts[verdict] += 1
    n = len(records)
    return {
        "setting": setting,
        "title": title,
        "n": n,
        "wins": counts["win"],
        "ties": counts["tie"],
        "losses": counts["loss"],
        "invalid": counts["invalid"],
        "win_rate": counts["win"] / n if n else math.nan,
        "win_rate_ties_half": (counts["win"] + 0.5 * counts["tie"]) / n if n else math.nan,
    }


def winrate_table(verdict_records_by_setting: Mapping[str, list[dict]], titles: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per setting, in the mapping's order."""
    titles = titles or {}
    rows = [winrate_row(name, titles.get(name, name), records) for name, records in verdict_records_by_setting.items()]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({c: "int64" for c in ("n", "wins", "ties", "losses", "invalid")})


def read_verdicts(path, setting: str) -> list[dict]:
    records = []
    for lineno, record in iter_jsonl(path):
        if record.get("setting") != setting:
            raise DataError(path, lineno, "setting", f"expected {setting!r}, got {record.get('setting')!r}")
        if record.get("verdict") not in VERDICTS:
            raise DataError(path, lineno, "verdict", f"expected one of {', '.join(VERDICTS)}, got {record.get('verdict')!r}")
        records.append(record)
    if not records:
        raise DataError(path, None, None, "no verdicts")
    return records


def table_rows(df: pd.DataFrame) -> list[dict]:
    """Plain JSON rows: Python numbers, NaN as null."""
    rows = []
    for row in df.to_dict(orient="records"):
        out = {}
        for key, value in row.items():
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, float) and math.isnan(value):
                value = None
            out[key] = value
        rows.append(out)
    return rows


def main(smk) -> None:
    paths = list(smk.input.verdicts) if not isinstance(smk.input.verdicts, str) else [smk.input.verdicts]
    settings = list(smk.params.settings)
    if len(paths) != len(settings):
        raise PipelineError(f"{len(paths)} verdict files for {len(settings)} settings")
    names = [s["name"] for s in settings]
    if len(set(names)) != len(names):
        raise PipelineError(f"settings: duplicate names in {names}")
    by_setting = {s["name"]: read_verdicts(path, s["name"]) for s, path in zip(settings, paths)}
    titles = {s["name"]: s.get("title") or s["name"] for s in settings}
    df = winrate_table(by_setting, titles)
    write_text(smk.output.csv, df.to_csv(index=False))
    write_json(smk.output.json, table_rows(df))
    for row in table_rows(df):
        log.info("%s: win rate %s (%d/%d, %d invalid)", row["setting"], row["win_rate"], row["wins"], row["n"], row["invalid"])


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
