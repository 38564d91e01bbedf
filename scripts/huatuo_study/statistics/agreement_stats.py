"""Agreement of two judges' verdicts on an ordered scale, loss < tie < win (invalid dropped).

  weighted kappa   Cohen's kappa with linear disagreement weights |i - j| / 2 (Cohen 1968): a
                   win judged a loss by the other judge counts twice a win judged a tie. Linear,
                   not quadratic: a three-point ordinal scale says a tie lies between the two
                   outcomes, not how far; quadratic weights make a one-step miss a quarter of a
                   reversal, an interval-scale reading (quadratic kappa is an intraclass
                   correlation, Fleiss and Cohen 1973).
  alpha            Krippendorff's alpha, ordinal (the krippendorff package): the judges are
                   interchangeable, so a judge that ties more often than the other loses
                   agreement, which kappa, with one margin per judge, forgives.
  intervals        95% percentile intervals from a bootstrap over questions: a question's
                   verdict pairs (every setting and replicate) are drawn together, since a hard
                   question moves them all (a cluster bootstrap).

Both statistics depend on the verdicts only through the 3x3 table of the two judges' labels, so
a resample is a sum of per-question tables."""

import math

import krippendorff
import numpy as np

from huatuo_study.common import PipelineError

ORDER = ("loss", "tie", "win")  # index = rank on the ordered scale
LABELS = (*ORDER, "invalid")


def _check_labels(labels_a: list, labels_b: list, questions: list) -> None:
    if not len(labels_a) == len(labels_b) == len(questions):
        raise PipelineError(
            f"agreement: {len(labels_a)} verdicts of one judge, {len(labels_b)} of the other, "
            f"{len(questions)} question ids"
        )
    unknown = (set(labels_a) | set(labels_b)) - set(LABELS)
    if unknown:
        raise PipelineError(f"agreement: unknown verdicts {sorted(map(str, unknown))} (expected {', '.join(LABELS)})")


def question_tables(labels_a: list, labels_b: list, questions: list) -> tuple[list, np.ndarray]:
    """(question ids in first-seen order, questions x 3 x 3 counts): rows judge a's rank, columns
    judge b's, pairs with an invalid verdict left out."""
    _check_labels(labels_a, labels_b, questions)
    ids = list(dict.fromkeys(map(str, questions)))
    index = {q: i for i, q in enumerate(ids)}
    tables = np.zeros((len(ids), 3, 3))
    for x, y, q in zip(labels_a, labels_b, questions):
        if "invalid" not in (x, y):
            tables[index[str(q)], ORDER.index(x), ORDER.index(y)] += 1
    return ids, tables


def weighted_kappa(table: np.ndarray) -> np.ndarray:
    """Linear-weighted kappa of a 3x3 table, or of a stack (..., 3, 3); NaN where chance
    disagreement is 0 (both judges using one category alone) or the table is empty."""
    t = np.asarray(table, float)
    n = t.sum(axis=(-2, -1))
    w = np.abs(np.subtract.outer(np.arange(3), np.arange(3))) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        p = t / n[..., None, None]
        expected = p.sum(-1)[..., :, None] * p.sum(-2)[..., None, :]
        observed_d, expected_d = (w * p).sum(axis=(-2, -1)), (w * expected).sum(axis=(-2, -1))
        return np.where(expected_d > 0, 1 - observed_d / expected_d, np.nan)


def ordinal_alpha(table: np.ndarray) -> float:
    """Krippendorff's ordinal alpha of a 3x3 table (each count a unit both judges labelled); NaN
    where it is undefined (fewer than two units, or one value alone)."""
    t = np.asarray(table, float)
    if t.sum() < 2 or np.count_nonzero(t.sum(0) + t.sum(1)) < 2:
        return math.nan
    # One unit per counted pair: its value counts are one of each judge's rank.
    units = np.eye(3)[:, None, :] + np.eye(3)[None, :, :]
    value_counts = np.repeat(units.reshape(9, 3), t.reshape(9).astype(int), axis=0)
    return float(krippendorff.alpha(value_counts=value_counts, level_of_measurement="ordinal"))


def bootstrap_tables(tables: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """n_boot x 3 x 3: the tables of n_boot resamples of the questions, drawn with replacement."""
    if n_boot < 1:
        raise PipelineError(f"agreement: n_boot must be positive, got {n_boot}")
    rng = np.random.default_rng(seed)
    q = len(tables)
    draws = rng.integers(0, q, size=(n_boot, q))
    counts = np.zeros((n_boot, q))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1)
    return np.einsum("bq,qij->bij", counts, tables)


def percentile_interval(values: np.ndarray, min_defined: float = 0.95) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of the resamples' statistics; NaN where fewer than
    min_defined of them are defined (the interval would describe a selected subset)."""
    values = np.asarray(values, float)
    defined = values[~np.isnan(values)]
    if values.size == 0 or defined.size < min_defined * values.size:
        return math.nan, math.nan
    low, high = np.percentile(defined, [2.5, 97.5])
    return float(low), float(high)


def agreement_statistics(labels_a: list, labels_b: list, questions: list, n_boot: int = 2000, seed: int = 0) -> dict:
    """Raw agreement, weighted kappa and ordinal alpha with their 95% question-bootstrap
    intervals, the number of questions and of verdict pairs (invalid dropped)."""
    _, tables = question_tables(labels_a, labels_b, questions)
    valid = tables.sum(axis=(1, 2)) > 0
    tables = tables[valid]  # a question with no valid pair adds nothing to any resample
    total = tables.sum(axis=0)
    n = int(total.sum())
    out = {
        "n_questions": len(tables),
        "n_pairs": n,
        "agreement": float(np.trace(total) / n) if n else math.nan,
        "weighted_kappa": float(weighted_kappa(total)),
        "alpha": ordinal_alpha(total),
    }
    if not n:
        return {
            **out,
            "weighted_kappa_low": math.nan,
            "weighted_kappa_high": math.nan,
            "alpha_low": math.nan,
            "alpha_high": math.nan,
        }
    resampled = bootstrap_tables(tables, n_boot, seed)
    kappa_low, kappa_high = percentile_interval(weighted_kappa(resampled))
    alpha_low, alpha_high = percentile_interval(np.array([ordinal_alpha(t) for t in resampled]))
    return {
        **out,
        "weighted_kappa_low": kappa_low,
        "weighted_kappa_high": kappa_high,
        "alpha_low": alpha_low,
        "alpha_high": alpha_high,
    }
