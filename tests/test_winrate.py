import csv
import json
import math

import pytest
from conftest import fake_snakemake

import winrate_table as wt
from common import DataError, PipelineError, write_jsonl


def _records(setting, verdicts, answer="答案", baseline="基线答案。", tokens=(100, 10)):
    """Verdict records as judge_pairwise.py writes them (the fields the table reads)."""
    return [
        {
            "id": f"q{i}",
            "setting": setting,
            "verdict": v,
            "consistent": None if v == "invalid" else v != "tie",
            "setting_answer": answer,
            "baseline_answer": baseline,
            "usage": {"prompt_tokens": 2 * tokens[0], "completion_tokens": 2 * tokens[1], "calls": 2},
        }
        for i, v in enumerate(verdicts)
    ]


# setting1: 10 verdicts, 5 wins, 2 ties, 2 losses, 1 invalid; setting2: 4 verdicts, 0 wins
VERDICTS = {
    "setting1": ["win"] * 5 + ["tie"] * 2 + ["loss"] * 2 + ["invalid"],
    "setting2": ["loss", "tie", "invalid", "invalid"],
}
SETTINGS = [{"name": "setting1", "title": "Baseline recipe"}, {"name": "setting2", "title": "Scaling"}]
COLUMNS = [
    "setting", "title", "n", "wins", "ties", "losses", "invalid", "win_rate", "win_rate_ties_half",
    "ci_low", "ci_high", "p_value", "consistency", "mean_answer_chars", "baseline_mean_answer_chars",
    "prompt_tokens", "completion_tokens", "judge_calls", "cost_usd",
]


def _by_setting():
    return {
        "setting1": _records("setting1", VERDICTS["setting1"], answer="四个字符"),
        "setting2": _records("setting2", VERDICTS["setting2"], answer="六个字符答案"),
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


def test_winrate_table_cost():
    df = wt.winrate_table(_by_setting(), prices={"input": 2.5, "output": 10.0})
    assert df.loc[0, "cost_usd"] == pytest.approx((2000 * 2.5 + 200 * 10.0) / 1e6)


def test_pairwise_table():
    by_setting = {
        "a": _records("a", ["win", "win", "win", "loss", "tie", "win"]),
        "b": _records("b", ["win", "loss", "tie", "win", "invalid", "loss"]),
        "c": _records("c", ["win"] * 6),
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
    df = wt.winrate_table({"s": []})
    assert df.loc[0, "n"] == 0 and math.isnan(df.loc[0, "win_rate"])


def test_winrate_table_unknown_verdict():
    with pytest.raises(PipelineError, match="unknown verdict"):
        wt.winrate_table({"s": _records("s", ["draw"])})


def _smk(tmp_path, paths, settings=SETTINGS):
    return fake_snakemake(
        input={"verdicts": [str(p) for p in paths]},
        output={
            "csv": str(tmp_path / "tables" / "winrate.csv"),
            "json": str(tmp_path / "tables" / "winrate.json"),
            "pairwise": str(tmp_path / "tables" / "pairwise.csv"),
        },
        params={"settings": settings, "prices": None},
        rule="winrate_table",
    )


def _write(tmp_path):
    paths = []
    for name, verdicts in VERDICTS.items():
        path = tmp_path / "verdicts" / f"{name}.jsonl"
        write_jsonl(path, _by_setting()[name])
        paths.append(path)
    return paths


def test_main_writes_csv_and_json(tmp_path):
    smk = _smk(tmp_path, _write(tmp_path))
    wt.main(smk)
    rows = json.loads((tmp_path / "tables" / "winrate.json").read_text(encoding="utf-8"))
    assert isinstance(rows, list) and [r["setting"] for r in rows] == ["setting1", "setting2"]
    assert list(rows[0]) == COLUMNS
    assert {k: rows[0][k] for k in COLUMNS[:9]} == {
        "setting": "setting1", "title": "Baseline recipe", "n": 10, "wins": 5, "ties": 2, "losses": 2,
        "invalid": 1, "win_rate": 0.5, "win_rate_ties_half": 0.6,
    }
    assert rows[0]["cost_usd"] is None and rows[0]["p_value"] == pytest.approx(58 / 128)
    assert rows[1]["title"] == "Scaling" and rows[1]["invalid"] == 2 and rows[1]["win_rate"] == 0.0
    with open(tmp_path / "tables" / "winrate.csv", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["setting"] for r in csv_rows] == ["setting1", "setting2"]
    assert csv_rows[0]["n"] == "10" and csv_rows[0]["wins"] == "5" and float(csv_rows[0]["win_rate"]) == 0.5
    assert list(csv_rows[0]) == COLUMNS and csv_rows[0]["cost_usd"] == ""
    with open(tmp_path / "tables" / "pairwise.csv", encoding="utf-8") as f:
        pairs = list(csv.DictReader(f))
    assert pairs == [{"setting_a": "setting1", "setting_b": "setting2", "n": "4", "a_better": "4", "b_better": "0",
                      "p_value": "0.125"}]
    assert not [p for p in (tmp_path / "tables").iterdir() if p.name.startswith(".")]  # no temp files left


def test_main_checks_setting_order(tmp_path):
    paths = _write(tmp_path)
    with pytest.raises(DataError, match="setting2"):
        wt.main(_smk(tmp_path, list(reversed(paths))))


def test_main_checks_counts(tmp_path):
    with pytest.raises(PipelineError, match="2 verdict files for 1 settings"):
        wt.main(_smk(tmp_path, _write(tmp_path), settings=SETTINGS[:1]))


def test_main_rejects_bad_verdict_and_empty_file(tmp_path):
    paths = _write(tmp_path)
    write_jsonl(paths[1], _records("setting2", ["draw"]))
    with pytest.raises(DataError, match=r"line 1: field 'verdict'"):
        wt.main(_smk(tmp_path, paths))
    record = _records("setting2", ["win"])[0]
    del record["usage"]["calls"]
    write_jsonl(paths[1], [record])
    with pytest.raises(DataError, match=r"line 1: field 'usage.calls'"):
        wt.main(_smk(tmp_path, paths))
    del record["consistent"]
    write_jsonl(paths[1], [record])
    with pytest.raises(DataError, match=r"line 1: field 'consistent'"):
        wt.main(_smk(tmp_path, paths))
    write_jsonl(paths[1], [])
    with pytest.raises(DataError, match="no verdicts"):
        wt.main(_smk(tmp_path, paths))
