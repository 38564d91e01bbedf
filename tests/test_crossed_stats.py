"""The crossed inference (scripts/huatuo_study/statistics/crossed_stats.py) against independent computations, and its
calibration by simulation (scripts/huatuo_study/statistics/verdict_simulation.py) on data shaped like ours."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from huatuo_study.common import PipelineError
from huatuo_study.statistics import claim_stats as cs
from huatuo_study.statistics.crossed_stats import crossed_interval, holm_levels, variance_parts
from huatuo_study.statistics.verdict_simulation import Nuisance, expected_score, quality_for_score, simulate_scores

STUDY_NUISANCE = Nuisance(question_sd=2.0, replicate_sd=0.25, answer_sd=1.0, order_bias=0.3, tie_cut=0.2, invalid=0.01)
WIDE_RUNS = dataclasses.replace(STUDY_NUISANCE, replicate_sd=0.75)


# --- against independent computations -----------------------------------------------------------


def test_variance_of_the_mean_equals_the_reml_fit_of_the_crossed_model():
    # statsmodels' REML fit of y ~ 1 with crossed question and run components: the squared
    # standard error of its intercept is the variance the moment estimator gives.
    rng = np.random.default_rng(5)
    q, k = 15, 3
    y = 0.5 + rng.normal(0, 1, (q, 1)) + rng.normal(0, 0.7, (1, k)) + rng.normal(0, 0.5, (q, k))
    frame = pd.DataFrame({"y": y.ravel(), "q": np.repeat(np.arange(q), k), "r": np.tile(np.arange(k), q), "g": 1})
    fit = sm.MixedLM.from_formula("y ~ 1", groups="g", vc_formula={"q": "0 + C(q)", "r": "0 + C(r)"}, data=frame).fit(
        reml=True
    )
    effect, question_part, run_part = variance_parts(y)
    assert effect == pytest.approx(fit.params["Intercept"] - 0.5)
    assert question_part + run_part == pytest.approx(fit.bse["Intercept"] ** 2, rel=1e-3)


def test_one_replicate_between_settings_is_the_paired_t_test():
    rng = np.random.default_rng(2)
    a, b = rng.choice([0, 0.5, 1], (20, 1)), rng.choice([0, 0.5, 1], (20, 1))
    effect, low, high, p = crossed_interval(a, b)
    test = stats.ttest_rel(a[:, 0], b[:, 0])
    ci = test.confidence_interval()
    assert p == pytest.approx(test.pvalue, rel=1e-6)
    assert (low, high) == pytest.approx((ci.low, ci.high))


def test_variance_parts_by_hand():
    # Two questions, two runs, additive: d = (.25, -.25), var 0.125 / 2 questions; run means .75
    # and .25, MS_run = 2 * 0.125 = 0.25 -> run part 0.25 / 4; no residual to give back.
    _, question_part, run_part = variance_parts(np.array([[1.0, 0.5], [0.5, 0.0]]))
    assert (question_part, run_part) == pytest.approx((0.0625, 0.0625))
    # Pure interaction: d = (0, 0), run means equal; MS_res = 4 * 0.25 = 1 leaves the question
    # part at its floor, 1 / (4 * 2^2).
    _, question_part, run_part = variance_parts(np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert (question_part, run_part) == pytest.approx((1 / 16, 0))


def test_between_runs_spread_widens_the_interval():
    # Two runs winning 65% and 30% of 20 questions: questions alone would give a narrow interval.
    a = np.zeros((20, 2))
    a[:13, 0], a[7:13, 1] = 1, 1
    _, low, high, _ = crossed_interval(a)
    _, q_low, q_high, _ = crossed_interval(a.mean(axis=1, keepdims=True))
    assert high - low > 1.5 * (q_high - q_low)


def test_the_p_value_is_the_level_at_which_the_interval_reaches_no_effect():
    rng = np.random.default_rng(3)
    a = rng.choice([0, 0.5, 1], (30, 3), p=[0.3, 0.2, 0.5])
    b = rng.choice([0, 0.5, 1], (30, 3))
    for other in (None, b):
        _, _, _, p = crossed_interval(a, other)
        _, low, high, _ = crossed_interval(a, other, alpha=float(p))
        assert min(abs(low), abs(high)) == pytest.approx(0, abs=1e-7)


def test_no_variation_still_gets_an_interval():
    # 10 questions all won in 3 runs: the score is taken half a question inside (0.95), the
    # question part at its floor 1 / 400, by the delta method on the logit scale.
    effect, low, high, p = crossed_interval(np.ones((10, 3)))
    half = stats.t.ppf(0.975, 9) * (1 / 20) / (0.95 * 0.05)
    assert effect == 0.5 and high == 0.5
    assert low == pytest.approx(1 / (1 + np.exp(-(np.log(19) - half))) - 0.5)
    assert 0 < low and p < 0.05
    effect, low, high, p = crossed_interval(np.full((10, 3), 0.5), np.full((10, 3), 0.5))
    assert effect == 0 and low < 0 < high and p == pytest.approx(1)


def test_holm_levels_by_hand():
    levels = holm_levels([0.04, np.nan, 0.01, 0.03], 0.05)
    assert np.isnan(levels[1]) and levels[[2, 3, 0]] == pytest.approx([0.05 / 3, 0.05 / 2, 0.05])


def test_bad_shapes_and_levels_are_errors():
    with pytest.raises(PipelineError, match="differ in questions or replicates"):
        crossed_interval(np.ones((5, 2)), np.ones((4, 2)))
    with pytest.raises(PipelineError, match="at least 2 questions"):
        crossed_interval(np.ones((1, 3)))
    with pytest.raises(PipelineError, match="alpha"):
        crossed_interval(np.ones((5, 2)), alpha=1.5)


# --- the simulator ----------------------------------------------------------------------------------


def test_expected_score_is_the_simulated_mean_and_inverts():
    nuisance = dataclasses.replace(STUDY_NUISANCE, order_bias=0.8, invalid=0.1)
    scores = simulate_scores(np.random.default_rng(0), 20_000, 5, 5, {"a": 1.0, "b": -0.5}, nuisance)
    assert scores["a"].mean() == pytest.approx(expected_score(1.0, nuisance), abs=0.003)
    assert scores["b"].mean() == pytest.approx(expected_score(-0.5, nuisance), abs=0.003)
    assert expected_score(0.0, nuisance) == pytest.approx(0.5)  # the order bias cancels over both orders
    assert expected_score(quality_for_score(0.9, nuisance), nuisance) == pytest.approx(0.9)
    with pytest.raises(PipelineError, match="out of reach"):
        quality_for_score(0.99, nuisance)  # a tenth of the orders is unparseable, scoring 1/2
    with pytest.raises(PipelineError, match="replicate_sd"):
        dataclasses.replace(STUDY_NUISANCE, replicate_sd=-1)


def test_the_study_nuisance_gives_about_a_third_ties():
    scores = simulate_scores(np.random.default_rng(1), 200, 20, 3, {"a": 0.0}, STUDY_NUISANCE)["a"]
    assert 0.28 < (scores == 0.5).mean() < 0.38


# --- calibration: coverage, family-wise error and verdict errors --------------------------------------


def _coverage(n, k, nuisance, rates, studies, seed):
    rng = np.random.default_rng(seed)
    qualities = {f"r{rate}": quality_for_score(rate, nuisance) for rate in rates}
    truth = {name: expected_score(q, nuisance) for name, q in qualities.items()}
    names = list(qualities)
    hits = dict.fromkeys(names + ["difference"], 0)
    for _ in range(0, studies, 250):
        scores = simulate_scores(rng, 250, n, k, qualities, nuisance)
        for name in names:
            _, low, high, _ = crossed_interval(scores[name])
            hits[name] += int(((low <= truth[name] - 0.5) & (truth[name] - 0.5 <= high)).sum())
        _, low, high, _ = crossed_interval(scores[names[-1]], scores[names[0]])
        diff = truth[names[-1]] - truth[names[0]]
        hits["difference"] += int(((low <= diff) & (diff <= high)).sum())
    return {name: hit / studies for name, hit in hits.items()}


@pytest.mark.parametrize("n", [20, 200])
@pytest.mark.parametrize(
    "nuisance, rates",
    [
        (STUDY_NUISANCE, (0.5, 0.75, 0.9)),
        (WIDE_RUNS, (0.5, 0.75)),
    ],
)
def test_95_percent_intervals_cover_the_recipe_at_least_93_percent(n, nuisance, rates):
    coverage = _coverage(n, 3, nuisance, rates, studies=1500, seed=n)
    assert min(coverage.values()) >= 0.93, coverage


def _null_family_verdicts(n, k, nuisance, studies, seed):
    """The study's 11 claims (3 settings against setting 1, 2 of scaling's gain, 4 against the
    baseline, 2 against controls) when no setting differs from another or from the baseline, with
    the study's published effects: (any supported, any contradicted) per simulated study."""
    published = {"s1": 0.75, "s2": 0.9, "s3": 0.8, "s4": 0.8}
    family = [
        ("s2", "s1"),
        ("s3", "s1"),
        ("s4", "s1"),
        ("s2", "s3"),
        ("s2", "s4"),
        ("s1", None),
        ("s2", None),
        ("s3", None),
        ("s4", None),
        ("s1", "c4"),
        ("s2", "c14"),
    ]
    effects_published = [published[a] - (0.5 if b is None else published.get(b, np.nan)) for a, b in family]
    rng = np.random.default_rng(seed)
    supported, contradicted = [], []
    for _ in range(0, studies, 250):
        scores = simulate_scores(rng, 250, n, k, dict.fromkeys(["s1", "s2", "s3", "s4", "c4", "c14"], 0.0), nuisance)
        estimates = [crossed_interval(scores[a], None if b is None else scores[b]) for a, b in family]
        p = np.stack([e[3] for e in estimates], -1)
        effects = np.stack([e[0] for e in estimates], -1)
        supported.append(((cs.holm_adjusted(p) < 0.05) & (effects > 0)).any(-1))
        contradicted.append(np.zeros(len(p), bool))
    return np.concatenate(supported), effects_published


@pytest.mark.parametrize("n", [20, 200])
def test_family_wise_error_after_holm_is_at_most_5_percent(n):
    supported, _ = _null_family_verdicts(n, 3, STUDY_NUISANCE, studies=2000, seed=n)
    # 2000 studies: a true 5% would exceed 6% with probability under 2%.
    assert supported.mean() <= 0.06, supported.mean()


def test_a_true_published_effect_is_rarely_called_contradicted_or_missed_when_large():
    # Setting at the study's 0.90 against setting 1 at 0.75, and setting 1 against the baseline:
    # "contradicted" (the corrected interval below the true effect) stays below its level.
    nuisance, rng = STUDY_NUISANCE, np.random.default_rng(7)
    q = {"s1": quality_for_score(0.75, nuisance), "s2": quality_for_score(0.9, nuisance)}
    scores = simulate_scores(rng, 1500, 200, 3, q, nuisance)
    truth = expected_score(q["s2"], nuisance) - expected_score(q["s1"], nuisance)
    effect, low, high, p = crossed_interval(scores["s2"], scores["s1"], alpha=0.05 / 2)
    assert (high < truth).mean() <= 0.025
    _, low, high, _ = crossed_interval(scores["s1"], alpha=0.05 / 2)
    assert (high < 0.25).mean() <= 0.025 and (low > 0).mean() > 0.9  # +25 at 200 x 3 is mostly found
