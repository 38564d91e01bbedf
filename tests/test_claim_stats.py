import math

import numpy as np
import pandas as pd
import pytest

from huatuo_study.common import PipelineError
from huatuo_study.statistics import claim_stats as cs
from huatuo_study.statistics.crossed_stats import crossed_interval
from huatuo_study.statistics.verdict_simulation import expected_score
from test_crossed_stats import STUDY_NUISANCE


def _table(verdicts_by_setting, answer_chars=None, baseline_chars=100):
    """A verdict table from {setting: [[verdict per question] per replicate]}, questions q00, q01, ..."""
    rows = []
    for setting, replicates in verdicts_by_setting.items():
        for r, verdicts in enumerate(replicates):
            for i, v in enumerate(verdicts):
                chars = answer_chars[setting][r][i] if answer_chars else 100
                rows.append(
                    {
                        "setting": setting,
                        "replicate": r,
                        "id": f"q{i:02d}",
                        "verdict": v,
                        "answer_chars": chars,
                        "baseline_chars": baseline_chars,
                    }
                )
    return pd.DataFrame(rows)


# --- per_question and the table's shape -------------------------------------------------------


def test_per_question_scores_in_question_order():
    df = _table({"a": [["win", "tie", "loss", "invalid"], ["loss", "win", "tie", "win"]]})
    df = df.iloc[::-1]  # row order must not matter
    assert cs.per_question(df, "a").tolist() == [[1, 0], [0.5, 1], [0, 0.5], [0.5, 1]]


def test_missing_question_names_the_setting():
    df = _table({"good": [["win", "loss", "tie"]] * 2, "short": [["win", "loss", "tie"]] * 2})
    df = df[~((df["setting"] == "short") & (df["replicate"] == 1) & (df["id"] == "q02"))]
    with pytest.raises(PipelineError, match=r"short, replicate 1: misses 1 question.*q02"):
        cs.check_verdicts(df)
    with pytest.raises(PipelineError, match="short"):
        cs.per_question(df, "short")
    with pytest.raises(PipelineError, match="short"):
        cs.claims_table(df, [{"id": "c", "setting": "good", "against": "baseline"}], **RUN)


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


# --- Holm ---------------------------------------------------------------------------------------


def test_holm_by_hand_with_nan_passed_through():
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06.
    out = cs.holm([0.04, np.nan, 0.01, 0.03])
    assert np.isnan(out[1])
    assert out[[0, 2, 3]] == pytest.approx([0.06, 0.03, 0.06])
    assert cs.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # 2 * 0.6 capped at 1, then monotone
    assert np.isnan(cs.holm([np.nan])).all() and cs.holm([]).size == 0


def test_vectorised_holm_equals_statsmodels_on_every_row():
    rng = np.random.default_rng(0)
    p = rng.random((40, 7)) ** 3
    p[0, :3] = 0.01  # ties
    expected = np.array([cs.holm(row) for row in p])
    assert cs.holm_adjusted(p) == pytest.approx(expected)


# --- the verdict ladder -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "effect, low, high, p_holm, published, verdict",
    [
        (0.15, 0.08, 0.22, 0.001, 0.15, "reproduced"),  # inside +15 +- 15
        (0.05, -0.05, 0.12, 0.3, 0.05, "reproduced"),  # equivalent to a small effect, though 0 is inside
        (0.30, 0.20, 0.40, 0.001, 0.05, "supported"),  # above the margin: the direction stands
        (0.05, 0.01, 0.09, 0.01, 0.40, "supported"),  # positive, smaller than the study's: still its direction
        (-0.05, -0.20, 0.08, 0.5, 0.15, "contradicted"),  # wholly below the study's +15
        (-0.20, -0.30, -0.10, 0.001, None, "contradicted"),  # no published effect: below 0
        (0.05, -0.10, 0.20, 0.4, 0.15, "inconclusive"),
        (0.05, -0.10, 0.20, 0.4, None, "inconclusive"),
        (0.10, 0.01, 0.19, 0.06, None, "inconclusive"),  # the interval misses 0 but Holm's step-down stopped earlier
    ],
)
def test_claim_verdict_ladder(effect, low, high, p_holm, published, verdict):
    assert cs.claim_verdict(effect, low, high, p_holm, published, 0.15, 0.05) == verdict


def test_a_nan_estimate_is_inconclusive():
    assert cs.claim_verdict(math.nan, math.nan, math.nan, math.nan, 0.1, 0.15, 0.05) == "inconclusive"


RUN = {"alpha": 0.05, "margin": 0.15, "nuisance": STUDY_NUISANCE, "simulations": 200, "seed": 0}


# --- claims table -------------------------------------------------------------------------------

CLAIMS = [
    {
        "id": "C1",
        "claim": "strong beats weak",
        "source": "Table 2",
        "setting": "strong",
        "against": "weak",
        "published_effect": 0.5,
        "published_against_rate": 0.25,
        "published_setting_rate": 0.75,
    },
    {
        "id": "C2",
        "claim": "weak beats the baseline",
        "source": "Table 1",
        "setting": "weak",
        "against": "baseline",
        "published_effect": 0.4,
        "published_against_rate": None,
        "published_setting_rate": 0.9,
    },
    {
        "id": "C3",
        "claim": "mixed beats the baseline",
        "source": "Sec. 4",
        "setting": "mixed",
        "against": "baseline",
        "published_effect": None,
        "published_against_rate": None,
        "published_setting_rate": None,
    },
    {
        "id": "C4",
        "claim": "augmented beats strong",
        "source": "Table 3",
        "setting": "augmented",
        "against": "strong",
        "published_effect": 0.15,
        "published_against_rate": 0.75,
        "published_setting_rate": 0.90,
    },
]


def test_claims_table_verdicts_on_constructed_data():
    n = 40
    df = _table(
        {
            "strong": [["win"] * n] * 2,
            "weak": [["loss"] * n] * 2,
            "mixed": [["win", "loss"] * (n // 2), ["loss", "win"] * (n // 2)],
        }
    )
    table = cs.claims_table(df, CLAIMS, **RUN)
    assert list(table.columns) == cs.COLUMNS
    assert list(table["verdict"]) == ["supported", "contradicted", "inconclusive", "not run"]
    c1, c2, c3, c4 = (table.iloc[i] for i in range(4))
    # No variation at all: the interval still has a width (the question part's floor).
    assert c1["effect"] == 1.0 and c1["ci_low"] > 0.9 and c1["ci_high"] == 1.0 and c1["p_value"] < 1e-6
    assert c1["n"] == n and c1["replicates"] == 2 and c1["published_in_ci"] is False
    assert c2["effect"] == -0.5 and c2["published_in_ci"] is False
    assert c3["effect"] == 0.0 and c3["p_value"] == pytest.approx(1.0) and c3["published_in_ci"] is None
    assert math.isnan(c3["power"]) and pd.isna(c3["n_for_80_power"])
    assert pd.isna(c4["n"]) and math.isnan(c4["effect"]) and math.isnan(c4["p_holm"])
    assert (table["margin"] == 0.15).all()
    # Holm over the three computed rows only; levels alpha/3, alpha/2, alpha by p.
    assert table["p_holm"][:3].tolist() == pytest.approx(cs.holm(table["p_value"][:3]).tolist())
    assert sorted(table["holm_level"][:3]) == pytest.approx([0.05 / 3, 0.05 / 2, 0.05])
    assert "excludes 0 after Holm" in c1["reading"] and "below the study's +40.0" in c2["reading"]
    assert c4["reading"] == "a setting it compares is not in this run"


def test_a_setting_that_always_ties_is_not_contradicted_by_one_that_mostly_loses():
    # The counter-example of a win-only measure: ties everywhere against 4 wins and 16 losses.
    df = _table({"ties": [["tie"] * 20] * 3, "mixed": [["win"] * 4 + ["loss"] * 16] * 3})
    claims = [{"id": "T", "claim": "", "source": "", "setting": "ties", "against": "mixed", "published_effect": None}]
    row = cs.claims_table(df, claims, **RUN).iloc[0]
    assert row["effect"] == pytest.approx(0.5 - 0.2)
    assert row["ci_low"] > 0 and row["verdict"] == "supported"


def test_effect_interval_and_test_agree_on_one_measure():
    # A setting as good as the baseline, with many ties, reads about 0, and across random grids
    # the 95% interval excludes 0 exactly when p < 0.05: against the baseline and between settings.
    rng = np.random.default_rng(1)
    grids = rng.choice([1.0, 0.5, 0.0], size=(2, 400, 12, 2), p=[0.35, 0.3, 0.35])
    for b in (None, grids[1]):
        effect, low, high, p = crossed_interval(grids[0], b)
        assert ((low > 0) | (high < 0)).tolist() == (p < 0.05).tolist()
        assert 0 < (p < 0.05).mean() < 0.15 and np.abs(effect).max() < 0.5
    df = _table({"s": [["win"] * 4 + ["tie"] * 4 + ["loss"] * 4] * 2})
    claims = [{"id": "B", "claim": "", "source": "", "setting": "s", "against": "baseline", "published_effect": None}]
    row = cs.claims_table(df, claims, **RUN).iloc[0]
    assert row["effect"] == 0 and row["ci_low"] < 0 < row["ci_high"] and row["p_value"] == pytest.approx(1)


def test_holm_can_make_a_claim_inconclusive():
    # One replicate, 15 wins, 4 losses, 1 tie of 20: p about 0.03 alone, doubled beside a null claim.
    df = _table({"a": [["win"] * 15 + ["loss"] * 4 + ["tie"]], "null": [["tie"] * 20]})
    claims = [{"id": "A", "setting": "a", "against": "baseline"}, {"id": "N", "setting": "null", "against": "baseline"}]
    table = cs.claims_table(df, claims, **RUN)
    p = table["p_value"].tolist()
    assert 0.025 < p[0] < 0.05 and p[1] == pytest.approx(1.0)
    assert table["p_holm"].tolist() == pytest.approx([2 * p[0], 1.0])
    assert table["verdict"].tolist() == ["inconclusive", "inconclusive"]
    alone = cs.claims_table(df, claims[:1], **RUN)
    assert alone["p_holm"][0] == p[0] and alone["verdict"][0] == "supported"


def test_power_is_that_of_the_procedure_and_grows_with_n():
    claims = [
        {
            "id": "S",
            "setting": "big",
            "against": "small",
            "published_effect": 0.15,
            "published_setting_rate": 0.9,
            "published_against_rate": 0.75,
        },
        {
            "id": "B",
            "setting": "small",
            "against": "baseline",
            "published_effect": 0.25,
            "published_setting_rate": 0.75,
            "published_against_rate": None,
        },
    ]
    nuisance = STUDY_NUISANCE
    power, n80 = cs.power_columns(claims, 20, 3, 0.05, nuisance, 400, seed=0)
    print(power, n80)
    assert 0.02 < power[0] < 0.3 < power[1]  # +15 at 20 questions is underpowered; +25 vs the baseline less so
    assert n80[1] < n80[0] <= 480
    rng = np.random.default_rng(0)
    at_n80 = cs.decision_power(claims, n80[0], 3, 0.05, nuisance, 800, rng)[0]
    assert at_n80 > 0.75  # the grid's 80% holds up with more simulated studies
    # Alone (no Holm partner) the same claim is easier to establish.
    alone = cs.decision_power(claims[:1], 20, 3, 0.05, nuisance, 800, np.random.default_rng(0))[0]
    with_family = cs.decision_power(claims, 20, 3, 0.05, nuisance, 800, np.random.default_rng(0))[0]
    assert alone > with_family


def test_simulated_qualities_follow_the_published_rates_and_controls_are_null():
    claims = [
        {"setting": "s1", "against": "baseline", "published_setting_rate": 0.75},
        {"setting": "s1", "against": "control-s", "published_setting_rate": None},
        {"setting": "s5", "against": "baseline", "published_setting_rate": None},
    ]
    nuisance = STUDY_NUISANCE
    q = cs.simulation_qualities(claims, nuisance)
    assert expected_score(q["s1"], nuisance) == pytest.approx(0.75)
    assert q["control-s"] == q["s1"] and q["s5"] == 0.0


def test_claims_need_setting_and_against():
    df = _table({"a": [["win", "loss"]]})
    with pytest.raises(PipelineError, match="claim 'X': missing against"):
        cs.claims_table(df, [{"id": "X", "setting": "a"}], **RUN)


def test_empty_table_runs_no_claim():
    df = pd.DataFrame(columns=list(cs.VERDICT_COLUMNS))
    table = cs.claims_table(df, CLAIMS, **RUN)
    assert (table["verdict"] == "not run").all() and table["p_holm"].isna().all()
