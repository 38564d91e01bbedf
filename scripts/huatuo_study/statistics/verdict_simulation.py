"""A simulator of pairwise verdicts shaped like ours: questions crossed with training runs, each
answer judged against the baseline's in both orders and the two orders combined by the MT-bench
rule (judge_pairwise.verdict_of). It calibrates the claims table's inference (tests) and gives
the power of its decision procedure (claim_stats).

On the logit scale of one judging order, setting s's answer to question q in run r has quality
  m = quality_s + question_q + run_(s,r) + answer_(s,q,r)
with question_q shared by every setting (a hard question is hard for all), run and answer effects
normal with the nuisance sds. The judge sees m plus its own logistic noise, plus the order bias for
whichever answer it reads first; past +tie_cut the setting wins that order, below -tie_cut it
loses, between them it ties. Each order is unparseable with probability `invalid`. Verdict
scores follow crossed_stats.SCORES.
"""

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from huatuo_study.common import PipelineError

NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)  # for E over a normal quality


@dataclass(frozen=True)
class Nuisance:
    """The shape of the data besides the settings' qualities (logit scale of one order)."""

    question_sd: float
    replicate_sd: float
    answer_sd: float
    order_bias: float
    tie_cut: float
    invalid: float

    def __post_init__(self):
        for name in ("question_sd", "replicate_sd", "answer_sd", "tie_cut", "invalid"):
            if getattr(self, name) < 0:
                raise PipelineError(f"simulation: {name} must not be negative, got {getattr(self, name)}")
        if self.invalid >= 1:
            raise PipelineError(f"simulation: invalid must be below 1, got {self.invalid}")


def _order_outcome(m: np.ndarray, bias: float, nuisance: Nuisance, rng: np.random.Generator) -> np.ndarray:
    z = m + bias + rng.logistic(0.0, 1.0, m.shape)
    score = np.where(z > nuisance.tie_cut, 1.0, np.where(z < -nuisance.tie_cut, 0.0, 0.5))
    if nuisance.invalid:
        score = np.where(rng.random(m.shape) < nuisance.invalid, np.nan, score)
    return score


def simulate_scores(
    rng: np.random.Generator,
    studies: int,
    questions: int,
    replicates: int,
    qualities: dict[str, float],
    nuisance: Nuisance,
) -> dict[str, np.ndarray]:
    """Setting -> [studies, questions, replicates] verdict scores; the questions of a study are
    shared by its settings, their runs independent."""
    if studies < 1 or questions < 1 or replicates < 1:
        raise PipelineError(
            f"simulation: studies, questions and replicates must be positive, got {studies}, {questions}, {replicates}"
        )
    question = rng.normal(0.0, nuisance.question_sd, (studies, questions, 1))
    out = {}
    for name, quality in qualities.items():
        run = rng.normal(0.0, nuisance.replicate_sd, (studies, 1, replicates))
        m = quality + question + run + rng.normal(0.0, nuisance.answer_sd, (studies, questions, replicates))
        first = _order_outcome(m, nuisance.order_bias, nuisance, rng)  # the setting read first
        second = _order_outcome(m, -nuisance.order_bias, nuisance, rng)
        verdict = np.where(first == second, first, 0.5)  # two different outcomes make a tie
        out[name] = np.where(np.isnan(first) | np.isnan(second), 0.5, verdict)  # invalid: 1/2
    return out


def expected_score(quality: float, nuisance: Nuisance) -> float:
    """The recipe's true mean score against the baseline (over questions, runs and judging), by
    Gauss-Hermite quadrature over the answer's total quality."""
    sd = float(np.sqrt(nuisance.question_sd**2 + nuisance.replicate_sd**2 + nuisance.answer_sd**2))
    m = quality + sd * NODES
    wins = [expit(m + b - nuisance.tie_cut) for b in (nuisance.order_bias, -nuisance.order_bias)]
    losses = [expit(-nuisance.tie_cut - m - b) for b in (nuisance.order_bias, -nuisance.order_bias)]
    both_win, both_lose = wins[0] * wins[1], losses[0] * losses[1]
    valid = (1 - nuisance.invalid) ** 2
    score = valid * (both_win + 0.5 * (1 - both_win - both_lose)) + (1 - valid) * 0.5
    return float(WEIGHTS @ score / WEIGHTS.sum())


def quality_for_score(score: float, nuisance: Nuisance) -> float:
    """The quality whose expected score is `score` (a published rate, read on our measure)."""
    top = expected_score(40.0, nuisance)
    if not 1 - top < score < top:
        raise PipelineError(
            f"simulation: a mean score of {score} is out of reach (at most {top:.4f} with these nuisance parameters)"
        )
    return float(brentq(lambda x: expected_score(x, nuisance) - score, -40.0, 40.0, xtol=1e-10))
