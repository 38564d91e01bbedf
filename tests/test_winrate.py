import csv
import json
import math

import pytest
from conftest import fake_snakemake

import winrate_table as wt
from common import DataError, PipelineError, write_jsonl


def _records(setting, verdicts):
    return [{"id": f"q{i}", "setting": setting, "verdict": v} for i, v in enumerate(verdicts)]


# setting1: 10 verdicts, 5 wins, 2 ties, 2 losses, 1 invalid; setting2: 4 verdicts, 0 wins
VERDICTS = {
    "setting1": ["win"] * 5 + ["tie"] * 2 + ["loss"] * 2 + ["invalid"],
    "setting2": ["loss", "tie", "invalid", "invalid"],
}
SETTINGS = [{"name": "setting1", "title": "Baseline recipe"}, {"name": "setting2", "title": "Scaling"}]


def test_winrate_table_counts_and_rates():
    df = wt.winrate_table({k: _records(k, v) for k, v in VERDICTS.items()}, {"setting1": "Baseline recipe"})
    assert list(df.columns) == ["setting", "title", "n", "wins", "ties", "losses", "invalid", "win_rate", "win_rate_ties_half"]
    one, two = df.to_dict(orient="records")
    assert one["setting"] == "setting1" and one["title"] == "Baseline recipe"
    assert (one["n"], one["wins"], one["ties"], one["losses"], one["invalid"]) == (10, 5, 2, 2, 1)
    assert one["win_rate"] == pytest.approx(0.5)  # invalid counts in n
    assert one["win_rate_ties_half"] == pytest.approx(0.6)
    assert two["title"] == "setting2"  # no title given: the name
    assert (two["n"], two["wins"], two["ties"], two["losses"], two["invalid"]) == (4, 0, 1, 1, 2)
    assert two["win_rate"] == 0.0 and two["win_rate_ties_half"] == pytest.approx(0.125)
    assert all(0.0 <= r <= 1.0 for r in df["win_rate"])


def test_winrate_table_empty_setting_is_nan():
    df = wt.winrate_table({"s": []})
    assert df.loc[0, "n"] == 0 and math.isnan(df.loc[0, "win_rate"])


def test_winrate_table_unknown_verdict():
    with pytest.raises(PipelineError, match="unknown verdict"):
        wt.winrate_table({"s": [{"verdict": "draw"}]})


def _smk(tmp_path, paths, settings=SETTINGS):
    return fake_snakemake(
        input={"verdicts": [str(p) for p in paths]},
        output={"csv": str(tmp_path / "tables" / "winrate.csv"), "json": str(tmp_path / "tables" / "winrate.json")},
        params={"settings": settings},
        rule="winrate_table",
    )


def _write(tmp_path):
    paths = []
    for name, verdicts in VERDICTS.items():
        path = tmp_path / "verdicts" / f"{name}.jsonl"
        write_jsonl(path, _records(name, verdicts))
        paths.append(path)
    return paths


def test_main_writes_csv_and_json(tmp_path):
    smk = _smk(tmp_path, _write(tmp_path))
    wt.main(smk)
    rows = json.loads((tmp_path / "tables" / "winrate.json").read_text(encoding="utf-8"))
    assert isinstance(rows, list) and [r["setting"] for r in rows] == ["setting1", "setting2"]
    assert rows[0] == {
        "setting": "setting1", "title": "Baseline recipe", "n": 10, "wins": 5, "ties": 2, "losses": 2,
        "invalid": 1, "win_rate": 0.5, "win_rate_ties_half": 0.6,
    }
    assert rows[1]["title"] == "Scaling" and rows[1]["invalid"] == 2 and rows[1]["win_rate"] == 0.0
    with open(tmp_path / "tables" / "winrate.csv", encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["setting"] for r in csv_rows] == ["setting1", "setting2"]
    assert csv_rows[0]["n"] == "10" and csv_rows[0]["wins"] == "5" and float(csv_rows[0]["win_rate"]) == 0.5
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
    write_jsonl(paths[1], [{"id": "q0", "setting": "setting2", "verdict": "draw"}])
    with pytest.raises(DataError, match=r"line 1: field 'verdict'"):
        wt.main(_smk(tmp_path, paths))
    write_jsonl(paths[1], [])
    with pytest.raises(DataError, match="no verdicts"):
        wt.main(_smk(tmp_path, paths))
