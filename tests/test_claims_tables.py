"""The tables that pool verdict files of several runs: the claims table (claims_table.py) and the
judges' agreement (judge_agreement.py)."""

import csv
import itertools
import json
import math
import re

import numpy as np
import pytest

import claims_table as ct
import judge_agreement as ja
import judge_pairwise as jp
from conftest import fake_snakemake
from huatuo_study.chat_api import Reply
from huatuo_study.common import PipelineError, write_jsonl
from huatuo_study.judging.verdicts import verdict_frame
from huatuo_study.records import read_table_json
from huatuo_study.statistics import claim_stats as cs
from huatuo_study.statistics import study_file
from huatuo_study.statistics.crossed_stats import crossed_interval
from test_crossed_stats import STUDY_NUISANCE

# --- verdict records, as judge_pairwise.py writes them ------------------------------------------

# The label about Assistant 1 that gives the setting each outcome, per order (judge_pairwise.OUTCOME inverted).
LABEL_FOR = {order: {outcome: label for label, outcome in outcomes.items()} for order, outcomes in jp.OUTCOME.items()}
# The setting's outcomes in the two orders behind each verdict (a tie from a win/loss flip).
OUTCOMES_OF = {"win": ("win", "win"), "loss": ("loss", "loss"), "tie": ("win", "loss"), "invalid": ("invalid", "win")}
JUDGE = {"backend": "openai", "model": "judge-model"}


def _reply(order, outcome):
    label = LABEL_FOR[order][outcome]
    text = "I cannot decide." if label is None else f"Reasons.\n{jp.LABEL_TEXT[label]}"
    return Reply(text, prompt_tokens=120, completion_tokens=15)


def _records(setting, verdicts):
    """One record per question q0, q1, ... through judge_pairwise.verdict_record."""
    records = []
    for i, verdict in enumerate(verdicts):
        item = jp.Item(id=f"q{i}", question=f"问题{i}", setting_answer="答" * (3 + i % 5), baseline_answer="基线答案。")
        orders = [
            jp.order_record(order, [_reply(order, outcome)]) for order, outcome in zip(jp.ORDERS, OUTCOMES_OF[verdict])
        ]
        record = jp.verdict_record(item, setting, JUDGE, orders)
        assert record["verdict"] == verdict
        records.append(record)
    return records


def _write_runs(folder, verdicts_by_setting):
    """{setting: [verdicts of replicate 0, of replicate 1, ...]} as verdict files, in rules/common.smk
    runs_of order (each setting's replicates, settings in order); their paths."""
    paths = []
    for setting, replicates in verdicts_by_setting.items():
        for r, verdicts in enumerate(replicates):
            path = folder / setting / f"rep{r}.jsonl"
            write_jsonl(path, _records(setting, verdicts))
            paths.append(path)
    return paths


# --- resolve_claims -------------------------------------------------------------------------------

RATES = {"s1": 0.75, "s2": 0.90}
CONTROLS = {"s1": "ctrl"}


def _claim(id, setting, against):
    return {"id": id, "claim": f"claim {id}", "source": "report §4", "setting": setting, "against": against}


def test_resolve_claims_published_effects():
    claims = [_claim("scaling", "s2", "s1"), _claim("beats", "s1", "baseline"), _claim("sft", "s1", "control")]
    scaling, beats, sft = ct.resolve_claims(claims, RATES, CONTROLS)
    # against another setting: the difference of the two published rates
    assert {k: scaling[k] for k in ("id", "claim", "source", "setting", "against")} == {
        "id": "scaling",
        "claim": "claim scaling",
        "source": "report §4",
        "setting": "s2",
        "against": "s1",
    }
    assert scaling["published_effect"] == pytest.approx(0.15)
    assert (scaling["published_setting_rate"], scaling["published_against_rate"]) == (0.90, 0.75)
    # against the baseline: the rate above one half
    assert beats["against"] == "baseline" and beats["published_effect"] == pytest.approx(0.25)
    assert (beats["published_setting_rate"], beats["published_against_rate"]) == (0.75, None)
    # against the control: the setting's control by name; the study had none, so no published effect
    assert sft["against"] == "ctrl"
    assert (sft["published_effect"], sft["published_setting_rate"], sft["published_against_rate"]) == (None, None, None)


def test_resolve_claims_without_published_rates_or_control():
    claims = [
        _claim("new", "s3", "s1"),
        _claim("against_new", "s1", "s3"),
        _claim("new_beats", "s3", "baseline"),
        _claim("sft2", "s2", "control"),
    ]
    new, against_new, new_beats, sft2 = ct.resolve_claims(claims, RATES, CONTROLS)
    for claim in (new, against_new, new_beats):
        assert claim["published_effect"] is None
    assert (new["published_setting_rate"], new["published_against_rate"]) == (None, 0.75)
    # no published rate of the comparison: neither rate is used (power needs both)
    assert (against_new["published_setting_rate"], against_new["published_against_rate"]) == (None, None)
    # a setting without a control in this run: a name that is no setting (nor "control" itself)
    settings = ["s1", "s2", "ctrl"]
    assert sft2["against"] not in settings + ["control", "baseline"] and "s2" in sft2["against"]
    assert sft2["published_effect"] is None
    # ... so the claims table finds nothing to compare with: "not run", no statistics
    frame = verdict_frame({(s, 0): _records(s, ["win", "loss", "tie", "win"]) for s in settings})
    row = cs.claims_table(frame, [sft2], 0.05, 0.15, STUDY_NUISANCE, 100, 0).iloc[0]
    assert row["verdict"] == "not run" and row["against"] == sft2["against"]
    assert math.isnan(row["p_value"]) and math.isnan(row["effect"])


# --- claims_table.main -----------------------------------------------------------------------------

STUDY = """settings: [s1, s2]
published:
  source: report Table 1
  n: 20
  win_rates: {s1: 0.75, s2: 0.90}
inference:
  equivalence_margin: 0.15
  simulation: {question_sd: 2.0, replicate_sd: 0.25, answer_sd: 1.0, order_bias: 0.3, tie_cut: 0.2, invalid: 0.01}
claims:
  - {id: beats, setting: s1, against: baseline, source: report §4.1, claim: "s1 beats the baseline"}
  - {id: even, setting: s2, against: baseline, source: report §4.1, claim: "s2 beats the baseline"}
  - {id: scaling, setting: s2, against: s1, source: report §4.1, claim: "s2 beats s1"}
  - {id: sft, setting: s1, against: control, source: report §4.1, claim: "SFT is effective (s1)"}
  - {id: sft2, setting: s2, against: control, source: report §4.1, claim: "SFT is effective (s2)"}
"""
QUESTIONS = 12
# K = 2 replicates of 12 questions. s1 wins everything, its control loses everything; s2 wins half
# the questions and loses the other half, the same ones in both replicates.
CLAIM_RUNS = {
    "s1": [["win"] * QUESTIONS] * 2,
    "s2": [["win", "loss"] * (QUESTIONS // 2)] * 2,
    "ctrl": [["loss"] * QUESTIONS] * 2,
}
STATISTICS = {"alpha": 0.05, "n_bootstrap": 2000, "power_simulations": 200, "seed": 0}


def _claims_smk(tmp_path, paths, study_text=STUDY, settings=("s1", "s2", "ctrl"), replicates=2):
    study = tmp_path / "config" / "study.yaml"
    study.parent.mkdir(parents=True, exist_ok=True)
    study.write_text(study_text, encoding="utf-8")
    return fake_snakemake(
        input={"verdicts": [str(p) for p in paths], "study": str(study)},
        output={"csv": str(tmp_path / "tables" / "claims.csv"), "json": str(tmp_path / "tables" / "claims.json")},
        params={
            "settings": list(settings),
            "replicates": replicates,
            "controls": dict(CONTROLS),
            "statistics": dict(STATISTICS),
        },
        rule="claims_table",
    )


def test_claims_table_main_end_to_end(tmp_path):
    ct.main(_claims_smk(tmp_path, _write_runs(tmp_path / "verdicts", CLAIM_RUNS)))
    rows = json.loads((tmp_path / "tables" / "claims.json").read_text(encoding="utf-8"))
    assert read_table_json(tmp_path / "tables" / "claims.json", "claim_row") == rows  # schemas/claim_row.yaml
    assert [r["id"] for r in rows] == ["beats", "even", "scaling", "sft", "sft2"]
    assert all(list(r) == cs.COLUMNS for r in rows)
    by_id = {r["id"]: r for r in rows}
    beats, even, scaling, sft, sft2 = (by_id[k] for k in ("beats", "even", "scaling", "sft", "sft2"))
    grids = {s: np.array([[cs.SCORES[v] for v in rep] for rep in reps]).T for s, reps in CLAIM_RUNS.items()}

    # every verdict of s1 a win: above the study's +25 +- 15, so supported rather than reproduced
    assert (beats["n"], beats["replicates"], beats["against"], beats["margin"]) == (12, 2, "baseline", 0.15)
    assert beats["effect"] == pytest.approx(0.5) and beats["published_effect"] == pytest.approx(0.25)
    assert (beats["ci_low"], beats["ci_high"], beats["p_value"]) == pytest.approx(
        [float(x) for x in crossed_interval(grids["s1"])[1:]]
    )
    assert beats["verdict"] == "supported" and 0 <= beats["power"] < 0.8
    # with two runs the run part has 1 df: no number of questions gives 80% at Holm's levels
    assert beats["n_for_80_power"] is None
    # against the control: named in the row, no published effect or power
    assert (sft["against"], sft["effect"], sft["verdict"]) == ("ctrl", pytest.approx(1.0), "supported")
    assert sft["published_effect"] is None and sft["published_in_ci"] is None and sft["power"] is None
    assert "no effect to compute a power at" not in sft["reading"]
    # half won, half lost: no effect, and the study's +40 lies above the corrected interval
    assert even["effect"] == pytest.approx(0.0) and even["p_value"] == pytest.approx(1.0)
    assert even["ci_low"] < 0 < even["ci_high"] < 0.4 and even["verdict"] == "contradicted"
    assert "below the study's +40.0" in even["reading"]
    # s2 below s1: contradicted, its corrected interval at its Holm level
    assert scaling["effect"] == pytest.approx(-0.5) and scaling["verdict"] == "contradicted"
    _, low, high, _ = crossed_interval(grids["s2"], grids["s1"], alpha=scaling["holm_level"])
    assert (scaling["ci_holm_low"], scaling["ci_holm_high"]) == pytest.approx((float(low), float(high)))
    # s2 has no control here: not run, nothing computed
    assert sft2["verdict"] == "not run" and sft2["against"] not in CLAIM_RUNS
    assert all(
        sft2[k] is None
        for k in ("n", "replicates", "effect", "ci_low", "ci_high", "p_value", "p_holm", "power", "published_effect")
    )

    # Holm over the four claims that ran, by statsmodels; its levels alpha / 4 ... alpha by p
    ran = [beats, even, scaling, sft]
    assert [r["p_holm"] for r in ran] == pytest.approx(list(cs.holm([r["p_value"] for r in ran])))
    assert sorted(r["holm_level"] for r in ran) == pytest.approx([0.05 / 4, 0.05 / 3, 0.05 / 2, 0.05])

    with open(tmp_path / "tables" / "claims.csv", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["id"] for r in csv_rows] == ["beats", "even", "scaling", "sft", "sft2"]
    assert list(csv_rows[0]) == cs.COLUMNS
    assert [r["verdict"] for r in csv_rows] == ["supported", "contradicted", "contradicted", "supported", "not run"]
    assert (csv_rows[0]["n"], csv_rows[0]["replicates"]) == ("12", "2")
    assert csv_rows[4]["n"] == "" and csv_rows[4]["p_value"] == "" and csv_rows[4]["against"] == sft2["against"]
    assert csv_rows[3]["published_effect"] == ""


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ("equivalence_margin: 0.15", "equivalence_margin: 1.5"),
            "inference.equivalence_margin: expected a difference",
        ),
        (("question_sd: 2.0, ", ""), "inference.simulation: expected a mapping of"),
        (("question_sd: 2.0", "question_sd: -2.0"), "inference.simulation: question_sd must not be negative"),
        (("question_sd: 2.0", "question_sd: big"), "inference.simulation.question_sd: expected a number"),
    ],
)
def test_bad_inference_section_names_the_key(tmp_path, change, message):
    paths = _write_runs(tmp_path / "verdicts", CLAIM_RUNS)
    smk = _claims_smk(tmp_path, paths, study_text=STUDY.replace(*change))
    with pytest.raises(PipelineError, match=re.escape(f"config/study.yaml: {message}")):
        ct.main(smk)


def test_claims_table_main_checks_the_verdict_files(tmp_path):
    paths = _write_runs(tmp_path / "verdicts", CLAIM_RUNS)
    with pytest.raises(PipelineError, match="6 verdict files for 3 settings x 1 replicates"):
        ct.main(_claims_smk(tmp_path, paths, replicates=1))
    # a replicate missing a question: the statistics refuse the table
    write_jsonl(paths[1], _records("s1", ["win"] * (QUESTIONS - 1)))
    with pytest.raises(PipelineError, match=r"s1, replicate 1: misses 1 question"):
        ct.main(_claims_smk(tmp_path, paths))


@pytest.mark.parametrize(
    "text, message",
    [
        (STUDY.split("claims:")[0], "claims: missing or not a list"),
        (STUDY.split("claims:")[0] + "claims: []\n", "claims: missing or not a list"),
        (STUDY.split("claims:")[0] + "claims: {beats: s1}\n", "claims: missing or not a list"),
        (STUDY.replace("against: s1, ", ""), "claims[2]: missing 'against'"),
        (STUDY.replace("{id: beats, ", "{"), "claims[0]: missing 'id'"),
        ("- just\n- a list\n", "claims: missing or not a list"),
        ("claims: [unclosed\n", "cannot read the study file"),
    ],
)
def test_bad_study_file_names_the_file_and_key(tmp_path, text, message):
    paths = _write_runs(tmp_path / "verdicts", CLAIM_RUNS)
    smk = _claims_smk(tmp_path, paths, study_text=text)
    with pytest.raises(PipelineError, match=re.escape(f"config/study.yaml: {message}")):
        study_file.read_study(smk.input.study)
    with pytest.raises(PipelineError, match=re.escape(f"config/study.yaml: {message}")):
        ct.main(smk)


def test_missing_study_file(tmp_path):
    with pytest.raises(PipelineError, match="cannot read the study file"):
        study_file.read_study(tmp_path / "nope.yaml")


# --- judge_agreement.main --------------------------------------------------------------------------

AGREE_SETTINGS = ["s1", "s2"]
# The primary judge's verdicts per (setting, replicate), 4 questions each: 6 wins, 4 ties, 6 losses.
PRIMARY = {
    ("s1", 0): ["win", "win", "tie", "loss"],
    ("s1", 1): ["win", "loss", "win", "tie"],
    ("s2", 0): ["loss", "loss", "tie", "win"],
    ("s2", 1): ["win", "tie", "loss", "loss"],
}


def _changed(verdicts, changes):
    out = {run: list(v) for run, v in verdicts.items()}
    for (run, q), verdict in changes.items():
        out[run][q] = verdict
    return out


# The rival judge on test set t1: 3 disagreements and 1 invalid verdict; on t2: 1 disagreement.
RIVAL = {
    "t1": _changed(
        PRIMARY,
        {
            (("s1", 0), 0): "tie",  # primary win, rival tie
            (("s1", 1), 1): "win",  # primary loss, rival win
            (("s2", 0), 2): "loss",  # primary tie, rival loss
            (("s2", 1), 3): "invalid",
        },
    ),  # dropped
    "t2": _changed(PRIMARY, {(("s2", 1), 0): "loss"}),  # primary win, rival loss
}
# Rows the primary judge, columns the rival, categories win, tie, loss, counted by hand from the above.
TABLES = {
    "t1": [[5, 1, 0], [0, 3, 1], [1, 0, 4]],
    "t2": [[5, 0, 1], [0, 4, 0], [0, 0, 6]],
}


def _kappa_by_hand(table):
    """Cohen's kappa with linear weights (win, tie, loss in order; a one-step miss weighs 1/2, a
    reversal 1): 1 - observed weighted disagreement / chance's."""
    n = sum(map(sum, table))
    rows = [sum(table[i]) for i in range(3)]
    cols = [sum(table[i][j] for i in range(3)) for j in range(3)]
    observed = sum(abs(i - j) / 2 * table[i][j] for i in range(3) for j in range(3)) / n
    chance = sum(abs(i - j) / 2 * rows[i] * cols[j] for i in range(3) for j in range(3)) / n**2
    return 1 - observed / chance


def _agreement_smk(tmp_path, test_sets, judges, verdicts_of):
    """verdicts_of(test_set, judge) -> {(setting, replicate): verdicts}; files in the rule's order:
    test sets x judges x settings x replicates."""
    paths = []
    for test_set, judge in itertools.product(test_sets, judges):
        runs = verdicts_of(test_set, judge)
        for setting, r in itertools.product(AGREE_SETTINGS, range(2)):
            path = tmp_path / "verdicts" / test_set / judge / setting / f"rep{r}.jsonl"
            write_jsonl(path, _records(setting, runs[setting, r]))
            paths.append(str(path))
    return fake_snakemake(
        input={"verdicts": paths},
        output={"csv": str(tmp_path / "tables" / "judge_agreement.csv")},
        params={
            "test_sets": list(test_sets),
            "judges": list(judges),
            "settings": AGREE_SETTINGS,
            "replicates": 2,
            "statistics": {"alpha": 0.05, "n_bootstrap": 500, "seed": 0},
        },
        rule="judge_agreement",
    )


def _panel(test_set, judge):
    return RIVAL[test_set] if judge == "rival" else PRIMARY  # the twin agrees with the primary judge


def test_kappa_tables_by_hand():
    # the hand-counted tables are those of the verdicts above (a check on the test itself)
    for test_set, table in TABLES.items():
        counted = [[0] * 3 for _ in range(3)]
        cats = ["win", "tie", "loss"]
        for run in PRIMARY:
            for x, y in zip(PRIMARY[run], RIVAL[test_set][run]):
                if "invalid" not in (x, y):
                    counted[cats.index(x)][cats.index(y)] += 1
        assert counted == table
    # t1: observed (1/2 + 1/2 + 1) / 15 = 2/15 (win/tie, tie/loss, then loss/win a reversal);
    # margins rows 6, 4, 5 and columns 6, 4, 5: chance (1/2 (6*4 + 4*6 + 4*5 + 5*4) + (6*5 + 5*6)) / 225 = 104/225
    assert _kappa_by_hand(TABLES["t1"]) == pytest.approx(1 - (2 / 15) / (104 / 225))
    # t2: one reversal (win/loss) in 16: 1/16; rows 6, 4, 6, columns 5, 4, 7: chance (1/2 (6*4 + 4*5 + 4*7 + 6*4) + (6*7 + 6*5)) / 256 = 120/256
    assert _kappa_by_hand(TABLES["t2"]) == pytest.approx(1 - (1 / 16) / (120 / 256))


def test_judge_agreement_main(tmp_path):
    smk = _agreement_smk(tmp_path, ["t1", "t2"], ["primary", "twin", "rival"], _panel)
    ja.main(smk)
    with open(smk.output.csv, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ja.COLUMNS
    assert [(r["test_set"], r["judge_a"], r["judge_b"]) for r in rows] == [
        ("t1", "primary", "twin"),
        ("t1", "primary", "rival"),
        ("t2", "primary", "twin"),
        ("t2", "primary", "rival"),
    ]
    twin1, rival1, twin2, rival2 = rows
    for twin in (twin1, twin2):  # full agreement on all 2 settings x 2 replicates x 4 questions
        assert (int(twin["n_questions"]), int(twin["n_pairs"])) == (4, 16) and float(twin["agreement"]) == 1.0
        assert float(twin["weighted_kappa"]) == pytest.approx(1.0) and float(twin["alpha"]) == pytest.approx(1.0)
    # t1: 15 valid pairs on 4 questions (one invalid dropped), 12 agree
    assert (int(rival1["n_questions"]), int(rival1["n_pairs"])) == (4, 15)
    assert float(rival1["agreement"]) == pytest.approx(12 / 15)
    assert float(rival1["weighted_kappa"]) == pytest.approx(_kappa_by_hand(TABLES["t1"]))
    # t2: 16 pairs, 15 agree
    assert int(rival2["n_pairs"]) == 16 and float(rival2["agreement"]) == pytest.approx(15 / 16)
    assert float(rival2["weighted_kappa"]) == pytest.approx(_kappa_by_hand(TABLES["t2"]))
    for row in (rival1, rival2):
        for key in ("weighted_kappa", "alpha"):
            assert float(row[f"{key}_low"]) <= float(row[key]) <= float(row[f"{key}_high"])
        assert float(row["alpha_high"]) <= 1 and float(row["alpha"]) < 1


def test_judge_agreement_without_a_panel_is_a_header(tmp_path):
    smk = _agreement_smk(tmp_path, ["t1", "t2"], ["primary"], _panel)
    ja.main(smk)
    with open(smk.output.csv, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert lines == [",".join(ja.COLUMNS)]


def test_judge_agreement_judges_of_different_answers(tmp_path):
    smk = _agreement_smk(tmp_path, ["t1"], ["primary", "rival"], _panel)
    rival_s2_rep1 = next(p for p in smk.input.verdicts if "/rival/s2/rep1" in p)
    records = _records("s2", PRIMARY["s2", 1])
    records[3]["id"] = "q9"  # another question than the primary judge's q3
    write_jsonl(rival_s2_rep1, records)
    with pytest.raises(PipelineError, match="t1: judges primary and rival judged different answers"):
        ja.main(smk)
    write_jsonl(rival_s2_rep1, records[:3])  # one question fewer
    with pytest.raises(PipelineError, match="judged different answers"):
        ja.main(smk)


def test_judge_agreement_checks_the_number_of_files(tmp_path):
    smk = _agreement_smk(tmp_path, ["t1"], ["primary", "rival"], _panel)
    smk.input.verdicts = smk.input.verdicts[:-1]
    with pytest.raises(PipelineError, match="7 verdict files for 2 test sets x judges x 4 runs"):
        ja.main(smk)
