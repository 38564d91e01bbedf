import csv
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t

import winrate_table as wt
from conftest import REPO, fake_snakemake
from huatuo_study.common import DataError, PipelineError, write_jsonl
from huatuo_study.records import read_table_json, validator
from huatuo_study.statistics import study_file

# The setting's outcomes (setting_first, baseline_first) behind each verdict in _records: a tie
# from a win/loss flip, an invalid verdict from an invalid first order.
ORDERS_OF = {"win": ("win", "win"), "loss": ("loss", "loss"), "tie": ("win", "loss"), "invalid": ("invalid", "win")}


def _orders(first, second):
    return [{"order": "setting_first", "outcome": first}, {"order": "baseline_first", "outcome": second}]


def _records(setting, verdicts, answer="答案", baseline="基线答案。", tokens=(100, 10)):
    """Verdict records as judge_pairwise.py writes them (the fields the table reads)."""
    return [
        {
            "id": f"q{i}",
            "setting": setting,
            "verdict": v,
            "consistent": None if v == "invalid" else v != "tie",
            "orders": _orders(*ORDERS_OF.get(v, ("tie", "tie"))),
            "setting_answer": answer,
            "baseline_answer": baseline,
            "usage": {"prompt_tokens": 2 * tokens[0], "completion_tokens": 2 * tokens[1], "calls": 2},
        }
        for i, v in enumerate(verdicts)
    ]


def _records_from_orders(setting, outcome_pairs):
    """Records from the two orders' outcomes, the verdict by the MT-bench rule."""
    records = _records(setting, ["win"] * len(outcome_pairs))
    for record, (first, second) in zip(records, outcome_pairs):
        invalid = "invalid" in (first, second)
        record["verdict"] = "invalid" if invalid else first if first == second else "tie"
        record["consistent"] = None if invalid else first == second
        record["orders"] = _orders(first, second)
    return records


# setting1: 10 verdicts, 5 wins, 2 ties, 2 losses, 1 invalid; setting2: 4 verdicts, 0 wins
VERDICTS = {
    "setting1": ["win"] * 5 + ["tie"] * 2 + ["loss"] * 2 + ["invalid"],
    "setting2": ["loss", "tie", "invalid", "invalid"],
}
SETTINGS = [{"name": "setting1", "title": "Baseline recipe"}, {"name": "setting2", "title": "Scaling"}]
COLUMNS = [
    "setting",
    "title",
    "n",
    "wins",
    "ties",
    "losses",
    "invalid",
    "win_rate",
    "win_rate_ties_half",
    "ci_low",
    "ci_high",
    "p_value",
    "consistency",
    "win_rate_as_first",
    "win_rate_as_second",
    "order_flips",
    "order_flip_share",
    "study_order_score",
    "published_win_rate",
    "published_difference",
    "published_difference_low",
    "published_difference_high",
    "published_margin",
    "published_equivalent",
    "published_equivalence_p",
    "mean_answer_chars",
    "baseline_mean_answer_chars",
    "prompt_tokens",
    "completion_tokens",
    "judge_calls",
    "cost_usd",
    "replicates",
    "replicate_win_rate_min",
    "replicate_win_rate_max",
    "replicate_win_rate_sd",
    "lc_win_rate",
    "lc_ci_low",
    "lc_ci_high",
    "lc_note",
]
PUBLISHED = {"setting1": {"win_rate": 0.75, "wins": 15, "n": 20}}
PUBLISHED_COLUMNS = [c for c in COLUMNS if c.startswith("published_")]
STUDY_YAML = """settings: [setting1, setting2]
published:
  source: report Table 1
  n: 20
  win_rates: {setting1: 0.75, setting2: 0.90}
inference:
  equivalence_margin: 0.15
  simulation: {question_sd: 2.0, replicate_sd: 0.25, answer_sd: 1.0, order_bias: 0.3, tie_cut: 0.2, invalid: 0.01}
"""


def _by_setting():
    """One replicate per setting: {setting: [its records]}."""
    return {
        "setting1": [_records("setting1", VERDICTS["setting1"], answer="四个字符")],
        "setting2": [_records("setting2", VERDICTS["setting2"], answer="六个字符答案")],
    }


def test_winrate_table_counts_and_rates():
    df = wt.winrate_table(_by_setting(), {"setting1": "Baseline recipe"})
    assert list(df.columns) == COLUMNS
    one, two = df.to_dict(orient="records")
    assert one["setting"] == "setting1" and one["title"] == "Baseline recipe"
    assert (one["n"], one["wins"], one["ties"], one["losses"], one["invalid"]) == (10, 5, 2, 2, 1)
    assert one["win_rate"] == pytest.approx(0.5)  # invalid counts in n
    assert one["win_rate_ties_half"] == pytest.approx(0.6)
    assert two["title"] == "setting2"  # no title given: the name
    assert (two["n"], two["wins"], two["ties"], two["losses"], two["invalid"]) == (4, 0, 1, 1, 2)
    assert two["win_rate"] == 0.0 and two["win_rate_ties_half"] == pytest.approx(0.125)
    assert all(0.0 <= r <= 1.0 for r in df["win_rate"])


def test_winrate_table_statistics():
    one, two = wt.winrate_table(_by_setting()).to_dict(orient="records")
    # Wilson 95% of 5/10: 0.5 -+ z sqrt(0.025 + z^2/400) / (1 + z^2/10), z = 1.95996
    assert (one["ci_low"], one["ci_high"]) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))
    # 0 of 4: [0, z^2 / (4 + z^2)]
    assert (two["ci_low"], two["ci_high"]) == (pytest.approx(0.0), pytest.approx(3.84146 / 7.84146, abs=1e-5))
    # sign test, ties and invalid dropped: 5 wins vs 2 losses, P = 2 * (1 + 7 + 21) / 2^7
    assert one["p_value"] == pytest.approx(58 / 128)
    assert two["p_value"] == pytest.approx(1.0)  # 0 wins vs 1 loss
    # consistency among the questions judged validly both ways: ties came from disagreeing orders here
    assert one["consistency"] == pytest.approx(7 / 9) and two["consistency"] == pytest.approx(1 / 2)
    assert one["mean_answer_chars"] == 4 and two["mean_answer_chars"] == 6
    assert one["baseline_mean_answer_chars"] == 5 == two["baseline_mean_answer_chars"]
    assert (one["prompt_tokens"], one["completion_tokens"], one["judge_calls"]) == (2000, 200, 20)
    assert math.isnan(one["cost_usd"])  # no prices
    # per order (ORDERS_OF): the ties won as Assistant 1, the invalid one as Assistant 2
    assert (one["win_rate_as_first"], one["win_rate_as_second"]) == (pytest.approx(0.7), pytest.approx(0.6))
    assert one["order_flips"] == 2 and one["order_flip_share"] == pytest.approx(2 / 9)
    assert (two["win_rate_as_first"], two["win_rate_as_second"]) == (pytest.approx(0.25), pytest.approx(0.5))
    assert two["order_flips"] == 1 and two["order_flip_share"] == pytest.approx(1 / 2)
    assert all(pd.isna(one[c]) for c in PUBLISHED_COLUMNS)  # nothing to compare
    # in the study's order (baseline first, ORDERS_OF's second): 5 wins, 2 losses (the ties), 2
    # losses, 1 win (the invalid verdict) of 10; setting 2: loss, loss, win, win
    assert one["study_order_score"] == pytest.approx(0.6) and two["study_order_score"] == pytest.approx(0.5)


def test_per_order_rates_and_flips():
    pairs = [
        ("win", "win"),  # win
        ("win", "loss"),  # flip
        ("loss", "win"),  # flip
        ("win", "tie"),  # disagree, no flip
        ("tie", "tie"),
        ("invalid", "win"),  # a win as Assistant 2, but not judged validly both ways
        ("loss", "invalid"),
        ("invalid", "invalid"),
        ("loss", "loss"),
        ("tie", "loss"),  # disagree, no flip
    ]
    row = wt.winrate_table({"s": [_records_from_orders("s", pairs)]}).iloc[0]
    assert (row["n"], row["wins"], row["ties"], row["losses"], row["invalid"]) == (10, 1, 5, 1, 3)
    assert row["win_rate_as_first"] == pytest.approx(3 / 10)  # q1, q2, q4; invalid orders stay in n
    assert row["win_rate_as_second"] == pytest.approx(3 / 10)  # q1, q3, q6
    assert row["order_flips"] == 2 and row["order_flip_share"] == pytest.approx(2 / 7)  # of the 7 valid both ways
    assert row["consistency"] == pytest.approx(3 / 7)  # q1, q5, q9 agree
    # a judge that always prefers Assistant 1: every question flips, the verdicts are all ties
    biased = wt.winrate_table({"s": [_records_from_orders("s", [("win", "loss")] * 4)]}).iloc[0]
    assert (biased["win_rate"], biased["win_rate_as_first"], biased["win_rate_as_second"]) == (0.0, 1.0, 0.0)
    assert (biased["order_flips"], biased["order_flip_share"], biased["consistency"]) == (4, 1.0, 0.0)
    # nothing judged validly both ways: no share, no flips
    none = wt.winrate_table({"s": [_records_from_orders("s", [("invalid", "win"), ("win", "invalid")])]}).iloc[0]
    assert none["order_flips"] == 0 and math.isnan(none["order_flip_share"])
    assert (none["win_rate_as_first"], none["win_rate_as_second"]) == (0.5, 0.5)


def _grid(columns):
    """A questions x replicates grid from its replicates' score columns."""
    return np.array(columns, float).T


def test_study_order_score_is_the_baseline_first_order_each_question_once():
    pairs = [("win", "win"), ("win", "loss"), ("loss", "win"), ("tie", "tie"), ("win", "invalid")]
    rep0 = _records_from_orders("s", pairs)
    rep1 = _records_from_orders("s", [("loss", "loss")] * 4 + [("win", "win")])
    grid = wt.study_order_grid([rep0, rep1])
    np.testing.assert_array_equal(grid, [[1, 0], [0, 0], [1, 0], [0.5, 0], [0.5, 1]])  # invalid: 1/2
    row = wt.winrate_table({"s": [rep0, rep1]}).iloc[0]
    assert row["study_order_score"] == pytest.approx((0.5 + 0 + 0.5 + 0.25 + 0.75) / 5)
    # each question once: a question one replicate lacks counts once, by the replicate that has it
    rep1 = rep1[:4]
    assert wt.study_order_score(wt.study_order_grid([rep0, rep1])) == pytest.approx((0.5 + 0 + 0.5 + 0.25 + 0.5) / 5)


def test_published_difference_and_equivalence_by_hand():
    # one replicate, 15 wins and 5 losses against the study's 75%: the difference is 0 and both
    # parts have 19 df, so the interval is a plain t interval on the pooled standard error
    grid = _grid([[1] * 15 + [0] * 5])
    out = wt.published_comparison(grid, 0.75, 20, 0.15)
    se = math.sqrt((0.75 * 0.25 * 20 / 19) / 20 + 0.75 * 0.25 / 20)  # sample variance / Q + p(1-p)/n
    assert se == pytest.approx(0.138720, abs=1e-6)
    assert out["published_difference"] == pytest.approx(0.0, abs=1e-12)
    assert out["published_difference_low"] == pytest.approx(-2.093024 * se, abs=1e-6)
    assert out["published_difference_high"] == pytest.approx(2.093024 * se, abs=1e-6)
    # TOST: each one-sided p is P(T19 > 0.15 / se); the 90% interval (+-1.729133 se = 0.240) is
    # wider than the margin: not shown equivalent
    assert out["published_equivalence_p"] == pytest.approx(t.sf(0.15 / se, 19), rel=1e-6)
    assert out["published_equivalence_p"] == pytest.approx(0.14655, abs=1e-5)
    assert out["published_equivalent"] is False and out["published_margin"] == 0.15

    # three replicates: the crossed parts by hand (two-way ANOVA), each with its own t quantile
    base = [1.0] * 15 + [0.0] * 5
    reps = [base, [0.5] + base[1:], base[:15] + [1.0] + base[16:]]
    grid = _grid(reps)
    q, k = grid.shape
    rows, cols, grand = grid.mean(1), grid.mean(0), grid.mean()
    ms_run = q * sum((c - grand) ** 2 for c in cols) / (k - 1)
    ms_res = sum((grid[i, j] - rows[i] - cols[j] + grand) ** 2 for i in range(q) for j in range(k)) / (
        (q - 1) * (k - 1)
    )
    question_part = sum((r - grand) ** 2 for r in rows) / (q - 1) / q - ms_res / (q * k)
    run_part, published_part = ms_run / (q * k), 0.8 * 0.2 / 20
    d = grid.mean() - 0.8

    def half(alpha):
        return math.sqrt(
            t.isf(alpha / 2, q - 1) ** 2 * question_part
            + t.isf(alpha / 2, k - 1) ** 2 * run_part
            + t.isf(alpha / 2, 19) ** 2 * published_part
        )

    out = wt.published_comparison(grid, 0.8, 20, 0.15)
    assert out["published_difference"] == pytest.approx(d)
    assert (out["published_difference_low"], out["published_difference_high"]) == (
        pytest.approx(d - half(0.05)),
        pytest.approx(d + half(0.05)),
    )
    # the TOST p-value is where the one-sided bound reaches the nearer margin (the larger p)
    p = out["published_equivalence_p"]
    assert d - half(2 * p) == pytest.approx(-0.15, abs=1e-6) or d + half(2 * p) == pytest.approx(0.15, abs=1e-6)
    assert out["published_equivalent"] == (d - half(0.10) > -0.15 and d + half(0.10) < 0.15) == (p < 0.05)
    # a gap in the grid: that question is left out; fewer than 2 questions: empty
    gappy = grid.copy()
    gappy[0, 1] = np.nan
    assert wt.published_comparison(gappy, 0.8, 20, 0.15)["published_difference"] == pytest.approx(grid[1:].mean() - 0.8)
    empty = wt.published_comparison(grid[:1], 0.8, 20, 0.15)
    assert math.isnan(empty["published_difference"]) and empty["published_equivalent"] is None
    assert empty["published_win_rate"] == 0.8 and empty["published_margin"] == 0.15


def test_published_equivalence_when_the_interval_is_inside_the_margin():
    # 200 questions, 90% ours against a published 90% of 200: the 90% interval is +-0.05
    grid = _grid([[1] * 180 + [0] * 20])
    out = wt.published_comparison(grid, 0.9, 200, 0.15)
    assert out["published_equivalent"] is True and out["published_equivalence_p"] < 1e-4
    assert out["published_difference_low"] < 0 < out["published_difference_high"]
    # the study's 20 questions alone: at 75% its own part of the 90% half-width, 1.729 x 0.0968 = 0.167,
    # already exceeds 15 points, so no run of ours can be shown equivalent to it
    perfect = wt.published_comparison(_grid([[1] * 15 + [0] * 5] * 10), 0.75, 20, 0.15)
    assert perfect["published_equivalent"] is False and perfect["published_equivalence_p"] > 0.05


def _simulated_grids(rng, studies, q, k, truth):
    """Score grids from a crossed model whose expected score is exactly `truth`: question and run
    effects on the probability scale (uniform, mean 0), each cell the mean of two Bernoulli
    draws (so half the cells can be ties)."""
    prob = truth + rng.uniform(-0.08, 0.08, (studies, q, 1)) + rng.uniform(-0.03, 0.03, (studies, 1, k))
    return (rng.random((studies, q, k)) < prob).astype(float) / 2 + (rng.random((studies, q, k)) < prob) / 2


@pytest.mark.parametrize(
    "q, k, n, published, side",
    [
        (20, 3, 20, 0.80, -1),
        (20, 3, 20, 0.75, +1),
        (200, 3, 200, 0.80, -1),
        (200, 3, 200, 0.75, +1),
    ],
)
def test_tost_rejects_at_most_five_percent_at_the_margin(q, k, n, published, side):
    """The truth at the margin (ours = the study's expected rate +- 0.15): "equivalent" is a false
    claim, made at most ~5% of the time (2,000 studies: 5% + 2 standard errors = 6%). The study's
    rate is drawn as its own 20 (or 200) questions would give it."""
    rng = np.random.default_rng(20)
    studies, margin = 2000, 0.15
    grids = _simulated_grids(rng, studies, q, k, published + side * margin)
    observed = rng.binomial(n, published, studies) / n
    test = wt.equivalence_test(grids, observed, n, margin)
    rate = test["equivalent"].mean()
    assert rate <= 0.06, rate
    np.testing.assert_array_equal(test["equivalent"], test["p"] < 0.05)  # the interval and the p agree
    if q == 200:  # not vacuous: with 200 questions each side, the same rates are often shown equivalent
        same = wt.equivalence_test(_simulated_grids(rng, studies, q, k, published), observed, n, margin)
        assert same["equivalent"].mean() > 0.5


def test_winrate_table_with_published_rates():
    by_setting = {
        "setting1": [_records("setting1", ["win"] * 20)],
        "setting2": [_records("setting2", ["win"] * 15 + ["loss"] * 5)],
    }
    one, two = wt.winrate_table(by_setting, published=PUBLISHED, margin=0.15).to_dict(orient="records")
    expected = wt.published_comparison(wt.study_order_grid(by_setting["setting1"]), 0.75, 20, 0.15)
    assert {c: one[c] for c in PUBLISHED_COLUMNS} == pytest.approx(expected)
    assert one["study_order_score"] == 1.0 and one["published_difference"] == pytest.approx(0.25)
    assert all(pd.isna(two[c]) for c in PUBLISHED_COLUMNS)  # no published rate
    assert two["study_order_score"] == pytest.approx(0.75)
    with pytest.raises(PipelineError, match="equivalence margin"):
        wt.winrate_table(by_setting, published=PUBLISHED)
    row = wt.winrate_table({"s": [[]]}, published={"s": PUBLISHED["setting1"]}, margin=0.15).iloc[0]
    assert row["published_win_rate"] == 0.75 and math.isnan(row["published_difference"])
    assert pd.isna(row["published_equivalent"]) and math.isnan(row["study_order_score"])


def test_read_published_from_the_study_file():
    published = study_file.read_published(REPO / "config" / "study.yaml")
    assert {k: (v["win_rate"], v["wins"], v["n"]) for k, v in published.items()} == {
        "setting1": (0.75, 15, 20),
        "setting2": (0.9, 18, 20),
        "setting3": (0.8, 16, 20),
        "setting4": (0.8, 16, 20),
    }


@pytest.mark.parametrize(
    "text, key",
    [
        (STUDY_YAML.replace("setting1: 0.75", "setting1: 75"), "published.win_rates.setting1"),
        (STUDY_YAML.replace("setting1: 0.75", "setting1: 75%"), "published.win_rates.setting1"),
        (STUDY_YAML.replace("setting2: 0.90", "setting2: -0.1"), "published.win_rates.setting2"),
        (STUDY_YAML.replace("setting2: 0.90", "setting2: .nan"), "published.win_rates.setting2"),
        (STUDY_YAML.replace("setting2: 0.90", "setting2: true"), "published.win_rates.setting2"),
        (STUDY_YAML.replace("  n: 20\n", ""), "published.n"),
        (STUDY_YAML.replace("n: 20", "n: 0"), "published.n"),
        (STUDY_YAML.replace("n: 20", "n: twenty"), "published.n"),
        (STUDY_YAML.replace("  win_rates: {setting1: 0.75, setting2: 0.90}\n", ""), "published.win_rates"),
        ("settings: [setting1]\n", "published"),
    ],
)
def test_bad_study_file_names_the_file_and_key(tmp_path, text, key):
    study = tmp_path / "config" / "study.yaml"
    study.parent.mkdir()
    study.write_text(text, encoding="utf-8")
    with pytest.raises(PipelineError, match=re.escape(f"config/study.yaml: {key}:")):
        study_file.read_published(study)
    with pytest.raises(PipelineError, match=re.escape(f"config/study.yaml: {key}:")):
        wt.main(_smk(tmp_path, _write(tmp_path), study=study, compare_published=True))
    wt.main(_smk(tmp_path, _write(tmp_path), study=study, compare_published=False))  # not read: no comparison


def test_winrate_table_cost():
    df = wt.winrate_table(_by_setting(), prices={"input": 2.5, "output": 10.0})
    assert df.loc[0, "cost_usd"] == pytest.approx((2000 * 2.5 + 200 * 10.0) / 1e6)


def test_pairwise_table():
    by_setting = {
        "a": [_records("a", ["win", "win", "win", "loss", "tie", "win"])],
        "b": [_records("b", ["win", "loss", "tie", "win", "invalid", "loss"])],
        "c": [_records("c", ["win"] * 6)],
    }
    df = wt.pairwise_table(by_setting)
    assert list(df.columns) == ["setting_a", "setting_b", "n", "a_better", "b_better", "p_value"]
    rows = {(r["setting_a"], r["setting_b"]): r for r in df.to_dict(orient="records")}
    assert list(rows) == [("a", "b"), ("a", "c"), ("b", "c")]
    ab = rows[("a", "b")]
    assert (ab["n"], ab["a_better"], ab["b_better"]) == (6, 3, 1)  # q1, q2, q5 vs q3
    assert ab["p_value"] == pytest.approx(10 / 16)  # 2 * P(X <= 1), X ~ Bin(4, 1/2)
    ac = rows[("a", "c")]
    assert (ac["a_better"], ac["b_better"]) == (0, 2) and ac["p_value"] == pytest.approx(0.5)
    assert wt.pairwise_table({"a": by_setting["a"]}).empty
    same = wt.pairwise_table({"a": by_setting["a"], "a2": by_setting["a"]}).iloc[0]
    assert (same["a_better"], same["b_better"], same["p_value"]) == (0, 0, 1.0)  # nothing discordant


def test_winrate_table_empty_setting_is_nan():
    df = wt.winrate_table({"s": [[]]})
    assert df.loc[0, "n"] == 0 and math.isnan(df.loc[0, "win_rate"])
    assert df.loc[0, "replicates"] == 1
    assert all(
        math.isnan(df.loc[0, c])
        for c in ("replicate_win_rate_min", "replicate_win_rate_max", "replicate_win_rate_sd", "lc_win_rate")
    )


def test_winrate_table_unknown_verdict():
    with pytest.raises(PipelineError, match="unknown verdict"):
        wt.winrate_table({"s": [_records("s", ["draw"])]})


def _smk(tmp_path, paths, settings=SETTINGS, study=None, compare_published=False, replicates=1):
    if study is None:
        study = tmp_path / "config" / "study.yaml"
        study.parent.mkdir(exist_ok=True)
        study.write_text(STUDY_YAML, encoding="utf-8")
    return fake_snakemake(
        input={"verdicts": [str(p) for p in paths], "study": str(study)},
        output={
            "csv": str(tmp_path / "tables" / "winrate.csv"),
            "json": str(tmp_path / "tables" / "winrate.json"),
            "pairwise": str(tmp_path / "tables" / "pairwise.csv"),
            "replicates": str(tmp_path / "tables" / "replicates.csv"),
        },
        params={
            "settings": settings,
            "replicates": replicates,
            "prices": None,
            "compare_published": compare_published,
            "statistics": {"alpha": 0.05, "n_bootstrap": 200, "seed": 0},
        },
        rule="winrate_table",
    )


def _write(tmp_path):
    paths = []
    for name in VERDICTS:
        path = tmp_path / "verdicts" / f"{name}.jsonl"
        write_jsonl(path, _by_setting()[name][0])
        paths.append(path)
    return paths


def test_main_writes_csv_and_json(tmp_path):
    smk = _smk(tmp_path, _write(tmp_path))
    wt.main(smk)
    rows = json.loads((tmp_path / "tables" / "winrate.json").read_text(encoding="utf-8"))
    assert isinstance(rows, list) and [r["setting"] for r in rows] == ["setting1", "setting2"]
    # the interchange format the paper reads (scripts/huatuo_study/schemas/winrate_row.yaml): every column, typed
    assert read_table_json(tmp_path / "tables" / "winrate.json", "winrate_row") == rows
    assert list(rows[0]) == list(validator("winrate_row").schema["properties"])
    assert list(rows[0]) == COLUMNS
    assert {k: rows[0][k] for k in COLUMNS[:9]} == {
        "setting": "setting1",
        "title": "Baseline recipe",
        "n": 10,
        "wins": 5,
        "ties": 2,
        "losses": 2,
        "invalid": 1,
        "win_rate": 0.5,
        "win_rate_ties_half": 0.6,
    }
    assert rows[0]["cost_usd"] is None and rows[0]["p_value"] == pytest.approx(58 / 128)
    assert rows[0]["order_flips"] == 2 and rows[0]["win_rate_as_first"] == 0.7
    assert all(rows[0][c] is None for c in COLUMNS if c.startswith("published_"))  # compare_published false
    # one replicate: its rate is the spread's both ends, no sd; every answer 4 characters against 5:
    # equal length lies outside the data, so the length control is empty and says why
    assert (rows[0]["replicates"], rows[0]["replicate_win_rate_min"], rows[0]["replicate_win_rate_max"]) == (
        1,
        0.5,
        0.5,
    )
    assert rows[0]["replicate_win_rate_sd"] is None and rows[0]["lc_win_rate"] is None
    assert rows[0]["lc_note"] == "equal length outside the data: 100% of the answers are shorter than the baseline's"
    assert rows[1]["lc_win_rate"] is None and rows[1]["lc_ci_low"] is None and isinstance(rows[0]["replicates"], int)
    assert rows[1]["title"] == "Scaling" and rows[1]["invalid"] == 2 and rows[1]["win_rate"] == 0.0
    with open(tmp_path / "tables" / "winrate.csv", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["setting"] for r in csv_rows] == ["setting1", "setting2"]
    assert csv_rows[0]["n"] == "10" and csv_rows[0]["wins"] == "5" and float(csv_rows[0]["win_rate"]) == 0.5
    assert list(csv_rows[0]) == COLUMNS and csv_rows[0]["cost_usd"] == ""
    assert csv_rows[0]["replicates"] == "1" and csv_rows[0]["replicate_win_rate_sd"] == ""
    assert (
        csv_rows[1]["lc_win_rate"] == ""
        and csv_rows[1]["lc_ci_high"] == ""
        and "100% of the answers are longer" in csv_rows[1]["lc_note"]
    )
    assert all(csv_rows[0][c] == "" for c in COLUMNS if c.startswith("published_"))
    with open(tmp_path / "tables" / "pairwise.csv", encoding="utf-8") as f:
        pairs = list(csv.DictReader(f))
    assert pairs == [
        {
            "setting_a": "setting1",
            "setting_b": "setting2",
            "n": "4",
            "a_better": "4",
            "b_better": "0",
            "p_value": "0.125",
        }
    ]
    assert not [p for p in (tmp_path / "tables").iterdir() if p.name.startswith(".")]  # no temp files left


def test_main_checks_setting_order(tmp_path):
    paths = _write(tmp_path)
    with pytest.raises(DataError, match="setting2"):
        wt.main(_smk(tmp_path, list(reversed(paths))))


def test_main_checks_counts(tmp_path):
    # settings x replicates files (verdicts.read_runs): 2 files are neither 1 setting x 1 replicate ...
    with pytest.raises(PipelineError, match="2 verdict files for 1 settings x 1 replicates"):
        wt.main(_smk(tmp_path, _write(tmp_path), settings=SETTINGS[:1]))
    # ... nor 2 settings x 2 replicates
    with pytest.raises(PipelineError, match="2 verdict files for 2 settings x 2 replicates"):
        wt.main(_smk(tmp_path, _write(tmp_path), replicates=2))


def test_main_rejects_bad_verdict_and_empty_file(tmp_path):
    paths = _write(tmp_path)
    write_jsonl(paths[1], _records("setting2", ["draw"]))
    with pytest.raises(DataError, match=r"line 1: field 'verdict'"):
        wt.main(_smk(tmp_path, paths))
    record = _records("setting2", ["win"])[0]
    del record["usage"]["calls"]
    write_jsonl(paths[1], [record])
    with pytest.raises(DataError, match=r"line 1: field 'usage': 'calls' is a required property"):
        wt.main(_smk(tmp_path, paths))
    del record["consistent"]
    write_jsonl(paths[1], [record])
    with pytest.raises(DataError, match=r"line 1: 'consistent' is a required property"):
        wt.main(_smk(tmp_path, paths))
    write_jsonl(paths[1], [])
    with pytest.raises(DataError, match="no verdicts"):
        wt.main(_smk(tmp_path, paths))


def test_main_compares_with_published(tmp_path):
    wt.main(_smk(tmp_path, _write(tmp_path), compare_published=True))
    one, two = json.loads((tmp_path / "tables" / "winrate.json").read_text(encoding="utf-8"))
    # the margin from the study file's inference section; ours in the study's order: 0.6 and 0.5
    grid = wt.study_order_grid(_by_setting()["setting1"])
    assert {c: one[c] for c in PUBLISHED_COLUMNS} == pytest.approx(wt.published_comparison(grid, 0.75, 20, 0.15))
    assert one["published_margin"] == 0.15 and one["published_difference"] == pytest.approx(0.6 - 0.75)
    assert two["published_win_rate"] == 0.9 and two["published_difference"] == pytest.approx(0.5 - 0.9)
    assert one["published_equivalent"] is False and two["published_equivalent"] is False
    with open(tmp_path / "tables" / "winrate.csv", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    assert (row["published_win_rate"], row["published_margin"], row["published_equivalent"]) == (
        "0.75",
        "0.15",
        "False",
    )


def test_main_checks_orders(tmp_path):
    paths = _write(tmp_path)
    records = _records("setting2", ["win"])
    records[0]["orders"] = records[0]["orders"][:1]
    write_jsonl(paths[1], records)
    with pytest.raises(DataError, match=r"line 1: field 'orders'"):
        wt.main(_smk(tmp_path, paths))
    records[0]["orders"] = _orders("win", "draw")
    write_jsonl(paths[1], records)
    with pytest.raises(DataError, match=r"line 1: field 'orders.1.outcome': 'draw' is not one of"):
        wt.main(_smk(tmp_path, paths))


# --- replicates ---------------------------------------------------------------------------------

# Two replicates of one setting on the same 10 questions: 5 and 2 wins (rates 0.5 and 0.2).
REPLICATE_VERDICTS = [
    ["win"] * 5 + ["tie"] * 2 + ["loss"] * 2 + ["invalid"],
    ["win", "loss", "loss", "tie", "win", "loss", "tie", "loss", "invalid", "invalid"],
]


def test_replicates_are_pooled_with_their_spread():
    replicates = [_records("s", v) for v in REPLICATE_VERDICTS]
    row = wt.winrate_table({"s": replicates}).iloc[0]
    # pooled: n = 10 questions x 2 replicates, every count the sum of the replicates'
    assert (row["n"], row["wins"], row["ties"], row["losses"], row["invalid"]) == (20, 7, 4, 6, 3)
    assert row["win_rate"] == pytest.approx(7 / 20) and row["win_rate_ties_half"] == pytest.approx(9 / 20)
    assert row["p_value"] == pytest.approx(wt.exact_binomial_p(7, 13))  # sign test on the pooled wins and losses
    assert (row["ci_low"], row["ci_high"]) == tuple(pytest.approx(x) for x in wt.wilson_interval(7, 20))
    assert (row["prompt_tokens"], row["judge_calls"]) == (4000, 40)
    # the replicates' own rates 5/10 and 2/10: sd (ddof 1) by hand
    rates = [0.5, 0.2]
    mean = sum(rates) / 2
    sd = math.sqrt(sum((r - mean) ** 2 for r in rates) / (2 - 1))
    assert sd == pytest.approx(0.3 / math.sqrt(2))
    assert row["replicates"] == 2
    assert (row["replicate_win_rate_min"], row["replicate_win_rate_max"]) == (pytest.approx(0.2), pytest.approx(0.5))
    assert row["replicate_win_rate_sd"] == pytest.approx(sd)
    # pooling does not depend on the replicates' order
    swapped = wt.winrate_table({"s": replicates[::-1]}).iloc[0]
    assert (swapped["wins"], swapped["n"], swapped["replicate_win_rate_sd"]) == (7, 20, pytest.approx(sd))


def test_three_replicates_sd_by_hand():
    verdicts = [["win"] * 4 + ["loss"] * 4, ["win"] * 2 + ["loss"] * 6, ["win"] * 7 + ["tie"]]
    row = wt.winrate_table({"s": [_records("s", v) for v in verdicts]}).iloc[0]
    rates = [4 / 8, 2 / 8, 7 / 8]
    mean = sum(rates) / 3
    sd = math.sqrt(sum((r - mean) ** 2 for r in rates) / 2)
    assert (row["n"], row["wins"], row["replicates"]) == (24, 13, 3)
    assert (row["replicate_win_rate_min"], row["replicate_win_rate_max"]) == (0.25, 0.875)
    assert row["replicate_win_rate_sd"] == pytest.approx(sd)


def _with_lengths(records, lengths):
    for record, n in zip(records, lengths):
        record["setting_answer"] = "字" * n
    return records


def _logit_lc(scores, diff, difficulty=None):
    """statsmodels' Logit on [1, tanh(diff / sd), difficulty], read with the length term at 0."""
    import statsmodels.api as sm
    from scipy.special import expit

    x = np.column_stack(
        [np.ones(len(scores)), np.tanh(diff / np.std(diff, ddof=1))] + ([] if difficulty is None else [difficulty])
    )
    params = sm.Logit(scores, x).fit(disp=0).params
    x[:, 1] = 0
    return float(expit(x @ params).mean())


LC_VERDICTS = (
    ["win", "loss", "win", "tie", "loss", "win", "loss", "win"],
    ["loss", "win", "win", "loss", "tie", "win", "loss", "loss"],
)
LC_LENGTHS = ([10, 3, 4, 8, 6, 12, 9, 2], [9, 5, 11, 2, 7, 4, 12, 3])


def test_lc_win_rate_is_the_length_controlled_rate_of_the_pooled_verdicts():
    # wins with long and with short answers (no separation), lengths varying across replicates;
    # one setting: no other settings to measure the questions' difficulty, so no instruction term
    reps = [_with_lengths(_records("s", v), n) for v, n in zip(LC_VERDICTS, LC_LENGTHS)]
    row = wt.winrate_table({"s": reps}, n_boot=300).iloc[0]
    pooled = reps[0] + reps[1]
    scores = np.array([{"win": 1.0, "tie": 0.5, "loss": 0.0}[r["verdict"]] for r in pooled])
    diff = np.array([len(r["setting_answer"]) - len("基线答案。") for r in pooled], float)
    expected = _logit_lc(scores, diff)
    assert row["lc_win_rate"] == pytest.approx(expected, abs=1e-8)
    assert row["lc_win_rate"] != pytest.approx(row["win_rate_ties_half"])  # the lengths matter here
    assert row["lc_ci_low"] < row["lc_win_rate"] < row["lc_ci_high"] and pd.isna(row["lc_note"])
    # only the first replicate's data would give another rate: the column pools
    assert row["lc_win_rate"] != pytest.approx(_logit_lc(scores[:8], diff[:8]))


def test_lc_instruction_term_from_the_other_settings():
    # Setting s's difficulty on each question comes from t's two replicates: logit((scores + 1/2) / 3).
    rng = np.random.default_rng(0)
    kinds = ["win", "tie", "loss"]
    s_reps = [_with_lengths(_records("s", list(rng.choice(kinds, 30))), rng.integers(1, 12, 30)) for _ in range(2)]
    t_reps = [_records("t", list(rng.choice(kinds, 30))) for _ in range(2)]
    row = wt.winrate_table({"s": s_reps, "t": t_reps}, n_boot=300).iloc[0]
    score = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    p = np.array([(score[a["verdict"]] + score[b["verdict"]] + 0.5) / 3 for a, b in zip(*t_reps)])
    difficulty = np.tile(np.log(p / (1 - p)), 2)
    pooled = s_reps[0] + s_reps[1]
    scores = np.array([score[r["verdict"]] for r in pooled])
    diff = np.array([len(r["setting_answer"]) - len("基线答案。") for r in pooled], float)
    assert pd.isna(row["lc_note"])  # the term is used: the fit and its interval exist
    assert row["lc_win_rate"] == pytest.approx(_logit_lc(scores, diff, difficulty), abs=1e-8)
    assert row["lc_win_rate"] != pytest.approx(_logit_lc(scores, diff))


def test_lc_win_rate_is_empty_when_every_verdict_is_a_win():
    rep0 = _with_lengths(_records("s", ["win"] * 4), [3, 8, 5, 12])
    rep1 = _with_lengths(_records("s", ["win"] * 4), [4, 9, 2, 6])
    row = wt.winrate_table({"s": [rep0, rep1]}, n_boot=100).iloc[0]
    assert row["win_rate"] == 1.0 and math.isnan(row["lc_win_rate"]) and math.isnan(row["lc_ci_low"])
    assert row["lc_note"].startswith("the fit separates")
    none = wt.winrate_table({"s": [_records("s", ["loss"] * 4), _records("s", ["tie"] * 4)]}, n_boot=100).iloc[0]
    assert math.isnan(none["lc_win_rate"])  # every answer shorter than the baseline's: no value
    assert "100% of the answers are shorter" in none["lc_note"]


def test_pairwise_pairs_replicate_r_with_replicate_r():
    # a and b agree question by question within each replicate (nothing discordant), but replicate 0
    # of one against replicate 1 of the other would disagree on every question
    a = [_records("a", ["win"] * 3), _records("a", ["loss"] * 3)]
    b = [_records("b", ["win"] * 3), _records("b", ["loss"] * 3)]
    c = [_records("c", ["loss"] * 3), _records("c", ["win"] * 3)]
    df = wt.pairwise_table({"a": a, "b": b, "c": c})
    rows = {(r["setting_a"], r["setting_b"]): r for r in df.to_dict(orient="records")}
    ab = rows["a", "b"]
    assert (ab["n"], ab["a_better"], ab["b_better"], ab["p_value"]) == (6, 0, 0, 1.0)  # 3 questions x 2 replicates
    ac = rows["a", "c"]
    assert (ac["n"], ac["a_better"], ac["b_better"]) == (6, 3, 3)  # replicate 0: a won; replicate 1: c won
    # mixed within one replicate: a's replicate 1 question q1 against b's replicate 1 question q1 only
    a2 = [_records("a", ["win", "loss", "tie"]), _records("a", ["loss", "win", "loss"])]
    b2 = [_records("b", ["loss", "loss", "win"]), _records("b", ["win", "loss", "loss"])]
    row = wt.pairwise_table({"a": a2, "b": b2}).iloc[0]
    # rep 0: q0 a, q2 b; rep 1: q0 b, q1 a
    assert (row["n"], row["a_better"], row["b_better"]) == (6, 2, 2)


def _write_replicates(tmp_path, verdicts_by_setting):
    """Files in rules/common.smk runs_of order: each setting's replicates, settings in order."""
    paths = []
    for name, replicates in verdicts_by_setting.items():
        for r, verdicts in enumerate(replicates):
            path = tmp_path / "verdicts" / name / f"rep{r}.jsonl"
            write_jsonl(path, _records(name, verdicts))
            paths.append(path)
    return paths


def test_main_pools_replicates(tmp_path):
    paths = _write_replicates(
        tmp_path,
        {
            "setting1": REPLICATE_VERDICTS,
            "setting2": [["win"] * 10, ["loss"] * 10],
        },
    )
    wt.main(_smk(tmp_path, paths, replicates=2))
    one, two = json.loads((tmp_path / "tables" / "winrate.json").read_text(encoding="utf-8"))
    assert (one["n"], one["wins"], one["replicates"]) == (20, 7, 2)
    assert (one["replicate_win_rate_min"], one["replicate_win_rate_max"]) == (pytest.approx(0.2), pytest.approx(0.5))
    assert one["replicate_win_rate_sd"] == pytest.approx(0.3 / math.sqrt(2))
    assert (two["n"], two["wins"], two["replicate_win_rate_min"], two["replicate_win_rate_max"]) == (20, 10, 0.0, 1.0)
    assert two["lc_win_rate"] is None and "shorter" in two["lc_note"]  # every answer shorter than the baseline's
    with open(tmp_path / "tables" / "pairwise.csv", encoding="utf-8") as f:
        pair = next(csv.DictReader(f))
    # replicate 0: setting2 won all 10, setting1 5 of them; replicate 1: setting1 won q0 and q4
    assert (pair["n"], pair["a_better"], pair["b_better"]) == ("20", "2", "5")
    with open(tmp_path / "tables" / "replicates.csv", encoding="utf-8") as f:
        listed = [(r["setting"], r["replicate"], r["n"], r["wins"], float(r["win_rate"])) for r in csv.DictReader(f)]
    assert listed == [
        ("setting1", "0", "10", "5", 0.5),
        ("setting1", "1", "10", "2", 0.2),
        ("setting2", "0", "10", "10", 1.0),
        ("setting2", "1", "10", "0", 0.0),
    ]
    # a file of another setting in a replicate's place
    with pytest.raises(DataError, match="setting2"):
        wt.main(_smk(tmp_path, [paths[0], paths[2], paths[1], paths[3]], replicates=2))
