"""Judges' agreement (agreement_stats.py): linear-weighted kappa and ordinal Krippendorff's alpha,
checked against statsmodels, the krippendorff package's raw-label path, a textbook example and
hand computations; the cluster bootstrap over questions."""

import math

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import cohens_kappa

from huatuo_study.common import PipelineError
from huatuo_study.statistics import agreement_stats as ag

# Rows judge a, columns judge b, in rank order loss, tie, win.
SMALL = np.array([[4, 1, 0], [1, 2, 1], [0, 1, 4]])


def _alpha_by_hand(table) -> float:
    """Ordinal alpha from its definition (Krippendorff 2011, sec. E): coincidences o = T + T',
    value totals n_c, distance delta_ck = (sum of n_g for g from c to k - (n_c + n_k) / 2)^2,
    alpha = 1 - (n - 1) sum o delta / sum n_c n_k delta."""
    t = np.asarray(table, float)
    o = t + t.T
    nc = o.sum(1)
    n = nc.sum()
    delta = np.zeros((3, 3))
    for c in range(3):
        for k in range(3):
            lo, hi = min(c, k), max(c, k)
            delta[c, k] = (nc[lo : hi + 1].sum() - (nc[c] + nc[k]) / 2) ** 2
    return 1 - (n - 1) * (o * delta).sum() / (np.outer(nc, nc) * delta).sum()


def test_weighted_kappa_by_hand():
    # Weights |i - j| / 2. Observed disagreement: four one-step misses of weight 1/2 in 14 pairs = 1/7.
    # Margins 5, 4, 5 both ways; expected: (1/2 (5*4 + 4*5 + 4*5 + 5*4) + (5*5 + 5*5)) / 196 = 90/196.
    # kappa_w = 1 - (28/196) / (90/196) = 31/45.
    assert ag.weighted_kappa(SMALL) == pytest.approx(31 / 45)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_kappa_matches_statsmodels(seed):
    table = np.random.default_rng(seed).integers(0, 20, size=(3, 3))
    assert ag.weighted_kappa(table) == pytest.approx(cohens_kappa(table, wt="linear").kappa)
    # stacked tables give each table's own value
    stack = np.stack([table, SMALL])
    assert ag.weighted_kappa(stack) == pytest.approx([cohens_kappa(table, wt="linear").kappa, 31 / 45])


def test_linear_weights_credit_a_near_miss():
    # The same raw agreement; the disagreements one step apart (win vs tie) in one table, a full
    # reversal (win vs loss) in the other: weighted kappa tells them apart, as an ordinal scale should.
    near = np.array([[5, 2, 0], [0, 5, 0], [0, 2, 5]])
    far = np.array([[5, 0, 2], [0, 5, 0], [2, 0, 5]])
    assert np.trace(near) == np.trace(far)
    assert ag.weighted_kappa(near) > ag.weighted_kappa(far)
    assert ag.ordinal_alpha(near) > ag.ordinal_alpha(far)


def test_ordinal_alpha_by_hand():
    # Coincidences 2T: value totals 10, 8, 10 (n = 28); distances 81 (one step), 324 (two steps);
    # sum o delta = 4 * 2 * 81 = 648; sum n_c n_k delta = 2 (10*8*81 + 8*10*81 + 10*10*324) = 90720;
    # alpha = 1 - 27 * 648 / 90720 = 113/140.
    assert _alpha_by_hand(SMALL) == pytest.approx(113 / 140)
    assert ag.ordinal_alpha(SMALL) == pytest.approx(113 / 140)
    for seed in range(5):
        table = np.random.default_rng(seed).integers(0, 15, size=(3, 3))
        assert ag.ordinal_alpha(table) == pytest.approx(_alpha_by_hand(table))


def test_ordinal_alpha_textbook_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", p. 8: four observers, 12
    # units, values 1-5, missing data; ordinal alpha 0.815 as printed there. The package is the one
    # ordinal_alpha calls.
    nan = np.nan
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
    assert krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal") == pytest.approx(0.815, abs=5e-4)


def test_table_route_equals_the_raw_labels_route():
    rng = np.random.default_rng(3)
    a = rng.choice(ag.ORDER, 60)
    b = np.where(rng.random(60) < 0.6, a, rng.choice(ag.ORDER, 60))
    _, tables = ag.question_tables(list(a), list(b), [f"q{i % 7}" for i in range(60)])
    ranks = [[ag.ORDER.index(x) for x in a], [ag.ORDER.index(y) for y in b]]
    direct = krippendorff.alpha(reliability_data=ranks, level_of_measurement="ordinal", value_domain=[0, 1, 2])
    assert ag.ordinal_alpha(tables.sum(0)) == pytest.approx(direct)
    assert ag.weighted_kappa(tables.sum(0)) == pytest.approx(cohens_kappa(tables.sum(0), wt="linear").kappa)


def test_agreement_statistics_counts_and_drops_invalid():
    a = ["win", "tie", "loss", "win", "invalid", "win", "loss"]
    b = ["win", "win", "loss", "invalid", "tie", "win", "tie"]
    q = ["q1", "q1", "q2", "q2", "q3", "q4", "q4"]
    out = ag.agreement_statistics(a, b, q, n_boot=200, seed=1)
    # q3 has no valid pair: 3 questions, 5 pairs, 3 of them agreeing
    assert (out["n_questions"], out["n_pairs"]) == (3, 5) and out["agreement"] == pytest.approx(3 / 5)
    # by rank (loss 0, tie 1, win 2): loss/loss, loss/tie, tie/win, win/win twice
    table = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 2]])
    _, counted = ag.question_tables(a, b, q)
    assert counted.sum(0).tolist() == table.tolist()
    assert out["weighted_kappa"] == pytest.approx(cohens_kappa(table, wt="linear").kappa)
    assert out["alpha"] == pytest.approx(_alpha_by_hand(table))


def _clustered(questions: int, per_question: int, seed: int):
    """Two judges that agree on a question's every pair or on none of them (a shared difficulty)."""
    rng = np.random.default_rng(seed)
    a, b, q = [], [], []
    for i in range(questions):
        agree = rng.random() < 0.6
        for _ in range(per_question):
            x = rng.choice(ag.ORDER)
            a.append(x)
            b.append(x if agree else ag.ORDER[(ag.ORDER.index(x) + 1) % 3])
            q.append(f"q{i}")
    return a, b, q


def test_bootstrap_draws_whole_questions():
    a, b, q = _clustered(20, 12, seed=0)
    clustered = ag.agreement_statistics(a, b, q, n_boot=2000, seed=0)
    naive = ag.agreement_statistics(a, b, list(range(len(a))), n_boot=2000, seed=0)  # every pair its own cluster
    assert clustered["weighted_kappa"] == pytest.approx(naive["weighted_kappa"])
    assert clustered["n_questions"] == 20 and naive["n_questions"] == 240
    width = clustered["weighted_kappa_high"] - clustered["weighted_kappa_low"]
    # 20 independent units, not 240: the interval is far wider than the pair-level one
    assert width > 2 * (naive["weighted_kappa_high"] - naive["weighted_kappa_low"])
    assert width > 2 * (naive["alpha_high"] - naive["alpha_low"])
    for key in ("weighted_kappa", "alpha"):
        assert clustered[f"{key}_low"] < clustered[key] < clustered[f"{key}_high"]
    # each resample holds 20 whole questions of 12 pairs each
    resampled = ag.bootstrap_tables(ag.question_tables(a, b, q)[1], 50, seed=0)
    assert set(resampled.sum(axis=(1, 2))) == {240.0}


def test_bootstrap_is_seeded():
    a, b, q = _clustered(15, 4, seed=1)
    one, again = (ag.agreement_statistics(a, b, q, n_boot=300, seed=7) for _ in range(2))
    other = ag.agreement_statistics(a, b, q, n_boot=300, seed=8)
    assert one == again and one["alpha_low"] != other["alpha_low"]


def test_perfect_and_degenerate_agreement():
    a = ["win", "tie", "loss", "win"] * 3
    perfect = ag.agreement_statistics(a, a, [f"q{i}" for i in range(12)], n_boot=300)
    assert perfect["weighted_kappa"] == 1.0 and perfect["alpha"] == 1.0 and perfect["agreement"] == 1.0
    assert perfect["weighted_kappa_low"] == 1.0 and perfect["alpha_high"] == 1.0
    # one category used by both judges alone: chance agreement is 1, both statistics 0/0
    same = ag.agreement_statistics(["win"] * 6, ["win"] * 6, ["q1", "q2"] * 3, n_boot=100)
    assert same["agreement"] == 1.0 and math.isnan(same["weighted_kappa"]) and math.isnan(same["alpha"])
    assert math.isnan(same["weighted_kappa_low"]) and math.isnan(same["alpha_high"])
    # nothing valid
    none = ag.agreement_statistics(["invalid", "win"], ["tie", "invalid"], ["q1", "q2"], n_boot=100)
    assert (none["n_questions"], none["n_pairs"]) == (0, 0)
    assert all(
        math.isnan(none[k]) for k in ("agreement", "weighted_kappa", "alpha", "alpha_low", "weighted_kappa_high")
    )


def test_interval_left_empty_when_most_resamples_are_undefined():
    # Two questions: one where both judges say win, one where they disagree. A resample of the
    # first question twice (a quarter of them) has one category alone: kappa undefined there.
    a, b, q = ["win", "win", "tie"], ["win", "win", "loss"], ["q1", "q1", "q2"]
    out = ag.agreement_statistics(a, b, q, n_boot=400, seed=0)
    assert not math.isnan(out["weighted_kappa"]) and math.isnan(out["weighted_kappa_low"])
    assert all(map(math.isnan, ag.percentile_interval(np.array([0.1, 0.2, np.nan]))))
    low, high = ag.percentile_interval(np.r_[np.linspace(0, 1, 99), np.nan])
    assert (low, high) == (pytest.approx(0.025), pytest.approx(0.975))


def test_errors_name_the_problem():
    with pytest.raises(PipelineError, match="3 verdicts of one judge, 2 of the other, 3 question ids"):
        ag.agreement_statistics(["win"] * 3, ["win"] * 2, ["q"] * 3)
    with pytest.raises(PipelineError, match=r"unknown verdicts \['draw'\]"):
        ag.agreement_statistics(["win", "draw"], ["win", "tie"], ["q1", "q2"])
    with pytest.raises(PipelineError, match="n_boot must be positive, got 0"):
        ag.agreement_statistics(["win", "tie"], ["win", "tie"], ["q1", "q2"], n_boot=0)
