import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon
from statsmodels.stats.power import TTestPower

import claim_stats as cs
from common import PipelineError


def _table(verdicts_by_setting, answer_chars=None, baseline_chars=100):
    """A verdict table from {setting: [[verdict per question] per replicate]}, questions q00, q01, ..."""
    rows = []
    for setting, replicates in verdicts_by_setting.items():
        for r, verdicts in enumerate(replicates):
            for i, v in enumerate(verdicts):
                chars = answer_chars[setting][r][i] if answer_chars else 100
                rows.append({"setting": setting, "replicate": r, "id": f"q{i:02d}", "verdict": v,
                             "answer_chars": chars, "baseline_chars": baseline_chars})
    return pd.DataFrame(rows)


# --- per_question and the table's shape -------------------------------------------------------

def test_per_question_wins_and_scores_in_question_order():
    df = _table({"a": [["win", "tie", "loss", "invalid"], ["loss", "win", "tie", "win"]]})
    df = df.iloc[::-1]  # row order must not matter
    assert cs.per_question(df, "a").tolist() == [[1, 0], [0, 1], [0, 0], [0, 1]]
    assert cs.per_question(df, "a", "score").tolist() == [[1, 0], [0.5, 1], [0, 0.5], [0.5, 1]]


def test_missing_question_names_the_setting():
    df = _table({"good": [["win", "loss", "tie"]] * 2, "short": [["win", "loss", "tie"]] * 2})
    df = df[~((df["setting"] == "short") & (df["replicate"] == 1) & (df["id"] == "q02"))]
    with pytest.raises(PipelineError, match=r"short, replicate 1: misses 1 question.*q02"):
        cs.check_verdicts(df)
    with pytest.raises(PipelineError, match="short"):
        cs.per_question(df, "short")
    with pytest.raises(PipelineError, match="short"):
        cs.claims_table(df, [{"id": "c", "setting": "good", "against": "baseline"}], n_boot=10)


def test_unequal_replicates_duplicates_and_unknown_verdicts_are_errors():
    df = _table({"a": [["win", "loss"]] * 3, "b": [["win", "loss"]] * 2})
    with pytest.raises(PipelineError, match=r"b, replicate 2: misses 2 question"):
        cs.check_verdicts(df)
    dup = _table({"a": [["win", "loss"]]})
    dup = pd.concat([dup, dup.iloc[[0]]])
    with pytest.raises(PipelineError, match="a, replicate 0: question q00 judged more than once"):
        cs.check_verdicts(dup)
    with pytest.raises(PipelineError, match="unknown verdicts"):
        cs.check_verdicts(_table({"a": [["win", "draw"]]}))
    with pytest.raises(PipelineError, match="missing columns answer_chars"):
        cs.check_verdicts(_table({"a": [["win"]]}).drop(columns="answer_chars"))
    with pytest.raises(PipelineError, match="nope: no verdicts"):
        cs.per_question(df, "nope")


# --- bootstrap ----------------------------------------------------------------------------------

def test_bootstrap_all_wins_against_all_losses_is_degenerate_at_one():
    a, b = np.ones((20, 1)), np.zeros((20, 1))
    assert cs.bootstrap_difference(a, b, n_boot=500, seed=1) == (1.0, 1.0, 1.0)
    assert cs.bootstrap_difference(a, None, n_boot=500, seed=1) == (0.5, 0.5, 0.5)


def test_bootstrap_interval_contains_effect_and_follows_the_seed():
    rng = np.random.default_rng(0)
    a = (rng.random((30, 3)) < 0.7).astype(float)
    b = (rng.random((30, 3)) < 0.5).astype(float)
    effect, low, high = cs.bootstrap_difference(a, b, n_boot=2000, seed=7)
    assert effect == pytest.approx(a.mean() - b.mean())
    assert low < effect < high
    assert cs.bootstrap_difference(a, b, n_boot=2000, seed=7) == (effect, low, high)
    assert cs.bootstrap_difference(a, b, n_boot=2000, seed=8) != (effect, low, high)
    # Replicate resampling adds seed noise: the interval is wider than questions alone give.
    q_only = cs.bootstrap_difference(a.mean(axis=1, keepdims=True), b.mean(axis=1, keepdims=True), 2000, 7)
    assert high - low > q_only[2] - q_only[1]


def test_bootstrap_matches_the_normal_approximation_of_a_question_bootstrap():
    # K = 1: a plain paired bootstrap of questions; its sd is the sd of the mean difference.
    rng = np.random.default_rng(3)
    a = (rng.random((200, 1)) < 0.6).astype(float)
    _, low, high = cs.bootstrap_difference(a, None, n_boot=20_000, seed=0)
    se = a.std() / math.sqrt(len(a))
    assert high - low == pytest.approx(2 * 1.959964 * se, rel=0.05)


def test_bootstrap_rejects_mismatched_questions():
    with pytest.raises(PipelineError, match="same questions"):
        cs.bootstrap_difference(np.ones((5, 2)), np.ones((4, 2)), 10, 0)
    with pytest.raises(PipelineError, match="n_boot"):
        cs.bootstrap_difference(np.ones((5, 2)), None, 0, 0)


# --- paired test --------------------------------------------------------------------------------

def test_paired_test_is_wilcoxon_on_mean_score_differences():
    a = np.array([[1, 1], [1, 0.5], [0, 0], [1, 1], [0.5, 0.5], [1, 0], [1, 1], [0, 0.5]])
    b = np.array([[0, 0], [0, 0], [0, 0], [0.5, 0], [0.5, 0.5], [1, 1], [0, 0.5], [0, 0]])
    d = np.array([1, 0.75, 0, 0.75, 0, -0.5, 0.75, 0.25])  # by hand
    expected = wilcoxon(d, zero_method="pratt").pvalue
    assert cs.paired_test(a, b) == pytest.approx(expected)
    assert cs.paired_test(a, a) == 1.0
    assert cs.paired_test(np.full((5, 3), 0.5)) == 1.0  # all ties against the baseline


def test_paired_test_exact_value_by_hand():
    # Six distinct positive differences from 0.5: exact two-sided p = 2 / 2**6.
    a = np.array([[0.6], [0.7], [0.8], [0.9], [1.0], [0.55]])
    assert cs.paired_test(a) == pytest.approx(2 / 64)
    with pytest.raises(PipelineError, match="questions"):
        cs.paired_test(a, np.ones((5, 1)))


# --- Holm ---------------------------------------------------------------------------------------

def test_holm_by_hand_with_nan_passed_through():
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06.
    out = cs.holm([0.04, np.nan, 0.01, 0.03])
    assert np.isnan(out[1])
    assert out[[0, 2, 3]] == pytest.approx([0.06, 0.03, 0.06])
    assert cs.holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])
    assert cs.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # 2 * 0.6 capped at 1, then monotone
    assert np.isnan(cs.holm([np.nan])).all() and cs.holm([]).size == 0


# --- power --------------------------------------------------------------------------------------

def test_power_grows_with_n_and_n_for_power_is_the_smallest_n():
    powers = [cs.power(n, 0.6, 0.8, 0.05) for n in (10, 20, 40, 80)]
    assert powers == sorted(powers) and powers[-1] > powers[0]
    n = cs.n_for_power(0.6, 0.8, 0.05)
    assert cs.power(n, 0.6, 0.8, 0.05) >= 0.8 > cs.power(n - 1, 0.6, 0.8, 0.05)
    n_base = cs.n_for_power(None, 0.7, 0.05)
    assert cs.power(n_base, None, 0.7, 0.05) >= 0.8 > cs.power(n_base - 1, None, 0.7, 0.05)


def test_power_standardised_effect_by_hand():
    d = 0.2 / math.sqrt(0.7 * 0.3)  # (p - 0.5) / sqrt(p(1-p)) against the baseline
    assert cs.power(25, None, 0.7) == pytest.approx(TTestPower().power(d, 25, 0.05))
    d2 = 0.1 / math.sqrt(0.6 * 0.4 + 0.7 * 0.3)
    assert cs.power(25, 0.6, 0.7) == pytest.approx(TTestPower().power(d2, 25, 0.05))


def test_published_claim_is_underpowered_at_twenty_questions():
    p = cs.power(20, 0.75, 0.90, 0.05)
    n = cs.n_for_power(0.75, 0.90, 0.05)
    print(f"0.75 -> 0.90: power {p:.3f} at n=20; {n} questions for 80% power")
    assert p < 0.5
    assert 30 <= n <= 500


def test_power_degenerate_cases():
    assert cs.power(20, 1.0, 0.0) == 1.0  # sd 0, an effect
    assert cs.n_for_power(1.0, 0.0) == 2
    assert math.isnan(cs.power(20, 1.0, 1.0))
    assert math.isnan(cs.n_for_power(0.7, 0.7))
    assert math.isnan(cs.n_for_power(None, 0.5))
    assert math.isnan(cs.power(1, 0.6, 0.8))
    with pytest.raises(PipelineError, match=r"\[0, 1\]"):
        cs.power(20, 0.5, 1.2)


# --- length-controlled win rate ---------------------------------------------------------------

def test_lc_win_rate_equals_raw_rate_when_length_is_unrelated():
    # Wins and non-wins see the same length differences: the slope is 0, the intercept logit(0.75).
    diffs = [-200, -100, 100, 200]
    wins = [1] * 12 + [0] * 4
    length = diffs * 3 + diffs
    assert cs.length_controlled_win_rate(wins, length) == pytest.approx(0.75, abs=1e-6)


def test_lc_win_rate_below_raw_rate_when_wins_go_with_longer_answers():
    length = np.array([-100, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 600])
    wins = np.array([0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1])
    lc = cs.length_controlled_win_rate(wins, length)
    assert lc is not None and lc < wins.mean()


def test_lc_win_rate_degenerate_inputs():
    assert cs.length_controlled_win_rate([1, 1, 1], [10, 20, 30]) is None
    assert cs.length_controlled_win_rate([0, 0, 0], [10, 20, 30]) is None
    assert cs.length_controlled_win_rate([0, 0, 1, 1], [-2, -1, 1, 2]) is None  # perfect separation
    assert cs.length_controlled_win_rate([0, 0, 1, 0, 1, 1], [-2, -1, 0, 0, 1, 2]) is None  # quasi-perfect
    assert cs.length_controlled_win_rate([0, 1, 1, 0], [5, 5, 5, 5]) == 0.5  # sd 0: raw rate
    with pytest.raises(PipelineError, match="length"):
        cs.length_controlled_win_rate([1, 0], [1, 2, 3])


# --- kappa --------------------------------------------------------------------------------------

def _labels(table):
    cats = ["win", "tie", "loss"]
    pairs = [(cats[i], cats[j]) for i in range(3) for j in range(3) for _ in range(table[i][j])]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def test_kappa_textbook_formula_by_hand():
    table = [[10, 2, 1], [3, 8, 2], [1, 1, 5]]
    a, b = _labels(table)
    # p_o = 23/33; rows 13, 13, 7; columns 14, 11, 8; p_e = (182 + 143 + 56) / 33**2 = 381/1089.
    po, pe = 23 / 33, 381 / 1089
    a, b = a + ["invalid", "win"], b + ["win", "invalid"]  # dropped pairs
    kappa, low, high, n = cs.cohens_kappa_three_way(a, b)
    assert n == 33
    assert kappa == pytest.approx((po - pe) / (1 - pe))
    assert kappa == pytest.approx(378 / 708)
    assert low < kappa < high and (kappa - low) == pytest.approx(high - kappa)


def test_kappa_empty_category_and_degenerate_tables():
    kappa, *_ = cs.cohens_kappa_three_way(["win", "loss", "win", "loss"], ["win", "loss", "loss", "loss"])
    # 2x2 in effect (no ties): p_o = 3/4, p_e = (2*1 + 2*3)/16 = 1/2 -> kappa 1/2.
    assert kappa == pytest.approx(0.5)
    out = cs.cohens_kappa_three_way(["win"] * 5, ["win"] * 5)
    assert all(math.isnan(x) for x in out[:3]) and out[3] == 5
    out = cs.cohens_kappa_three_way(["win", "invalid"], ["win", "tie"])
    assert all(math.isnan(x) for x in out[:3]) and out[3] == 1
    with pytest.raises(PipelineError, match="verdicts"):
        cs.cohens_kappa_three_way(["win"], ["win", "tie"])
    with pytest.raises(PipelineError, match="unknown"):
        cs.cohens_kappa_three_way(["win", "draw"], ["win", "tie"])


# --- claims table -------------------------------------------------------------------------------

CLAIMS = [
    {"id": "C1", "claim": "strong beats weak", "source": "Table 2", "setting": "strong", "against": "weak",
     "published_effect": 1.0, "published_against_rate": 0.0, "published_setting_rate": 1.0},
    {"id": "C2", "claim": "weak beats the baseline", "source": "Table 1", "setting": "weak",
     "against": "baseline", "published_effect": 0.4, "published_against_rate": None,
     "published_setting_rate": 0.9},
    {"id": "C3", "claim": "mixed beats the baseline", "source": "Sec. 4", "setting": "mixed",
     "against": "baseline", "published_effect": None, "published_against_rate": None,
     "published_setting_rate": None},
    {"id": "C4", "claim": "augmented beats strong", "source": "Table 3", "setting": "augmented",
     "against": "strong", "published_effect": 0.15, "published_against_rate": 0.75,
     "published_setting_rate": 0.90},
]


def test_claims_table_verdicts_on_constructed_data():
    n = 40
    df = _table({
        "strong": [["win"] * n] * 2,
        "weak": [["loss"] * n] * 2,
        "mixed": [["win", "loss"] * (n // 2), ["loss", "win"] * (n // 2)],
    })
    table = cs.claims_table(df, CLAIMS, alpha=0.05, n_boot=500, seed=0)
    assert list(table.columns) == cs.COLUMNS
    assert list(table["verdict"]) == ["supported", "contradicted", "inconclusive", "not run"]
    c1, c2, c3, c4 = (table.iloc[i] for i in range(4))
    assert (c1["effect"], c1["ci_low"], c1["ci_high"]) == (1.0, 1.0, 1.0)
    assert c1["n"] == n and c1["replicates"] == 2 and c1["published_in_ci"] is True
    assert c1["power"] == 1.0 and c1["n_for_80_power"] == 2
    assert c2["effect"] == -0.5 and c2["published_in_ci"] is False
    assert c2["power"] == pytest.approx(cs.power(n, None, 0.9))
    assert c3["effect"] == 0.0 and c3["p_value"] == 1.0 and c3["published_in_ci"] is None
    assert math.isnan(c3["power"]) and pd.isna(c3["n_for_80_power"])
    assert pd.isna(c4["n"]) and math.isnan(c4["effect"]) and math.isnan(c4["p_holm"])
    # Holm over the three computed rows only: the smallest p times 3, the null claim's 1 stays 1.
    p = table["p_value"][:3].tolist()
    assert min(table["p_holm"][:2]) == pytest.approx(3 * min(p[:2]))
    assert c3["p_holm"] == 1.0


def test_claims_table_holm_can_make_a_claim_inconclusive():
    # 14 wins, 5 losses, 1 tie of 20: p = 0.039 alone, 0.078 after Holm beside a null claim.
    df = _table({"a": [["win"] * 14 + ["loss"] * 5 + ["tie"]], "null": [["tie"] * 20]})
    claims = [{"id": "A", "setting": "a", "against": "baseline"},
              {"id": "N", "setting": "null", "against": "baseline"}]
    table = cs.claims_table(df, claims, n_boot=200)
    p = table["p_value"].tolist()
    assert 0.025 < p[0] < 0.05 and p[1] == 1.0
    assert table["p_holm"].tolist() == pytest.approx([2 * p[0], 1.0])
    assert table["verdict"].tolist() == ["inconclusive", "inconclusive"]
    alone = cs.claims_table(df, claims[:1], n_boot=200)
    assert alone["p_holm"][0] == p[0] and alone["verdict"][0] == "supported"


def test_claims_need_setting_and_against():
    df = _table({"a": [["win"]]})
    with pytest.raises(PipelineError, match="claim 'X': missing against"):
        cs.claims_table(df, [{"id": "X", "setting": "a"}], n_boot=10)


def test_empty_table_runs_no_claim():
    df = pd.DataFrame(columns=list(cs.VERDICT_COLUMNS))
    table = cs.claims_table(df, CLAIMS, n_boot=10)
    assert (table["verdict"] == "not run").all() and table["p_holm"].isna().all()
