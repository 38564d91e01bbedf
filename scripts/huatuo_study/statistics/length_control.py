"""Length-controlled win rate as AlpacaEval 2 computes it (Dubois et al. 2024), on one setting's
verdicts against the baseline.

  model        a logistic GLM of the preference y (win 1, tie 1/2, loss 0, as AlpacaEval scores a
               tie; an invalid verdict carries no preference and is left out) on
               tanh(length difference / its sd) (the setting's answer minus the baseline's, in
               characters, as AlpacaEval's code measures them; sd with ddof 1 over the fitted
               verdicts) and, where the data allow, an instruction term: one coefficient on the
               question's difficulty, the logit of how well the other settings do against the
               baseline on it, (their scores + 1/2) / (their verdicts + 1). AlpacaEval takes that
               difficulty from its leaderboard's models; here the other settings are the
               leaderboard, and a setting's own verdicts never enter its own covariate. The term
               keeps the length coefficient from absorbing question difficulty (hard questions
               may draw longer answers). Fitted by maximum likelihood, unpenalised: AlpacaEval's
               L1 penalty, tuned by cross-validation, and its regularisation towards "gamed"
               baselines need data we do not have. The data allow the instruction term where
               the difficulty varies, the fit with it does not separate and enough of its
               resamples can be fitted for an interval; otherwise the model goes without it.
  LC win rate  the model's mean predicted preference over the fitted verdicts with the length
               term at 0 (equal lengths). It is on the scale of (wins + ties/2) / valid verdicts.
  interval     95% percentile interval from a bootstrap that draws questions and, crossed with
               them, whole replicates, with replacement (a replicate is one adapter answering
               every question, so seed noise belongs in the interval), refitting everything,
               the length scale included.
  suppressed   (None and a reason) where equal length lies outside the data (fewer than
               MIN_SIDE_SHARE of the verdicts on one side of it: the value would be an
               extrapolation), or where the fit separates (no finite maximum-likelihood estimate,
               e.g. every verdict a win). The interval alone is suppressed where fewer than
               MIN_FITTED_SHARE of the resamples can be fitted.
"""

import math

import numpy as np
from scipy.special import expit

from huatuo_study.common import PipelineError

SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0, "invalid": math.nan}
MIN_SIDE_SHARE = 0.10
MIN_FITTED_SHARE = 0.95
MAX_ITER = 100
MAX_STEP = 5.0  # damps Newton's first steps; near the optimum steps are far smaller
GRAD_TOL = 1e-12  # of the score per unit weight
SEPARATED_ETA = 15.0  # a fitted probability within 3e-7 of 0 or 1: the estimate is running off


def question_difficulty(other_scores: dict[str, list[float]]) -> dict[str, float]:
    """Question id -> logit of (scores + 1/2) / (verdicts + 1) of the other settings on it
    (valid verdicts only); the smoothing keeps a question every setting wins finite."""
    out = {}
    for q, scores in other_scores.items():
        s = [x for x in scores if not math.isnan(x)]
        p = (sum(s) + 0.5) / (len(s) + 1)
        out[q] = math.log(p / (1 - p))
    return out


def equal_length_note(diff: np.ndarray) -> str | None:
    """Why equal length lies outside these length differences, or None where it does not."""
    if diff.size == 0:
        return "no valid verdicts"
    # An answer as long as the baseline's counts on both sides; counts, not 1 - share: 9 of 10
    # shorter must leave exactly 10%.
    n = diff.size
    if np.count_nonzero(diff >= 0) < MIN_SIDE_SHARE * n:
        return f"equal length outside the data: {100 * np.mean(diff < 0):.0f}% of the answers are shorter than the baseline's"
    if np.count_nonzero(diff <= 0) < MIN_SIDE_SHARE * n:
        return f"equal length outside the data: {100 * np.mean(diff > 0):.0f}% of the answers are longer than the baseline's"
    return None


def length_term(diff: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """tanh(diff / sd) row-wise over a batch (B x n), sd with ddof 1 over the rows of weight 1;
    a batch row whose lengths do not vary gets 0 (no length information)."""
    count = weight.sum(-1, keepdims=True)
    mean = (weight * diff).sum(-1, keepdims=True) / count
    var = (weight * (diff - mean) ** 2).sum(-1, keepdims=True) / np.maximum(count - 1, 1)
    sd = np.sqrt(var)
    return np.tanh(np.divide(diff, sd, out=np.zeros_like(diff, dtype=float), where=sd > 0))


def fit_logit(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted logistic regression of y in [0, 1] on x, by Newton's method, for a batch:
    x B x n x p, y and weight B x n. (coefficients B x p, fitted B): fitted is False where the
    fit separates or does not converge. A ridge of 1e-9 on the Hessian only scales steps (the
    fixed point, a zero score, is the maximum-likelihood one) and lets a design that is not of
    full rank in a resample (a covariate constant there) be solved: its predictions are still the
    maximum-likelihood ones."""
    b, _, p = x.shape
    beta = np.zeros((b, p))
    converged = np.zeros(b, bool)
    active = np.arange(b)  # neither converged nor running off
    ridge = 1e-9 * np.eye(p)
    for _ in range(MAX_ITER):
        xa, wa = x[active], weight[active]
        eta = (xa @ beta[active, :, None])[..., 0]
        mu = expit(eta)
        grad = (xa.transpose(0, 2, 1) @ (wa * (y[active] - mu))[..., None])[..., 0]
        hess = xa.transpose(0, 2, 1) @ (xa * (wa * mu * (1 - mu))[..., None])
        # Converged on the score, not the step: along a direction the design cannot see, the ridge
        # turns rounding noise into steps that change no prediction.
        done = np.abs(grad).max(-1, initial=0.0) < GRAD_TOL * wa.sum(-1)
        converged[active] = done
        step = np.linalg.solve(hess + ridge, grad[..., None])[..., 0]
        size = np.abs(step).max(-1, initial=0.0)
        step *= np.minimum(1.0, MAX_STEP / np.maximum(size, 1e-300))[:, None]
        beta[active] += np.where(done[:, None], 0.0, step)
        running_off = np.abs(np.where(wa > 0, eta, 0)).max(-1, initial=0.0) > 2 * SEPARATED_ETA
        active = active[~(done | running_off | ~np.isfinite(size))]
        if active.size == 0:
            break
    eta = (x @ beta[..., None])[..., 0]
    extreme = np.abs(np.where(weight > 0, eta, 0)).max(-1, initial=0.0) > SEPARATED_ETA
    return beta, converged & ~extreme & np.isfinite(beta).all(-1)


def _design(diff: np.ndarray, weight: np.ndarray, difficulty: np.ndarray | None, with_length: bool) -> np.ndarray:
    """B x n x p: a constant, the length term (with_length), the difficulty (given)."""
    columns = [np.ones_like(diff, dtype=float)]
    if with_length:
        columns.append(length_term(diff, weight))
    if difficulty is not None:
        columns.append(difficulty)
    return np.stack(columns, axis=-1)


def lc_rates(
    y: np.ndarray, diff: np.ndarray, weight: np.ndarray, difficulty: np.ndarray | None, with_length: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(LC win rate, fitted) per batch row: the mean prediction over the rows of weight 1 with
    the length term at 0 (column 1 of the design)."""
    x = _design(diff, weight, difficulty, with_length)
    beta, fitted = fit_logit(x, y, weight)
    at_equal_length = x.copy()
    if with_length:
        at_equal_length[..., 1] = 0.0
    p = expit(np.einsum("bnp,bp->bn", at_equal_length, beta))
    return (weight * p).sum(-1) / weight.sum(-1), fitted


def _check_grid(scores: np.ndarray, diff: np.ndarray, difficulty: np.ndarray | None) -> None:
    scores, diff = np.asarray(scores, float), np.asarray(diff, float)
    if scores.ndim != 2 or scores.shape != diff.shape:
        raise PipelineError(
            f"length control: expected questions x replicates arrays of scores and length "
            f"differences of one shape, got {scores.shape} and {diff.shape}"
        )
    if difficulty is not None and np.shape(difficulty) != scores.shape[:1]:
        raise PipelineError(f"length control: {np.size(difficulty)} difficulties for {scores.shape[0]} questions")
    bad = ~np.isnan(scores) & ~np.isin(scores, (0.0, 0.5, 1.0))
    if bad.any():
        raise PipelineError(f"length control: scores must be 0, 1/2, 1 or NaN, got {float(scores[bad][0])}")


def _rows(scores, diff, difficulty, questions, replicates):
    """Batch arrays (y, diff, weight, difficulty) of the resamples drawn: questions B x Q and
    replicates B x K, crossed; missing or invalid verdicts get weight 0."""
    y = scores[questions[:, :, None], replicates[:, None, :]]
    d = diff[questions[:, :, None], replicates[:, None, :]]
    b = y.shape[0]
    weight = (~np.isnan(y)).astype(float).reshape(b, -1)
    h = None if difficulty is None else np.broadcast_to(difficulty[questions][:, :, None], y.shape).reshape(b, -1)
    return np.nan_to_num(y).reshape(b, -1), np.nan_to_num(d).reshape(b, -1), weight, h


def _point(scores, diff, difficulty, with_length: bool) -> float | None:
    """The LC win rate fitted on every verdict; None where the fit separates."""
    q, k = scores.shape
    y, d, w, h = _rows(scores, diff, difficulty, np.arange(q)[None], np.arange(k)[None])
    rate, fitted = lc_rates(y, d, w, h, with_length)
    return float(rate[0]) if fitted[0] else None


def _share(share: float) -> str:
    return f"{np.floor(1000 * share) / 10:g}%"  # floored: 94.96% must not print as 95%


def _choose_model(scores, diff, difficulty, with_length: bool, n_boot: int, seed: int):
    """((rate, low, high, share fitted), note) of the model used, or (None, reason): with the
    instruction term first, without it where that fit separates or has no interval."""
    tried = []
    for h in [difficulty, None] if difficulty is not None else [None]:
        rate = _point(scores, diff, h, with_length)
        tried.append(None if rate is None else (rate, *lc_interval(scores, diff, h, with_length, n_boot, seed)))
        if tried[-1] is not None and tried[-1][1] is not None:
            break
    fitted = [t for t in tried if t is not None]
    if not fitted:
        return None, "the fit separates (no finite estimate: e.g. every verdict one way)"
    chosen = next((t for t in fitted if t[1] is not None), fitted[0])
    if difficulty is None or chosen is tried[0]:
        return chosen, None
    return chosen, "no instruction term: with it " + (
        "the fit separates" if tried[0] is None else f"only {_share(tried[0][3])} of the resamples could be fitted"
    )


def length_controlled_win_rate(scores, diff, difficulty=None, n_boot: int = 2000, seed: int = 0) -> dict:
    """{lc_win_rate, lc_ci_low, lc_ci_high, lc_note} of one setting. scores: questions x
    replicates of 1 (win), 0.5 (tie), 0 (loss) or NaN (invalid or missing); diff: the length
    differences (setting minus baseline) of the same cells; difficulty: per question, or None
    for no instruction term. The term is used where the data allow it: where it varies, the
    fit with it does not separate and enough resamples can be fitted for an interval;
    otherwise the model without it is (lc_note says why)."""
    _check_grid(scores, diff, difficulty)
    scores, diff = np.asarray(scores, float), np.asarray(diff, float)
    if difficulty is not None:
        difficulty = np.asarray(difficulty, float)
        used = difficulty[~np.isnan(scores).all(1)]
        if used.size == 0 or used.min() == used.max():
            difficulty = None  # one value: the intercept's
    if n_boot < 1:
        raise PipelineError(f"length control: n_boot must be positive, got {n_boot}")
    empty = {"lc_win_rate": None, "lc_ci_low": None, "lc_ci_high": None}
    valid_diff = diff[~np.isnan(scores)]
    reason = equal_length_note(valid_diff)
    if reason:
        return {**empty, "lc_note": reason}
    with_length = bool(np.ptp(valid_diff) > 0)
    chosen, note = _choose_model(scores, diff, difficulty, with_length, n_boot, seed)
    if chosen is None:
        return {**empty, "lc_note": note}
    rate, low, high, share = chosen
    notes = [note] if note else []
    if not with_length:
        notes.append("every answer as long as the baseline's: no length term")
    if low is None:
        notes.append(f"no interval: {_share(share)} of the resamples could be fitted")
    return {"lc_win_rate": rate, "lc_ci_low": low, "lc_ci_high": high, "lc_note": "; ".join(notes) or None}


def lc_interval(scores, diff, difficulty, with_length: bool, n_boot: int, seed: int):
    """(low, high, share of resamples fitted); low and high None where that share is below
    MIN_FITTED_SHARE."""
    q, k = scores.shape
    rng = np.random.default_rng(seed)
    questions, replicates = rng.integers(0, q, size=(n_boot, q)), rng.integers(0, k, size=(n_boot, k))
    # Chunks bound the memory; the draws above are made at once, so the seed alone fixes them.
    chunk = max(1, 1_000_000 // (q * k * 3))
    rates, fitted = [], []
    for start in range(0, n_boot, chunk):
        part = slice(start, start + chunk)
        y, d, w, h = _rows(scores, diff, difficulty, questions[part], replicates[part])
        has_rows = w.sum(-1) > 0
        w = np.where(has_rows[:, None], w, 1.0)  # a resample of invalid verdicts only: fitted False below
        r, f = lc_rates(y, d, w, h, with_length)
        rates.append(r)
        fitted.append(f & has_rows)
    rates, fitted = np.concatenate(rates), np.concatenate(fitted)
    share = float(fitted.mean())
    if share < MIN_FITTED_SHARE:
        return None, None, share
    low, high = np.percentile(rates[fitted], [2.5, 97.5])
    return float(low), float(high), share
