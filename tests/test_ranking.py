"""The ranking (bradley_terry.py, ranking_table.py, figure_ranking.py, huatuo_study/paper/ranking.py): every
setting's Bradley-Terry score against the baseline on Arena-Hard-Auto's scale, checked against an
independent logistic fit of the Bradley-Terry model (statsmodels) and against the crossed
interval it maps; its edge cases (all wins, a setting not run) and its errors; the stage's files,
the figure and the paper's table."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import expit, logit

import figure_ranking
import paper_data
import ranking_table
from conftest import fake_snakemake
from huatuo_study.common import PipelineError
from huatuo_study.paper.ranking import ranking_context
from huatuo_study.records import read_table_json
from huatuo_study.statistics import bradley_terry as bt
from huatuo_study.statistics.claim_stats import per_question
from huatuo_study.statistics.crossed_stats import crossed_interval
from paper_data import RANKING, make_context, study_config
from render_tex import render_paper
from test_claims_tables import _write_runs

# A hand-made verdict set: 6 questions x 2 replicates per setting (an unparseable verdict counts
# as a tie). Mean scores: good 9/12 = 0.75, even 0.5, poor 3.5/12, sweep 1.
VERDICTS = {
    "good": [["win", "win", "win", "tie", "loss", "win"], ["win", "tie", "win", "win", "loss", "win"]],
    "even": [["win", "loss", "tie", "tie", "win", "loss"], ["tie", "invalid", "win", "loss", "tie", "tie"]],
    "poor": [["loss", "loss", "tie", "win", "loss", "loss"], ["loss", "win", "loss", "tie", "loss", "invalid"]],
    "sweep": [["win"] * 6, ["win"] * 6],
}
MEAN_SCORE = {"good": 0.75, "even": 0.5, "poor": 3.5 / 12, "sweep": 1.0}
SCORE_OF = {"win": 1.0, "tie": 0.5, "invalid": 0.5, "loss": 0.0}
ALPHA = 0.05


def frame(verdicts=VERDICTS):
    return pd.DataFrame(
        [
            {"setting": s, "replicate": r, "id": f"q{i}", "verdict": v, "answer_chars": 10, "baseline_chars": 12}
            for s, reps in verdicts.items()
            for r, row in enumerate(reps)
            for i, v in enumerate(row)
        ]
    )


def arena_hard_fit(verdicts) -> dict[str, float]:
    """Arena-Hard-Auto's compute_mle_elo, refitted independently: one logistic regression of all
    the settings' battles against the baseline (no intercept; the baseline's column dropped, which
    anchors it at 0), a column of +ln(10) for the setting, every battle doubled and a tie (or an
    unparseable verdict) one win and one loss; scores 400 * coefficient + 1000."""
    names = list(verdicts)
    x, y = [], []
    for j, setting in enumerate(names):
        for reps in verdicts[setting]:
            for v in reps:
                row = np.zeros(len(names))
                row[j] = math.log(10)
                outcomes = {"win": (1, 1), "loss": (0, 0)}.get(v, (1, 0))
                for outcome in outcomes:
                    x.append(row)
                    y.append(outcome)
    fit = sm.Logit(np.array(y, float), np.array(x)).fit(disp=0, method="newton", tol=1e-12, maxiter=200)
    return {s: 400 * c + 1000 for s, c in zip(names, fit.params)}


def glm_fit(verdicts) -> dict[str, float]:
    """The same model as a binomial GLM of each verdict's score (ties one half, a quasi-likelihood
    with the same maximum): a second route to the same coefficients."""
    names = list(verdicts)
    x, y = [], []
    for j, setting in enumerate(names):
        for reps in verdicts[setting]:
            for v in reps:
                row = np.zeros(len(names))
                row[j] = 1.0
                x.append(row)
                y.append(SCORE_OF[v])
    fit = sm.GLM(np.array(y), np.array(x), family=sm.families.Binomial()).fit(tol=1e-12)
    return {s: 1000 + 400 * c / math.log(10) for s, c in zip(names, fit.params)}


# --- the score --------------------------------------------------------------------------------------


def test_scores_equal_an_independent_bradley_terry_fit_with_the_baseline_anchored():
    interior = {s: VERDICTS[s] for s in ("good", "even", "poor")}
    table = bt.ranking(frame(interior), list(interior), ALPHA).set_index("setting")
    for reference in (arena_hard_fit(interior), glm_fit(interior)):
        for setting, score in reference.items():
            assert table.loc[setting, "score"] == pytest.approx(score, abs=1e-6), setting
    # by hand: 0.75 is odds of 3, 400 log10(3) above the baseline; 0.5 is the baseline's 1000
    assert table.loc["good", "score"] == pytest.approx(1000 + 400 * math.log10(3))
    assert table.loc["even", "score"] == pytest.approx(1000.0)
    assert table.loc["poor", "win_rate"] == pytest.approx(3.5 / 12)
    assert table.loc["baseline", "score"] == 1000.0 and table.loc["baseline", "ci_low"] == 1000.0


def test_interval_is_the_crossed_interval_mapped_through_the_same_transform():
    df = frame()
    table = bt.ranking(df, list(VERDICTS), ALPHA).set_index("setting")
    for setting in ("good", "even", "poor"):
        effect, low, high, _ = crossed_interval(per_question(df, setting), None, ALPHA)
        assert float(effect) + 0.5 == pytest.approx(MEAN_SCORE[setting])
        assert table.loc[setting, "ci_low"] == pytest.approx(float(bt.elo_from_rate(float(low) + 0.5)), abs=1e-9)
        assert table.loc[setting, "ci_high"] == pytest.approx(float(bt.elo_from_rate(float(high) + 0.5)), abs=1e-9)
        assert table.loc[setting, "ci_low"] < table.loc[setting, "score"] < table.loc[setting, "ci_high"]
        assert (table.loc[setting, "n"], table.loc[setting, "replicates"]) == (6, 2)
    # the level follows alpha: a 50% interval lies inside the 95% one
    narrow = bt.ranking(df, list(VERDICTS), 0.5).set_index("setting")
    assert (
        table.loc["good", "ci_low"]
        < narrow.loc["good", "ci_low"]
        < narrow.loc["good", "ci_high"]
        < table.loc["good", "ci_high"]
    )


def test_a_setting_with_all_wins_is_scored_half_a_question_inside():
    df = frame()
    row = bt.ranking(df, list(VERDICTS), ALPHA).set_index("setting").loc["sweep"]
    clipped = 1 - 1 / (2 * 6)  # six questions
    assert row["score"] == pytest.approx(1000 + 400 * math.log10(clipped / (1 - clipped)))
    assert row["win_rate"] == 1.0 and "won every question" in row["note"]
    # the lower end is crossed_interval's; the upper its mirror on the logit scale (the widened end,
    # a rate of 1, has no finite score)
    _, low, high, _ = crossed_interval(per_question(df, "sweep"), None, ALPHA)
    assert float(high) == 0.5  # crossed_interval widens to the unclipped rate 1
    assert row["ci_low"] == pytest.approx(float(bt.elo_from_rate(float(low) + 0.5)))
    assert math.isfinite(row["ci_high"])
    assert row["ci_high"] - row["score"] == pytest.approx(row["score"] - row["ci_low"])
    # all losses: the same, mirrored
    lost = bt.ranking(frame({"lost": [["loss"] * 6, ["loss"] * 6]}), ["lost"], ALPHA).set_index("setting").loc["lost"]
    assert lost["score"] == pytest.approx(2000 - row["score"])
    assert (lost["ci_low"], lost["ci_high"]) == pytest.approx((2000 - row["ci_high"], 2000 - row["ci_low"]))
    assert "lost every question" in lost["note"]


def test_ranks_are_by_score_with_the_baseline_among_them_and_a_setting_not_run_last():
    table = bt.ranking(frame(), ["poor", "missing", "good", "even", "sweep"], ALPHA, titles={"good": "Good recipe"})
    assert list(table.columns) == bt.COLUMNS
    assert list(table["setting"]) == ["sweep", "good", "baseline", "even", "poor", "missing"]
    # even and the baseline both score 1000: they share rank 3
    assert list(table["rank"].astype(object).where(table["rank"].notna(), None)) == [1, 2, 3, 3, 5, None]
    missing = table.set_index("setting").loc["missing"]
    assert missing["note"] == bt.NOTES["not run"] and math.isnan(missing["score"]) and pd.isna(missing["n"])
    assert table.set_index("setting").loc["good", "title"] == "Good recipe"
    assert table.set_index("setting").loc["poor", "title"] == "poor"


def test_elo_transform_by_hand():
    assert bt.elo_from_rate(0.5) == 1000.0
    assert bt.elo_from_rate(10 / 11) == pytest.approx(1400.0)  # odds 10
    assert bt.elo_from_rate(1 / 101) == pytest.approx(200.0)  # odds 1/100
    assert bt.elo_from_logit(logit(0.8)) == pytest.approx(bt.elo_from_rate(0.8))
    assert expit((bt.elo_from_rate(0.3) - 1000) * math.log(10) / 400) == pytest.approx(0.3)


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5])
def test_alpha_outside_zero_one_is_refused(alpha):
    with pytest.raises(PipelineError, match="alpha"):
        bt.ranking(frame(), list(VERDICTS), alpha)


def test_verdicts_of_a_setting_outside_the_run_are_refused():
    with pytest.raises(PipelineError, match="not in the run: sweep"):
        bt.ranking(frame(), ["good", "even", "poor"], ALPHA)


@pytest.mark.parametrize("settings", [["good", "good"], ["good", "baseline"]])
def test_repeated_settings_or_one_named_baseline_are_refused(settings):
    with pytest.raises(PipelineError, match="distinct"):
        bt.ranking(frame({"good": VERDICTS["good"]}), settings, ALPHA)


def test_a_replicate_missing_a_question_is_refused():
    short = {"good": VERDICTS["good"], "even": [VERDICTS["even"][0], VERDICTS["even"][1][:5]]}
    with pytest.raises(PipelineError, match="even, replicate 1: misses 1 question"):
        bt.ranking(frame(short), list(short), ALPHA)


def test_a_rate_outside_zero_one_is_refused():
    with pytest.raises(PipelineError, match=r"\[0, 1\]"):
        bt.elo_from_rate(1.2)


# --- the stage --------------------------------------------------------------------------------------


def stage(tmp_path, verdicts=VERDICTS, replicates=2):
    paths = _write_runs(tmp_path / "verdicts", verdicts)
    return fake_snakemake(
        input={"verdicts": [str(p) for p in paths]},
        output={"csv": str(tmp_path / "tables" / "ranking.csv"), "json": str(tmp_path / "tables" / "ranking.json")},
        params={
            "settings": [{"name": s, "title": f"Title of {s}"} for s in verdicts],
            "replicates": replicates,
            "alpha": ALPHA,
        },
    )


def test_stage_writes_the_table_as_csv_and_checked_json(tmp_path):
    smk = stage(tmp_path)
    ranking_table.main(smk)
    rows = read_table_json(smk.output.json, "ranking_row")  # schemas/ranking_row.yaml
    assert [r["setting"] for r in rows] == ["sweep", "good", "baseline", "even", "poor"]
    good = rows[1]
    assert good["title"] == "Title of good" and (good["n"], good["replicates"]) == (6, 2)
    assert good["score"] == pytest.approx(1000 + 400 * math.log10(3)) and good["win_rate"] == 0.75
    assert rows[2] == {
        "rank": 3,
        "setting": "baseline",
        "title": "baseline",
        "score": 1000.0,
        "ci_low": 1000.0,
        "ci_high": 1000.0,
        "win_rate": 0.5,
        "n": 6,
        "replicates": None,
        "note": bt.NOTES["anchor"],
    }
    csv = pd.read_csv(smk.output.csv)
    assert list(csv.columns) == bt.COLUMNS and list(csv["setting"]) == [r["setting"] for r in rows]
    assert csv["score"].tolist() == pytest.approx([r["score"] for r in rows])


def test_stage_refuses_a_file_count_that_does_not_match_the_run(tmp_path):
    smk = stage(tmp_path, replicates=3)
    with pytest.raises(PipelineError, match="8 verdict files for 4 settings x 3 replicates"):
        ranking_table.main(smk)
    assert not (tmp_path / "tables" / "ranking.json").exists()


def test_a_ranking_row_that_breaks_the_schema_is_refused(tmp_path):
    smk = stage(tmp_path)
    ranking_table.main(smk)
    rows = json.loads((tmp_path / "tables" / "ranking.json").read_text())
    rows[0]["win_rate"] = 1.5
    (tmp_path / "bad.json").write_text(json.dumps(rows))
    with pytest.raises(Exception, match="row 1.win_rate"):
        read_table_json(tmp_path / "bad.json", "ranking_row")


# --- the figure and the paper ------------------------------------------------------------------------


def test_figure_plots_the_settings_in_rank_order(tmp_path):
    smk = stage(tmp_path)
    ranking_table.main(smk)
    numbers = {s: k for k, s in enumerate(VERDICTS, 1)}
    rows = figure_ranking.ranking_rows(read_table_json(smk.output.json, "ranking_row"), numbers)
    assert [(r["k"], r["setting"]) for r in rows] == [(4, "sweep"), (1, "good"), (2, "even"), (3, "poor")]
    path = tmp_path / "ranking.pdf"
    figure_ranking.main(
        fake_snakemake(input={"ranking": smk.output.json}, output={"figure": str(path)}, params={"numbers": numbers})
    )
    assert path.read_bytes().startswith(b"%PDF")
    with pytest.raises(PipelineError, match="'sweep' has no number"):
        figure_ranking.ranking_rows(read_table_json(smk.output.json, "ranking_row"), {"even": 1})


@pytest.fixture
def fixture_claims(monkeypatch):
    """The fixture run's claims limited to those paper_data has numbers for (the study file may
    name more than the paper tests' fixture knows)."""
    study = {
        **paper_data.STUDY,
        "claims": [c for c in paper_data.STUDY["claims"] if c["id"] in paper_data.CLAIM_STATS["course"]],
    }
    monkeypatch.setattr(paper_data, "STUDY", study)


def test_paper_shows_the_ranking_table_and_figure(fixture_claims):
    config = study_config()
    context = make_context(config)  # paper_data.RANKING
    assert context["ranking"]["rows"][0] == {
        "rank": "1",
        "label": "Setting 2",
        "score": "1120",
        "ci": "[1010, 1231]",
        "rate": "66.5",
        "n": "20 x 2",
    }
    assert context["ranking"]["notes"] == ["Setting 3: not run: no verdicts for this setting."]
    tex = render_paper(context)
    assert r"\label{tab:ranking}" in tex and r"\includegraphics[width=0.8\linewidth]{ranking.pdf}" in tex
    assert r"1 & Setting 2 & 1120 & [1010, 1231] & 66.5 & 20 x 2 \\" in tex
    assert r"2 & Baseline (anchor) & 1000 & -- & 50.0 & 20 \\" in tex
    assert r"-- & Setting 3 & -- & -- & -- & -- \\" in tex
    assert tex.index(r"\subsection{Ranking}") < tex.index(r"\section{Analysis}")
    # without a ranking the paper has no such section
    assert r"\subsection{Ranking}" not in render_paper(make_context(config, ranking=()))


def test_paper_refuses_a_ranking_of_a_setting_outside_the_config():
    with pytest.raises(PipelineError, match="'elsewhere' is not in the config"):
        ranking_context([{**RANKING[0], "setting": "elsewhere"}], [{"key": "setting1", "k": 1}])
