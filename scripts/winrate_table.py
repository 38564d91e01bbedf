"""Win rates of the settings against the baseline, with the statistics 20 questions allow.

tables/winrate.csv and .json, one row per setting (COLUMNS):
  n                   every judged question, invalid verdicts included, so that an unparseable
                      reply is never a silent win or tie.
  wins, ties, losses, invalid   the verdicts (judge_pairwise.py: both orders, MT-bench rule).
  win_rate            wins / n, as the study counts it; win_rate_ties_half = (wins + ties/2) / n.
  ci_low, ci_high     Wilson score 95% interval of win_rate (wins out of n).
  p_value             exact two-sided sign test of "the setting is no better than the baseline
                      nor worse": wins against losses, ties and invalid dropped, i.e. the
                      binomial test of wins out of wins + losses against 1/2 (1.0 when there
                      are neither wins nor losses).
  consistency         share of the questions judged validly in both orders whose two orders
                      agreed (position consistency; empty when there are none).
  mean_answer_chars, baseline_mean_answer_chars   mean answer length in characters, the
                      setting's and the baseline's on the same questions (judges like length).
  prompt_tokens, completion_tokens, judge_calls   what the verdicts cost: every call behind
                      them (two per question, plus label retries), whether it was answered
                      now or from the cache, so the numbers do not depend on what was cached.
  cost_usd            estimated from judge.price_per_million {input, output} (USD per million
                      prompt / completion tokens); empty when no prices are given.

tables/pairwise.csv, one row per pair of settings (in config order), on the questions both
were judged on: a question is discordant when exactly one of the two settings won it (its
verdict is 'win'; a tie, loss or invalid verdict is not a win, as in win_rate). a_better counts
the questions that a won and b did not, b_better the reverse, and p_value is the exact McNemar
test: the two-sided binomial test of a_better out of a_better + b_better against 1/2 (1.0 when
no question is discordant).
"""


import itertools
import math
from typing import Mapping

import pandas as pd
from scipy.stats import binomtest

from common import DataError, PipelineError, iter_jsonl, log, run_stage, write_json, write_text

VERDICTS = ("win", "tie", "loss", "invalid")
COLUMNS = [
    "setting", "title", "n", "wins", "ties", "losses", "invalid", "win_rate", "win_rate_ties_half",
    "ci_low", "ci_high", "p_value", "consistency", "mean_answer_chars", "baseline_mean_answer_chars",
    "prompt_tokens", "completion_tokens", "judge_calls", "cost_usd",
]
PAIRWISE_COLUMNS = ["setting_a", "setting_b", "n", "a_better", "b_better", "p_value"]
INT_COLUMNS = ["n", "wins", "ties", "losses", "invalid", "prompt_tokens", "completion_tokens", "judge_calls"]


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    if not n:
        return math.nan, math.nan
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


def exact_binomial_p(k: int, n: int) -> float:
    """Two-sided exact binomial test of k successes out of n against 1/2; 1.0 when n is 0."""
    return binomtest(k, n, 0.5, alternative="two-sided").pvalue if n else 1.0


def cost_usd(prompt_tokens: int, completion_tokens: int, prices: Mapping | None) -> float:
    if not prices:
        return math.nan
    return (prompt_tokens * prices["input"] + completion_tokens * prices["output"]) / 1e6


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else math.nan


def winrate_row(setting: str, title: str, records: list[dict], prices: Mapping | None = None) -> dict:
    counts = {v: 0 for v in VERDICTS}
    for record in records:
        verdict = record.get("verdict")
        if verdict not in counts:
            raise PipelineError(f"{setting}: unknown verdict {verdict!r} (expected one of {', '.join(VERDICTS)})")
        counts[verdict] += 1
    n, wins, losses = len(records), counts["win"], counts["loss"]
    consistent = [r["consistent"] for r in records if r["consistent"] is not None]
    ci_low, ci_high = wilson_interval(wins, n)
    prompt_tokens = sum(r["usage"]["prompt_tokens"] for r in records)
    completion_tokens = sum(r["usage"]["completion_tokens"] for r in records)
    return {
        "setting": setting,
        "title": title,
        "n": n,
        "wins": wins,
        "ties": counts["tie"],
        "losses": losses,
        "invalid": counts["invalid"],
        "win_rate": wins / n if n else math.nan,
        "win_rate_ties_half": (wins + 0.5 * counts["tie"]) / n if n else math.nan,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_value": exact_binomial_p(wins, wins + losses),
        "consistency": _mean(consistent),
        "mean_answer_chars": _mean([len(r["setting_answer"]) for r in records]),
        "baseline_mean_answer_chars": _mean([len(r["baseline_answer"]) for r in records]),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "judge_calls": sum(r["usage"]["calls"] for r in records),
        "cost_usd": cost_usd(prompt_tokens, completion_tokens, prices),
    }


def winrate_table(
    verdict_records_by_setting: Mapping[str, list[dict]],
    titles: Mapping[str, str] | None = None,
    prices: Mapping | None = None,
) -> pd.DataFrame:
    """One row per setting, in the mapping's order."""
    titles = titles or {}
    rows = [
        winrate_row(name, titles.get(name, name), records, prices)
        for name, records in verdict_records_by_setting.items()
    ]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype({c: "int64" for c in INT_COLUMNS}).astype({"cost_usd": "float64"})


def pairwise_row(a: str, a_records: list[dict], b: str, b_records: list[dict]) -> dict:
    won_a = {str(r["id"]): r["verdict"] == "win" for r in a_records}
    won_b = {str(r["id"]): r["verdict"] == "win" for r in b_records}
    common = [key for key in won_a if key in won_b]
    a_better = sum(won_a[key] and not won_b[key] for key in common)
    b_better = sum(won_b[key] and not won_a[key] for key in common)
    return {
        "setting_a": a,
        "setting_b": b,
        "n": len(common),
        "a_better": a_better,
        "b_better": b_better,
        "p_value": exact_binomial_p(a_better, a_better + b_better),
    }


def pairwise_table(verdict_records_by_setting: Mapping[str, list[dict]]) -> pd.DataFrame:
    """Every pair of settings, each once, in the mapping's order."""
    rows = [
        pairwise_row(a, verdict_records_by_setting[a], b, verdict_records_by_setting[b])
        for a, b in itertools.combinations(verdict_records_by_setting, 2)
    ]
    df = pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)
    return df.astype({c: "int64" for c in ("n", "a_better", "b_better")}).astype({"p_value": "float64"})


# What the table reads from each verdict record (judge_pairwise.py writes them all).
RECORD_FIELDS = {
    "id": (str, int),
    "verdict": str,
    "consistent": (bool, type(None)),
    "setting_answer": str,
    "baseline_answer": str,
    "usage": dict,
}
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "calls")


def read_verdicts(path, setting: str) -> list[dict]:
    records = []
    for lineno, record in iter_jsonl(path):
        if record.get("setting") != setting:
            raise DataError(path, lineno, "setting", f"expected {setting!r}, got {record.get('setting')!r}")
        for name, kind in RECORD_FIELDS.items():
            if name not in record or not isinstance(record[name], kind):
                raise DataError(path, lineno, name, f"missing or of the wrong type ({record.get(name)!r})")
        if record["verdict"] not in VERDICTS:
            raise DataError(path, lineno, "verdict", f"expected one of {', '.join(VERDICTS)}, got {record['verdict']!r}")
        for name in USAGE_FIELDS:
            if not isinstance(record["usage"].get(name), int):
                raise DataError(path, lineno, f"usage.{name}", "missing or not an integer")
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
    df = winrate_table(by_setting, titles, smk.params.prices)
    write_text(smk.output.csv, df.to_csv(index=False))
    write_json(smk.output.json, table_rows(df))
    write_text(smk.output.pairwise, pairwise_table(by_setting).to_csv(index=False))
    for row in table_rows(df):
        log.info(
            "%s: win rate %s (%d/%d, 95%% CI %s-%s, sign test p=%s, %d invalid, orders agree %s)",
            row["setting"], row["win_rate"], row["wins"], row["n"], row["ci_low"], row["ci_high"],
            row["p_value"], row["invalid"], row["consistency"],
        )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
