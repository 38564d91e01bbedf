"""Statistics of the claims table: which of the study's claims our verdicts support.

One judge on one test set at a time; a verdict table has columns setting, replicate, id,
verdict (win/tie/loss/invalid, the setting's answer against the baseline's), answer_chars and
baseline_chars, and holds every question in every replicate of every setting (check_verdicts).

One measure decides every comparison: the score (crossed_stats.SCORES: win 1, tie 1/2, loss 0,
an unparseable verdict 1/2). A claim's effect is the difference of two settings' mean scores, or a
setting's mean score minus 1/2 against the baseline. Its interval and p-value come from the
crossed random-effects inference of crossed_stats (questions and training runs both sampled);
Holm's step-down correction runs across the claims of one table (Holm 1979), and each claim's
corrected interval is its interval at its Holm level, alpha / (m - rank + 1). The verdict is read
from these, in this order:
  reproduced     a published effect exists and the corrected interval lies within it +- the
                 equivalence margin (config/study.yaml, set before any run): two one-sided tests;
  supported      the Holm-adjusted p is below alpha and the effect is positive (every claim of
                 the study is of a positive effect), i.e. the corrected interval excludes 0;
  contradicted   the corrected interval lies wholly below the published effect (below 0 where
                 the study published none): our data rule out what the study claims;
  inconclusive   otherwise.
Power is that of this whole decision procedure, not of one uncorrected test: the probability that
the claim comes out supported, by simulating the family of claims at the published rates
(verdict_simulation, nuisance parameters from config/study.yaml); n for 80% is the smallest
number of questions on a fixed grid at which it reaches 80%.
"""

import math

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from huatuo_study.common import PipelineError
from huatuo_study.judging.verdicts import VERDICTS
from huatuo_study.statistics.crossed_stats import SCORES, crossed_interval, holm_levels
from huatuo_study.statistics.verdict_simulation import Nuisance, quality_for_score, simulate_scores

VERDICT_COLUMNS = ("setting", "replicate", "id", "verdict", "answer_chars", "baseline_chars")
BASELINE = "baseline"
CLAIM_VERDICTS = ("reproduced", "supported", "contradicted", "inconclusive", "not run")
COLUMNS = [
    "id",
    "claim",
    "source",
    "setting",
    "against",
    "n",
    "replicates",
    "published_effect",
    "effect",
    "ci_low",
    "ci_high",
    "published_in_ci",
    "p_value",
    "p_holm",
    "holm_level",
    "ci_holm_low",
    "ci_holm_high",
    "margin",
    "power",
    "n_for_80_power",
    "verdict",
    "reading",
]
# Questions at which n for 80% power is looked for (K as in the run); beyond the last: not reached.
N_GRID = (10, 15, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 960, 1280)
GRID_STUDIES_MIN = 200
SIMULATION_CHUNK = 50  # simulated studies at a time: bounds the memory at large n


def check_verdicts(verdicts: pd.DataFrame) -> None:
    """Every setting has the table's replicates, each with every question of the table once."""
    missing = [c for c in VERDICT_COLUMNS if c not in verdicts.columns]
    if missing:
        raise PipelineError(f"verdict table: missing columns {', '.join(missing)}")
    unknown = set(verdicts["verdict"]) - set(VERDICTS)
    if unknown:
        raise PipelineError(f"verdict table: unknown verdicts {sorted(map(str, unknown))} (expected {VERDICTS})")
    grid = pd.crosstab([verdicts["setting"], verdicts["replicate"]], verdicts["id"].astype(str))
    grid = grid.reindex(pd.MultiIndex.from_product(grid.index.levels), fill_value=0)  # absent replicates
    for (setting, replicate), counts in grid[(grid != 1).any(axis=1)].head(1).iterrows():
        lacking, twice = list(counts.index[counts == 0]), list(counts.index[counts > 1])
        problem = (
            f"misses {len(lacking)} question(s) other settings or replicates have ({', '.join(lacking[:5])})"
            if lacking
            else f"question {twice[0]} judged more than once"
        )
        raise PipelineError(f"{setting}, replicate {replicate}: {problem}")


def per_question(verdicts: pd.DataFrame, setting: str) -> np.ndarray:
    """Questions x replicates array of scores (questions in sorted id order)."""
    rows = verdicts[verdicts["setting"] == setting]
    if rows.empty:
        raise PipelineError(f"{setting}: no verdicts")
    check_verdicts(rows)
    grid = pd.DataFrame(
        {"id": rows["id"].astype(str), "replicate": rows["replicate"], "x": rows["verdict"].map(SCORES)}
    )
    return grid.pivot(index="id", columns="replicate", values="x").sort_index().to_numpy(float)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values; NaN entries stay NaN and are not part of the family."""
    p = np.asarray(pvalues, float).copy()
    given = ~np.isnan(p)
    if given.any():
        p[given] = multipletests(p[given], method="holm")[1]
    return p


def holm_adjusted(p: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values along the last axis (one family per row), for simulated studies."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, -1) * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(ranked, axis=-1), 1.0)
    out = np.empty_like(adjusted)
    np.put_along_axis(out, order, adjusted, -1)
    return out


def claim_verdict(
    effect: float, low: float, high: float, p_holm: float, published: float | None, margin: float, alpha: float
) -> str:
    """The verdict from the corrected interval [low, high] and the Holm-adjusted p (module doc)."""
    if any(math.isnan(x) for x in (effect, low, high, p_holm)):
        return "inconclusive"
    if published is not None and published - margin <= low and high <= published + margin:
        return "reproduced"
    if p_holm < alpha and effect > 0:
        return "supported"
    if high < (0.0 if published is None else published):
        return "contradicted"
    return "inconclusive"


def reading(row: dict) -> str:
    """One sentence on what the row's verdict rests on, its power explained beside it."""
    verdict, published = row["verdict"], row["published_effect"]
    interval = f"the corrected interval [{100 * row['ci_holm_low']:+.1f}, {100 * row['ci_holm_high']:+.1f}] points"
    if verdict == "not run":
        return "a setting it compares is not in this run"
    if verdict == "reproduced":
        return f"{interval} lies within the study's {100 * published:+.1f} +- {100 * row['margin']:.0f} points"
    if verdict == "supported":
        return f"{interval} excludes 0 after Holm's correction"
    if verdict == "contradicted":
        return (
            f"{interval} lies below the study's {100 * published:+.1f} points"
            if published is not None
            else f"{interval} lies below 0"
        )
    text = f"{interval} holds 0" if row["ci_holm_low"] <= 0 <= row["ci_holm_high"] else f"{interval} is not decisive"
    if published is None or row["power"] is None or math.isnan(row["power"]):
        return text + "; the study published no effect to compute a power at"
    power = row["power"]
    if power >= 0.8:
        return (
            text + f"; yet at the study's effect this procedure would come out supported with "
            f"probability {100 * power:.0f}%: our data speak against an effect that large"
        )
    n80 = row["n_for_80_power"]
    more = (
        f"{n80} questions would give 80%"
        if n80 is not None
        else f"more than {N_GRID[-1]} questions would be needed for 80%"
    )
    return text + f"; at the study's effect this procedure has power {100 * power:.0f}% only: {more}"


def _given(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _grids(verdicts: pd.DataFrame, setting: str, against: str) -> tuple[np.ndarray, np.ndarray | None]:
    return per_question(verdicts, setting), None if against == BASELINE else per_question(verdicts, against)


def _float(x) -> float:
    return float(np.asarray(x))


def claim_row(verdicts: pd.DataFrame, claim: dict, alpha: float) -> dict:
    """One claim's row before Holm (the corrected interval, verdict and power come after)."""
    for key in ("id", "setting", "against"):
        if not _given(claim.get(key)):
            raise PipelineError(f"claim {claim.get('id')!r}: missing {key}")
    setting, against = claim["setting"], claim["against"]
    row = {c: claim.get(c) for c in ("id", "claim", "source", "setting", "against", "published_effect")}
    row.update(
        n=None,
        replicates=None,
        effect=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        published_in_ci=None,
        p_value=math.nan,
        holm_level=math.nan,
        ci_holm_low=math.nan,
        ci_holm_high=math.nan,
        power=math.nan,
        n_for_80_power=None,
    )
    present = set(verdicts["setting"])
    if setting not in present or (against != BASELINE and against not in present):
        return {**row, "verdict": "not run"}
    a, b = _grids(verdicts, setting, against)
    effect, low, high, p = map(_float, crossed_interval(a, b, alpha))
    row.update(n=a.shape[0], replicates=a.shape[1], effect=effect, ci_low=low, ci_high=high, p_value=p)
    if _given(claim.get("published_effect")):
        row["published_in_ci"] = bool(low <= claim["published_effect"] <= high)
    return row


def simulation_qualities(claims: list[dict], nuisance: Nuisance) -> dict[str, float]:
    """Each compared setting's quality in the simulator: its published rate read on our measure;
    a setting compared with one whose rate is published, and itself without one (an untuned
    control), as that one (no effect: the conservative choice for the rest of the family);
    any other as good as the baseline."""
    rates = {}
    for c in claims:
        for name, rate in (
            (c["setting"], c.get("published_setting_rate")),
            (c["against"], c.get("published_against_rate")),
        ):
            if name != BASELINE and _given(rate):
                rates[name] = rate
    qualities = {name: quality_for_score(rate, nuisance) for name, rate in rates.items()}
    for c in claims:
        for name, other in ((c["setting"], c["against"]), (c["against"], c["setting"])):
            if name != BASELINE and name not in qualities:
                qualities[name] = qualities.get(other, 0.0)
    return qualities


def decision_power(
    claims: list[dict],
    n: int,
    replicates: int,
    alpha: float,
    nuisance: Nuisance,
    studies: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per claim, the simulated probability that the procedure (crossed intervals, Holm across the
    family) establishes its direction, at the published rates with n questions x replicates."""
    qualities = simulation_qualities(claims, nuisance)
    hits = np.zeros(len(claims))
    for start in range(0, studies, SIMULATION_CHUNK):
        scores = simulate_scores(rng, min(SIMULATION_CHUNK, studies - start), n, replicates, qualities, nuisance)
        estimates = [
            crossed_interval(scores[c["setting"]], None if c["against"] == BASELINE else scores[c["against"]], alpha)
            for c in claims
        ]
        effects = np.stack([e[0] for e in estimates], -1)
        p_holm = holm_adjusted(np.stack([e[3] for e in estimates], -1))
        hits += ((p_holm < alpha) & (effects > 0)).sum(0)
    return hits / studies


def power_columns(
    claims: list[dict], n: int, replicates: int, alpha: float, nuisance: Nuisance, studies: int, seed: int
) -> tuple[np.ndarray, list[int | None]]:
    """(power at n, the smallest grid n with 80%) per claim; NaN / None where the study published no effect."""
    published = np.array([_given(c.get("published_effect")) for c in claims])
    power = np.full(len(claims), np.nan)
    n80: list[int | None] = [None] * len(claims)
    if not published.any():
        return power, n80
    rng = np.random.default_rng(seed)
    power[published] = decision_power(claims, n, replicates, alpha, nuisance, studies, rng)[published]
    # A grid point only decides whether 80% is reached: a quarter of the studies tell that well
    # enough (standard error 2.5 points at 80% with 250) at a quarter of the cost.
    grid_studies = max(GRID_STUDIES_MIN, studies // 4)
    for grid_n in N_GRID:
        open_claims = [i for i in np.flatnonzero(published) if n80[i] is None]
        if not open_claims:
            break
        at_n = decision_power(claims, grid_n, replicates, alpha, nuisance, grid_studies, rng)
        for i in open_claims:
            if at_n[i] >= 0.8:
                n80[i] = grid_n
    return power, n80


def claims_table(
    verdicts: pd.DataFrame,
    claims: list[dict],
    alpha: float,
    margin: float,
    nuisance: Nuisance,
    simulations: int,
    seed: int,
) -> pd.DataFrame:
    """One row per claim (COLUMNS)."""
    check_verdicts(verdicts)
    rows = [claim_row(verdicts, claim, alpha) for claim in claims]
    p_holm, levels = holm([r["p_value"] for r in rows]), holm_levels([r["p_value"] for r in rows], alpha)
    run = [(i, c) for i, (c, r) in enumerate(zip(claims, rows)) if r.get("verdict") != "not run"]
    if run:
        power, n80 = power_columns(
            [c for _, c in run], rows[run[0][0]]["n"], rows[run[0][0]]["replicates"], alpha, nuisance, simulations, seed
        )
    for k, (i, claim) in enumerate(run):
        row = rows[i]
        a, b = _grids(verdicts, claim["setting"], claim["against"])
        _, low, high, _ = map(_float, crossed_interval(a, b, levels[i]))
        published = claim.get("published_effect") if _given(claim.get("published_effect")) else None
        row.update(
            p_holm=p_holm[i],
            holm_level=levels[i],
            ci_holm_low=low,
            ci_holm_high=high,
            power=power[k],
            n_for_80_power=n80[k],
            verdict=claim_verdict(row["effect"], low, high, p_holm[i], published, margin, alpha),
        )
    for row in rows:
        row["margin"] = margin
        row["reading"] = reading(
            {**row, "published_effect": row["published_effect"] if _given(row["published_effect"]) else None}
        )
    floats = (
        "effect",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
        "holm_level",
        "ci_holm_low",
        "ci_holm_high",
        "margin",
        "power",
    )
    return pd.DataFrame(rows, columns=COLUMNS).astype(
        {"n": "Int64", "replicates": "Int64", "n_for_80_power": "Int64", **dict.fromkeys(floats, "float64")}
    )
