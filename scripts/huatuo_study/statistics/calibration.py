"""Calibration of the claims table's inference by simulation (verdict_simulation): how often its
95% interval covers the recipe's true effect, and how often Holm's correction lets any claim of a
family come out supported when nothing differs (family-wise error), at a given design."""

from collections.abc import Sequence

import numpy as np

from huatuo_study.statistics.claim_stats import BASELINE, holm_adjusted
from huatuo_study.statistics.crossed_stats import crossed_interval
from huatuo_study.statistics.verdict_simulation import Nuisance, expected_score, quality_for_score, simulate_scores

# True mean scores the coverage is checked at [ours]: no effect, the study's setting 1, its best.
COVERAGE_RATES = (0.5, 0.75, 0.9)
CHUNK = 100  # simulated studies at a time


def coverage(
    n: int,
    replicates: int,
    nuisance: Nuisance,
    studies: int,
    rng: np.random.Generator,
    rates: Sequence[float] = COVERAGE_RATES,
) -> dict[str, float]:
    """Share of simulated studies whose 95% interval holds the truth: for a setting at each rate
    against the baseline (keys "0.5", ...), and for the highest rate against the middle one
    ("difference")."""
    qualities = {str(rate): quality_for_score(rate, nuisance) for rate in rates}
    truth = {name: expected_score(q, nuisance) - 0.5 for name, q in qualities.items()}
    top, middle = str(rates[-1]), str(rates[len(rates) // 2])
    difference = truth[top] - truth[middle]
    hits = dict.fromkeys([*qualities, "difference"], 0)
    for start in range(0, studies, CHUNK):
        scores = simulate_scores(rng, min(CHUNK, studies - start), n, replicates, qualities, nuisance)
        for name in qualities:
            _, low, high, _ = crossed_interval(scores[name])
            hits[name] += int(((low <= truth[name]) & (truth[name] <= high)).sum())
        _, low, high, _ = crossed_interval(scores[top], scores[middle])
        hits["difference"] += int(((low <= difference) & (difference <= high)).sum())
    return {name: count / studies for name, count in hits.items()}


def family_wise_error(
    family: Sequence[tuple[str, str]],
    n: int,
    replicates: int,
    nuisance: Nuisance,
    studies: int,
    rng: np.random.Generator,
    alpha: float,
) -> float:
    """Share of simulated studies in which any claim of `family` ((setting, against) pairs,
    against a setting or BASELINE) comes out supported when every setting equals the baseline."""
    names = sorted({x for pair in family for x in pair if x != BASELINE})
    errors = 0
    for start in range(0, studies, CHUNK):
        scores = simulate_scores(rng, min(CHUNK, studies - start), n, replicates, dict.fromkeys(names, 0.0), nuisance)
        estimates = [crossed_interval(scores[a], None if b == BASELINE else scores[b], alpha) for a, b in family]
        effects = np.stack([e[0] for e in estimates], -1)
        p_holm = holm_adjusted(np.stack([e[3] for e in estimates], -1))
        errors += int(((p_holm < alpha) & (effects > 0)).any(-1).sum())
    return errors / studies
