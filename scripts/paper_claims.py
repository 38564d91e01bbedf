"""The paper's claims section: for each test set, the study's claims as the primary judge's
verdicts decide them (claims_table.py: our effect with its interval, the Holm-corrected p-value,
the power at the published effect and a verdict), every judge's win rates side by side with
their length-controlled counterparts, the judges' agreement (weighted kappa, ordinal alpha), and
how far seed noise alone moves a win rate. The sentences are generated from these tables only."""

import math
import re
from typing import Any, Mapping, Sequence

from common import PipelineError
from paper_format import fmt_p, need, pct

PRIMARY = "primary"
VERDICT_WORDS = {"supported": "supported", "contradicted": "contradicted", "inconclusive": "inconclusive at this n",
                 "not run": "not run (a setting it compares is not in this run)"}


def points(value: float | None, signed: bool = True) -> str:
    """A difference of rates in percentage points."""
    return "--" if value is None else (f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}")


def _against(row: Mapping, titles: Mapping[str, str]) -> str:
    against = row["against"]
    return "the baseline (50%)" if against == "baseline" else titles.get(against, against)


def claim_rows(claims: Sequence[Mapping], titles: Mapping[str, str], where: str) -> list[dict]:
    rows = []
    for i, row in enumerate(claims):
        at = f"{where} row {i + 1}"
        verdict = need(row, "verdict", at)
        if verdict not in VERDICT_WORDS:
            raise PipelineError(f"{at}: unknown verdict {verdict!r}")
        n80 = row["n_for_80_power"]
        rows.append({
            "id": need(row, "id", at), "claim": need(row, "claim", at), "source": need(row, "source", at),
            "setting": titles.get(row["setting"], row["setting"]), "against": _against(row, titles),
            "published": points(row["published_effect"]), "effect": points(row["effect"]),
            "ci": "--" if row["ci_low"] is None else f"[{points(row['ci_low'])}, {points(row['ci_high'])}]",
            "p": fmt_p(row["p_value"]), "p_holm": fmt_p(row["p_holm"]),
            "power": pct(row["power"]), "n80": "--" if n80 is None else f"{n80:.0f}",
            "verdict": verdict, "verdict_words": VERDICT_WORDS[verdict],
            "published_in_ci": row["published_in_ci"], "n": row["n"], "replicates": row["replicates"],
        })
    return rows


def claim_sentence(test_set: str, row: Mapping) -> str:
    if row["verdict"] == "not run":
        return f"On {test_set}, the claim ``{row['claim']}'' is not tested: a setting it compares is not in this run."
    text = (f"On {test_set}, ``{row['claim']}'' ({row['source']}): {row['setting']} against {row['against']} "
            f"differs by {row['effect']} points (95% interval {row['ci']}; Holm-corrected p {row['p_holm']}), "
            f"so the claim is {row['verdict_words']}.")
    if row["published"] != "--":
        inside = "inside" if row["published_in_ci"] else "outside"
        text += (f" The study's {row['published']} points lie {inside} our interval; our test would detect an "
                 f"effect of that size with power {row['power']}%, and {row['n80']} questions would give 80%.")
    return text


def rate_table(winrates: Mapping[tuple[str, str], Sequence[Mapping]], settings: Sequence[Mapping]) -> dict:
    """Win rate (and length-controlled win rate) of each setting by each test set and judge."""
    columns = [{"test_set": t, "judge": j} for t, j in winrates]
    rows = []
    for s in settings:
        cells = []
        for key, table in winrates.items():
            row = next((r for r in table if r["setting"] == s["key"]), None)
            if row is None:
                raise PipelineError(f"winrate table of {key[0]}/{key[1]}: no row for setting '{s['key']}'")
            cells.append({"rate": pct(row["win_rate"]), "lc": pct(row["lc_win_rate"])})
        rows.append({"k": s["k"], "title": s["title"], "cells": cells})
    return {"columns": columns, "rows": rows}


def seed_noise(winrates: Mapping[tuple[str, str], Sequence[Mapping]], titles: Mapping[str, str]) -> str | None:
    """The widest spread of one setting's replicate win rates: a difference between settings
    smaller than this can come from the training and decoding seeds alone."""
    spreads = [(r["replicate_win_rate_max"] - r["replicate_win_rate_min"], r["setting"], t, j)
               for (t, j), table in winrates.items() for r in table
               if r["replicates"] > 1 and r["replicate_win_rate_min"] is not None]
    if not spreads:
        return None
    width, setting, test_set, judge = max(spreads)
    k = next(iter(winrates.values()))[0]["replicates"]
    return (f"Each setting ran {k} times with different seeds (training data order, LoRA initialisation, "
            f"decoding). Across them, one setting's win rate moves by up to {points(width, signed=False)} points "
            f"({titles.get(setting, setting)}, test set {test_set}, judge {judge}); a difference between two settings of that size "
            "can be seed noise alone.")


def _number(value: float | None) -> float | None:
    """A CSV cell's number, None where it is empty (NaN)."""
    return None if value is None or math.isnan(value) else value


def _with_interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return "--"
    return f"{value:.2f}" if low is None else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def agreement_rows(agreement: Sequence[Mapping]) -> list[dict]:
    rows = []
    for r in agreement:
        kappa, alpha = ([_number(r[f"{k}{end}"]) for end in ("", "_low", "_high")] for k in ("weighted_kappa", "alpha"))
        rows.append({"test_set": r["test_set"], "judge": r["judge_b"], "questions": int(r["n_questions"]),
                     "pairs": int(r["n_pairs"]), "agreement": pct(_number(r["agreement"])),
                     "kappa": _with_interval(*kappa), "alpha": _with_interval(*alpha)})
    return rows


def claims_context(claims: Mapping[str, Sequence[Mapping]], winrates: Mapping[tuple[str, str], Sequence[Mapping]],
                   agreement: Sequence[Mapping], settings: Sequence[Mapping]) -> dict[str, Any]:
    """claims: test set -> the primary judge's claims table; winrates: (test set, judge) -> table."""
    titles = {s["key"]: f"setting {s['k']}" for s in settings}
    # LaTeX labels from letters, digits and hyphens only: a test set may be called held_out.
    tables = [{"test_set": t, "label": "claims-" + re.sub(r"[^A-Za-z0-9]+", "-", t),
               "rows": claim_rows(rows, titles, f"claims table of {t}")} for t, rows in claims.items()]
    return {
        "claims": tables,
        "claims_analysis": [claim_sentence(t["test_set"], row) for t in tables for row in t["rows"]],
        "judge_rates": rate_table(winrates, settings),
        "agreement": agreement_rows(agreement),
        "seed_noise": seed_noise(winrates, titles),
    }
