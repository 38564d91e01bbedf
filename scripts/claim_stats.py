"""Statistics of the claims table: which of the study's claims our verdicts support.

One judge on one test set at a time; a verdict table has columns setting, replicate, id,
verdict (win/tie/loss/invalid, the setting's answer against the baseline's), answer_chars and
baseline_chars, and holds every question in every replicate of every setting (check_verdicts).
A win indicator is 1 for a win, else 0 (ties and invalid verdicts are non-wins, as in the
study's win rate); a score is win 1, tie 0.5, loss 0, invalid 0.5 (no preference).

  effect, ci      difference of win rates (a minus b, or a minus 0.5 against the baseline),
                  with a 95% percentile interval from a two-level bootstrap: questions resampled
                  with replacement (the same draw for both settings: paired), then each drawn
                  question's replicates resampled with replacement, so that the interval holds
                  both question sampling and seed noise; resampling both levels errs on the
                  wide side (Davison and Hinkley 1997, sec. 3.8).
  p_value         two-sided Wilcoxon signed-rank test of the per-question differences of mean
                  scores (a's minus b's, or minus 0.5), scipy, Pratt's treatment of zeros.
  p_holm          Holm's step-down adjustment across the claims of one table (Holm 1979).
  power           power of that test at the published rates, approximated by the one-sample
                  t-test on per-question win differences (statsmodels TTestPower).
  LC win rate     AlpacaEval 2's length control in its simplest form (Dubois et al. 2024): a
                  logistic regression of the win on the answer-length difference; the predicted
                  win rate at equal lengths.
  kappa           Cohen's kappa of two judges' win/tie/loss verdicts with its 95% interval
                  (statsmodels, Fleiss, Cohen and Everitt 1969 standard error).
"""

import math
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.stats import wilcoxon
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.tools.sm_exceptions import ModelWarning, PerfectSeparationError

from common import PipelineError
from verdicts import VERDICTS

SCORES = {"win": 1.0, "tie": 0.5, "loss": 0.0, "invalid": 0.5}
KAPPA_CATEGORIES = ("win", "tie", "loss")
VERDICT_COLUMNS = ("setting", "replicate", "id", "verdict", "answer_chars", "baseline_chars")
BASELINE = "baseline"
COLUMNS = [
    "id", "claim", "source", "setting", "against", "n", "replicates", "published_effect", "effect",
    "ci_low", "ci_high", "published_in_ci", "p_value", "p_holm", "power", "n_for_80_power", "verdict",
]


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
        problem = (f"misses {len(lacking)} question(s) other settings or replicates have ({', '.join(lacking[:5])})"
                   if lacking else f"question {twice[0]} judged more than once")
        raise PipelineError(f"{setting}, replicate {replicate}: {problem}")


def per_question(verdicts: pd.DataFrame, setting: str, value: str = "win") -> np.ndarray:
    """Questions x replicates array (questions in sorted id order) of win indicators or scores."""
    if value not in ("win", "score"):
        raise PipelineError(f"value: expected 'win' or 'score', got {value!r}")
    rows = verdicts[verdicts["setting"] == setting]
    if rows.empty:
        raise PipelineError(f"{setting}: no verdicts")
    check_verdicts(rows)
    x = rows["verdict"].map(SCORES) if value == "score" else (rows["verdict"] == "win").astype(float)
    grid = pd.DataFrame({"id": rows["id"].astype(str), "replicate": rows["replicate"], "x": x})
    return grid.pivot(index="id", columns="replicate", values="x").sort_index().to_numpy(float)


def _resampled_means(x: np.ndarray, questions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    replicates = rng.integers(0, x.shape[1], size=questions.shape + (x.shape[1],))
    return x[questions[..., None], replicates].mean(axis=(1, 2))


def bootstrap_difference(a: np.ndarray, b: np.ndarray | None, n_boot: int = 10_000,
                         seed: int = 0) -> tuple[float, float, float]:
    """(effect, low, high): win rate of a minus b's (b None: minus 0.5), 95% two-level bootstrap."""
    a, b = np.asarray(a, float), None if b is None else np.asarray(b, float)
    if a.ndim != 2 or a.size == 0 or (b is not None and (b.ndim != 2 or b.size == 0 or len(b) != len(a))):
        raise PipelineError(f"bootstrap: expected questions x replicates arrays on the same questions, "
                            f"got {a.shape} and {None if b is None else b.shape}")
    if n_boot < 1:
        raise PipelineError(f"bootstrap: n_boot must be positive, got {n_boot}")
    effect = a.mean() - (0.5 if b is None else b.mean())
    rng = np.random.default_rng(seed)
    # Chunks bound the memory; their size depends on the shapes alone, so the seed fixes the result.
    chunk = max(1, 2_000_000 // (a.size + (0 if b is None else b.size)))
    diffs = []
    for start in range(0, n_boot, chunk):
        questions = rng.integers(0, a.shape[0], size=(min(chunk, n_boot - start), a.shape[0]))
        against = 0.5 if b is None else _resampled_means(b, questions, rng)
        diffs.append(_resampled_means(a, questions, rng) - against)
    low, high = np.percentile(np.concatenate(diffs), [2.5, 97.5])
    return float(effect), float(low), float(high)


def paired_test(a_scores: np.ndarray, b_scores: np.ndarray | None = None) -> float:
    """Two-sided Wilcoxon signed-rank p of per-question mean-score differences (b None: 0.5).

    Pratt's zeros: a question both settings score alike (common: both lose it) keeps its rank,
    so small differences still rank as small among all the questions, and scipy corrects the
    normal approximation for the zeros (Cureton 1967); 'zsplit' would count those ranks as
    evidence on both sides, inflating the variance. scipy's method='auto': exact without ties,
    sign-flip permutations up to 13 questions with ties, else the normal approximation."""
    a = np.asarray(a_scores, float)
    if b_scores is not None and np.shape(b_scores)[0] != a.shape[0]:
        raise PipelineError(f"paired test: {a.shape[0]} and {np.shape(b_scores)[0]} questions")
    d = a.mean(axis=1) - (0.5 if b_scores is None else np.asarray(b_scores, float).mean(axis=1))
    if not np.any(d):
        return 1.0
    return float(wilcoxon(d, zero_method="pratt", alternative="two-sided").pvalue)


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values; NaN entries stay NaN and are not part of the family."""
    p = np.asarray(pvalues, float).copy()
    given = ~np.isnan(p)
    if given.any():
        p[given] = multipletests(p[given], method="holm")[1]
    return p


def _standardised(p_against: float | None, p_setting: float) -> tuple[float, float]:
    rates = [p_setting] + ([] if p_against is None else [p_against])
    if any(not 0 <= r <= 1 for r in rates):
        raise PipelineError(f"power: rates must lie in [0, 1], got {rates}")
    effect = p_setting - (0.5 if p_against is None else p_against)
    return effect, math.sqrt(sum(r * (1 - r) for r in rates))


def power(n: int, p_against: float | None, p_setting: float, alpha: float = 0.05) -> float:
    """Approximate power of the paired test with n questions at the given win rates.

    The one-sample t-test on per-question win differences (statsmodels TTestPower, two-sided,
    alpha unadjusted) with d = effect / sd, sd from independent wins (p_against None: against
    the baseline, null rate 0.5, sd = sqrt(p(1-p))). Approximate twice over: the signed-rank
    test's asymptotic relative efficiency to the t-test is at least 0.864 (Hodges and Lehmann
    1956; 3/pi for normal data), and settings sharing a base model win positively correlated,
    which lowers the true sd, so the independence sd understates power (conservative)."""
    effect, sd = _standardised(p_against, p_setting)
    if sd == 0:
        return 1.0 if effect else math.nan
    if n < 2:
        return math.nan
    return float(TTestPower().power(effect_size=effect / sd, nobs=n, alpha=alpha, alternative="two-sided"))


def n_for_power(p_against: float | None, p_setting: float, alpha: float = 0.05, target: float = 0.8) -> float:
    """Questions needed for `target` power (power()'s approximation), rounded up; NaN at no effect."""
    effect, sd = _standardised(p_against, p_setting)
    if effect == 0:
        return math.nan
    if sd == 0:
        return 2  # the smallest n power() is defined at; it is 1.0 there
    n = max(2, math.ceil(TTestPower().solve_power(effect_size=effect / sd, alpha=alpha, power=target)))
    while n > 2 and power(n - 1, p_against, p_setting, alpha) >= target:  # the solver's tolerance
        n -= 1
    while power(n, p_against, p_setting, alpha) < target:
        n += 1
    return n


def length_controlled_win_rate(wins, length_diff) -> float | None:
    """Predicted win rate at equal lengths from a logistic regression of the win indicator on
    length_diff / sd(length_diff) (sd 0: the raw rate); None on (quasi-)separation."""
    y, x = np.asarray(wins, float), np.asarray(length_diff, float)
    if y.shape != x.shape or y.ndim != 1:
        raise PipelineError(f"length control: {y.shape} wins for {x.shape} length differences")
    if y.size == 0 or y.min() == y.max():
        return None  # all wins or none: the intercept is infinite
    sd = x.std(ddof=1)
    if sd == 0:
        return float(y.mean())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ModelWarning)  # separation, no convergence, singular Hessian
            warnings.simplefilter("error", RuntimeWarning)  # overflow in exp on the way to separation
            fit = sm.Logit(y, sm.add_constant(x / sd)).fit(disp=0)
    except (ModelWarning, RuntimeWarning, PerfectSeparationError, np.linalg.LinAlgError):
        return None
    return float(1 / (1 + math.exp(-fit.params[0])))


def cohens_kappa_three_way(labels_a, labels_b) -> tuple[float, float, float, int]:
    """(kappa, low, high, n) of two judges' win/tie/loss verdicts; pairs with an invalid dropped."""
    a, b = pd.Series(list(labels_a), dtype=object), pd.Series(list(labels_b), dtype=object)
    if len(a) != len(b):
        raise PipelineError(f"kappa: {len(a)} verdicts of one judge, {len(b)} of the other")
    unknown = (set(a) | set(b)) - set(VERDICTS)
    if unknown:
        raise PipelineError(f"kappa: unknown verdicts {sorted(map(str, unknown))}")
    keep = (a != "invalid") & (b != "invalid")
    cats = pd.CategoricalDtype(KAPPA_CATEGORIES)
    table = pd.crosstab(a[keep].astype(cats), b[keep].astype(cats), dropna=False).to_numpy(float)
    n = int(table.sum())
    # One category used by both judges alone: chance agreement is 1 and kappa is 0/0.
    if n < 2 or math.isclose(table.sum(0) @ table.sum(1), n * n):
        return math.nan, math.nan, math.nan, n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = cohens_kappa(table)
    return float(result.kappa), float(result.kappa_low), float(result.kappa_upp), n


def _given(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def claim_row(verdicts: pd.DataFrame, claim: dict, alpha: float, n_boot: int, seed: int) -> dict:
    """One claim's row before Holm (p_holm, verdict filled in by claims_table)."""
    for key in ("id", "setting", "against"):
        if not _given(claim.get(key)):
            raise PipelineError(f"claim {claim.get('id')!r}: missing {key}")
    setting, against = claim["setting"], claim["against"]
    row = {c: claim.get(c) for c in ("id", "claim", "source", "setting", "against", "published_effect")}
    row.update(n=None, replicates=None, effect=math.nan, ci_low=math.nan, ci_high=math.nan,
               published_in_ci=None, p_value=math.nan, power=math.nan, n_for_80_power=math.nan)
    present = set(verdicts["setting"])
    if setting not in present or (against != BASELINE and against not in present):
        return {**row, "verdict": "not run"}
    a, a_scores = per_question(verdicts, setting), per_question(verdicts, setting, "score")
    b, b_scores = (None, None) if against == BASELINE else (
        per_question(verdicts, against), per_question(verdicts, against, "score"))
    effect, low, high = bootstrap_difference(a, b, n_boot, seed)
    row.update(n=a.shape[0], replicates=a.shape[1], effect=effect, ci_low=low, ci_high=high,
               p_value=paired_test(a_scores, b_scores))
    if _given(claim.get("published_effect")):
        row["published_in_ci"] = bool(low <= claim["published_effect"] <= high)
    p_against = None if against == BASELINE else claim.get("published_against_rate")
    p_setting = claim.get("published_setting_rate")
    if _given(p_setting) and (against == BASELINE or _given(p_against)):
        row["power"] = power(a.shape[0], p_against, p_setting, alpha)
        row["n_for_80_power"] = n_for_power(p_against, p_setting, alpha)
    return row


def claim_verdict(effect: float, p_holm: float, alpha: float) -> str:
    """Every claim of the study is of a positive effect: significance decides which way."""
    if math.isnan(p_holm) or p_holm >= alpha:
        return "inconclusive"
    return "supported" if effect > 0 else "contradicted" if effect < 0 else "inconclusive"


def claims_table(verdicts: pd.DataFrame, claims: list[dict], alpha: float = 0.05,
                 n_boot: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """One row per claim (COLUMNS); every claim's bootstrap starts from `seed`."""
    check_verdicts(verdicts)
    rows = [claim_row(verdicts, claim, alpha, n_boot, seed) for claim in claims]
    p_holm = holm([r["p_value"] for r in rows])
    for row, p in zip(rows, p_holm):
        row["p_holm"] = p
        if row.get("verdict") != "not run":
            row["verdict"] = claim_verdict(row["effect"], p, alpha)
    floats = ("effect", "ci_low", "ci_high", "p_value", "p_holm", "power")
    return pd.DataFrame(rows, columns=COLUMNS).astype(
        {"n": "Int64", "replicates": "Int64", "n_for_80_power": "Int64", **dict.fromkeys(floats, "float64")})
