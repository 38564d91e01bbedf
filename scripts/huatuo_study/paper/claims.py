"""The paper's claims section: for each test set, the study's claims as the primary judge's
verdicts decide them (claims_table.py: our effect on the one measure with its interval, Holm's
correction, the corrected interval, the power of the whole procedure at the published effect and
a verdict with the sentence it rests on), the calibration of that inference at this run's design,
every judge's win rates side by side with their length-controlled counterparts, the judges'
agreement, how far seed noise alone moves a win rate, and the Conclusion, written from the claims
tables alone. The sentences are generated from these tables only."""

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from huatuo_study.common import PipelineError
from huatuo_study.paper.formatting import fmt_p, need, pct

PRIMARY = "primary"
VERDICT_WORDS = {
    "reproduced": "reproduced",
    "supported": "supported",
    "contradicted": "contradicted",
    "inconclusive": "inconclusive",
    "not run": "not run",
}


def points(value: float | None, signed: bool = True) -> str:
    """A difference of rates in percentage points."""
    return "--" if value is None else (f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}")


def design_text(n: int | None, replicates: int | None) -> str:
    """The size of a comparison: always questions x replicates, never a pooled count."""
    if n is None:
        return "--"
    return f"{n} questions × {replicates} replicate{'s' if replicates != 1 else ''}"


def _name(key: str, settings: Mapping[str, Mapping]) -> str:
    """'setting k (model)' for a setting of the run, the baseline as such, any other name as it is."""
    if key == "baseline":
        return "the baseline"
    spec = settings.get(key)
    return key if spec is None else f"setting {spec['k']} ({spec['model']})"


def claim_rows(claims: Sequence[Mapping], settings: Mapping[str, Mapping], where: str) -> list[dict]:
    rows = []
    for i, row in enumerate(claims):
        at = f"{where} row {i + 1}"
        verdict = need(row, "verdict", at)
        if verdict not in VERDICT_WORDS:
            raise PipelineError(f"{at}: unknown verdict {verdict!r}")
        ran = row["effect"] is not None
        rows.append(
            {
                "id": need(row, "id", at),
                "claim": need(row, "claim", at),
                "source": need(row, "source", at),
                "compares": f"{_name(row['setting'], settings)} vs {_name(row['against'], settings)}",
                "published": points(row["published_effect"]),
                "effect": points(row["effect"]),
                "ci": f"[{points(row['ci_low'])}, {points(row['ci_high'])}]" if ran else "--",
                "p_holm": fmt_p(row["p_holm"]),
                "power": pct(row["power"]),
                "verdict": verdict,
                "reading": need(row, "reading", at),
                "design": design_text(row["n"], row["replicates"]),
            }
        )
    return rows


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
    spreads = [
        (r["replicate_win_rate_max"] - r["replicate_win_rate_min"], r["setting"], t, j)
        for (t, j), table in winrates.items()
        for r in table
        if r["replicates"] > 1 and r["replicate_win_rate_min"] is not None
    ]
    if not spreads:
        return None
    width, setting, test_set, judge = max(spreads)
    k = next(iter(winrates.values()))[0]["replicates"]
    return (
        f"Each setting ran {k} times with different seeds (training data order, LoRA initialisation, "
        f"decoding). Across them, one setting's win rate moves by up to {points(width, signed=False)} points "
        f"({titles.get(setting, setting)}, test set {test_set}, judge {judge}); a difference between two settings of that size "
        "can be seed noise alone."
    )


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
        rows.append(
            {
                "test_set": r["test_set"],
                "judge": r["judge_b"],
                "questions": int(r["n_questions"]),
                "pairs": int(r["n_pairs"]),
                "agreement": pct(_number(r["agreement"])),
                "kappa": _with_interval(*kappa),
                "alpha": _with_interval(*alpha),
            }
        )
    return rows


def calibration_rows(calibration: Sequence[Mapping]) -> list[dict]:
    """tables/calibration.csv as the paper prints it: shares in %."""
    return [
        {
            "test_set": r["test_set"],
            "design": design_text(int(r["questions"]), int(r["replicates"])),
            "coverage": [pct(r[k]) for k in ("coverage_0.5", "coverage_0.75", "coverage_0.9", "coverage_difference")],
            "fwe": pct(r["family_wise_error"]),
            "studies": int(r["studies"]),
        }
        for r in calibration
    ]


def _listed(rows: Sequence[Mapping]) -> str:
    names = [f"{r['id']} ({r['compares']})" for r in rows]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def conclusion_sentences(tables: Sequence[Mapping]) -> list[str]:
    """The Conclusion, from the claims tables alone: per test set, which claims stand how."""
    sentences = []
    for t in tables:
        rows = [r for r in t["rows"] if r["verdict"] != "not run"]
        if not rows:
            sentences.append(
                f"On test set {t['test_set']}, none of the study's claims could be tested: "
                "the settings they compare are not in this run."
            )
            continue
        by = {v: [r for r in rows if r["verdict"] == v] for v in VERDICT_WORDS}
        parts = [f"{len(by[v])} {v} ({_listed(by[v])})" for v in ("reproduced", "supported", "contradicted") if by[v]]
        parts.append(f"{len(by['inconclusive'])} inconclusive")
        sentences.append(
            f"On test set {t['test_set']} ({rows[0]['design']}, primary judge), of the "
            f"{len(rows)} claims tested "
            + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
            + "."
        )
        weak = [r for r in by["inconclusive"] if r["power"] != "--" and float(r["power"]) < 80]
        if weak:
            sentences.append(
                f"For {len(weak)} of the inconclusive claims the procedure has less than 80% power at "
                "the study's own effect at this size, so this run could not have settled them either way."
            )
    return sentences


def claims_context(
    claims: Mapping[str, Sequence[Mapping]],
    winrates: Mapping[tuple[str, str], Sequence[Mapping]],
    agreement: Sequence[Mapping],
    settings: Sequence[Mapping],
    calibration: Sequence[Mapping],
) -> dict[str, Any]:
    """claims: test set -> the primary judge's claims table; winrates: (test set, judge) -> table."""
    by_key = {s["key"]: s for s in settings}
    titles = {s["key"]: f"setting {s['k']}" for s in settings}
    # LaTeX labels from letters, digits and hyphens only: a test set may be called held_out.
    tables = [
        {
            "test_set": t,
            "label": "claims-" + re.sub(r"[^A-Za-z0-9]+", "-", t),
            "rows": claim_rows(rows, by_key, f"claims table of {t}"),
        }
        for t, rows in claims.items()
    ]
    margins = {row["margin"] for rows in claims.values() for row in rows}
    if len(margins) > 1:
        raise PipelineError(f"claims tables: equivalence margins differ ({sorted(margins)}); rerun them together")
    return {
        "claims": tables,
        "margin": points(margins.pop(), signed=False) if margins else "--",
        "calibration": calibration_rows(calibration),
        "judge_rates": rate_table(winrates, settings),
        "agreement": agreement_rows(agreement),
        "seed_noise": seed_noise(winrates, titles),
        "conclusion": conclusion_sentences(tables),
    }
