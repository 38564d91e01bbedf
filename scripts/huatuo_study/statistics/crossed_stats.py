"""Inference on verdict scores crossed by questions and replicates.

Every replicate of a setting (one training run, its answers) answers every question, so a
setting's scores form a questions x replicates grid, and the target of inference is the recipe:
a new run on new questions. The mean score then varies with the questions drawn and with the runs
drawn, and both belong in its variance. With the two-way random-effects model
y[q, r] = mu + question_q + run_r + residual (crossed, balanced) the variance of the grand mean is
var(question)/Q + var(run)/K + var(residual)/(QK), estimated from the ANOVA mean squares by the
method of moments (Searle, Casella and McCulloch 1992, ch. 4; for a single setting this equals
the REML fit of the crossed model while its components are positive, tests/test_crossed_stats.py):

  run part        MS_run / (QK) for each setting compared (the runs of two settings are
                  independent training runs, not paired by index), with K - 1 degrees of
                  freedom. MS_run also carries the residual once, which the question part gives
                  back: the two parts sum to the unbiased moment estimate. Left whole, the run
                  part is never cut to 0 by chance (with K = 3 runs it has 2 df, and cutting it
                  is what makes such intervals undercover), and the question part, known to
                  Q - 1 df, absorbs the subtraction;
  question part   the variance of the per-question differences over the questions, / Q, minus
                  the residual mean squares / (QK), with Q - 1 degrees of freedom (for two
                  settings the questions are shared: paired); floored at 1 / (4 Q^2), the part
                  one question half a point away from the rest would give, so that a grid
                  without variation (all wins) still gets an interval;
  interval        half-width sqrt(t(Q-1)^2 question part + t(K-1)^2 run part): each part with
                  its own t quantile, as the modified large-sample method combines variance
                  parts (Graybill and Wang 1980); a pooled Satterthwaite df grows exactly when
                  the run part is small by chance, and then undercovers. Against the baseline the
                  interval is built on the logit of the mean score (the delta method; a score of
                  0 or 1 taken half a question inside) and mapped back, which keeps it inside
                  [0, 1] and its coverage near a rate of 0 or 1; between two settings on the
                  difference. bench/inference_calibration.py measures the coverage;
  p-value         the interval's dual: the alpha at which the interval just reaches no effect.

With one replicate the run part cannot be estimated and the interval holds the questions'
sampling alone.

Functions take arrays whose last two axes are questions x replicates, so that the simulation
tests run thousands of studies at once through the same code as the claims table.
"""

import numpy as np
from scipy import stats
from scipy.special import expit, logit

from huatuo_study.common import PipelineError

# The measure of every comparison: a verdict's score, a tie (or an unparseable verdict: no
# preference) counting half a win. Against the baseline no effect is a score of 1/2.
SCORES = {"win": 1.0, "tie": 0.5, "loss": 0.0, "invalid": 0.5}
NO_EFFECT_SCORE = 0.5


def _check(a: np.ndarray, b: np.ndarray | None) -> None:
    if a.ndim < 2 or a.shape[-2] < 2 or a.shape[-1] < 1:
        raise PipelineError(
            f"crossed inference: expected questions x replicates with at least 2 questions, got {a.shape}"
        )
    if b is not None and b.shape != a.shape:
        raise PipelineError(
            f"crossed inference: the two settings' grids differ in questions or replicates ({a.shape} and {b.shape})"
        )


def _mean_squares(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MS_run, MS_residual) of a [..., questions, replicates] grid; 0 and 0 with one replicate."""
    q, k = y.shape[-2:]
    if k < 2:
        zero = np.zeros(y.shape[:-2])
        return zero, zero
    rows, cols, grand = y.mean(-1), y.mean(-2), y.mean((-2, -1))
    residual = y - rows[..., None] - cols[..., None, :] + grand[..., None, None]
    return q * cols.var(-1, ddof=1), (residual**2).sum((-2, -1)) / ((q - 1) * (k - 1))


def variance_parts(a, b=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(effect, question part, run part) of mean(a) - mean(b), or of mean(a) - 1/2 when b is
    None; a and b are [..., questions, replicates] score grids."""
    a = np.asarray(a, float)
    b = None if b is None else np.asarray(b, float)
    _check(a, b)
    q, k = a.shape[-2:]
    d = a.mean(-1) - (NO_EFFECT_SCORE if b is None else b.mean(-1))
    run_part, residual_part = np.zeros(a.shape[:-2]), np.zeros(a.shape[:-2])
    for grid in (a,) if b is None else (a, b):
        ms_run, ms_res = _mean_squares(grid)
        run_part, residual_part = run_part + ms_run / (q * k), residual_part + ms_res / (q * k)
    question_part = np.maximum(d.var(-1, ddof=1) / q - residual_part, 1 / (4 * q**2))
    return d.mean(-1), question_part, run_part


def _half_width(alpha, question_part, run_part, q: int, k: int):
    half = np.where(question_part > 0, stats.t.isf(alpha / 2, q - 1) ** 2 * question_part, 0.0)
    if k > 1:
        half = half + np.where(run_part > 0, stats.t.isf(alpha / 2, k - 1) ** 2 * run_part, 0.0)
    return np.sqrt(half)


def _dual_p(distance, question_part, run_part, q: int, k: int) -> np.ndarray:
    """The alpha at which the half-width equals `distance` (the half-width falls as alpha grows):
    bisection on log10(alpha), to a relative precision far below any reported digit."""
    low, high = np.full(np.shape(distance), -100.0), np.zeros(np.shape(distance))
    for _ in range(60):
        mid = (low + high) / 2
        wider = _half_width(10.0**mid, question_part, run_part, q, k) >= distance
        low, high = np.where(wider, mid, low), np.where(wider, high, mid)
    return 10.0 ** ((low + high) / 2)


def crossed_interval(a, b=None, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(effect, low, high, p) at level 1 - alpha: a's mean score minus b's, or minus 1/2."""
    if not 0 < alpha < 1:
        raise PipelineError(f"crossed inference: alpha must lie in (0, 1), got {alpha}")
    effect, question_part, run_part = variance_parts(a, b)
    q, k = np.shape(a)[-2:]
    if b is None:
        edge = 1 / (2 * q)
        score = np.clip(effect + NO_EFFECT_SCORE, edge, 1 - edge)
        slope = score * (1 - score)  # d score / d logit
        centre, parts = logit(score), (question_part / slope**2, run_part / slope**2)
        half = _half_width(alpha, *parts, q, k)
        low = np.minimum(expit(centre - half) - NO_EFFECT_SCORE, effect)
        high = np.maximum(expit(centre + half) - NO_EFFECT_SCORE, effect)
    else:
        centre, parts = effect, (question_part, run_part)
        half = _half_width(alpha, *parts, q, k)
        low, high = np.clip(effect - half, -1, 1), np.clip(effect + half, -1, 1)
    return effect, low, high, _dual_p(np.abs(centre), *parts, q, k)


def holm_levels(p_values, alpha: float) -> np.ndarray:
    """Each p-value's level in Holm's step-down procedure: alpha / (m - rank + 1), rank 1 for the
    smallest p (ties in input order); NaN where p is NaN (not part of the family)."""
    p = np.asarray(p_values, float)
    levels = np.full(p.shape, np.nan)
    given = np.flatnonzero(~np.isnan(p))
    order = given[np.argsort(p[given], kind="stable")]
    for rank, index in enumerate(order):
        levels[index] = alpha / (len(order) - rank)
    return levels
