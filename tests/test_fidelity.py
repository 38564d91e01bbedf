"""The study config against the study's sources (config/study.yaml), and the fidelity table the
paper shows: the study config deviates nowhere, an overlay's change shows up as a deviation."""

import copy

import pandas as pd
import pytest
import yaml
from conftest import REPO, fake_snakemake
from snakemake.utils import validate

import fidelity_table as ft
from common import PipelineError

STUDY = yaml.safe_load((REPO / "config" / "study.yaml").read_text(encoding="utf-8"))
SOURCES = ("report §", "report Table", "notebook", "assumption")


def validated(name: str) -> dict:
    """A config as the pipeline sees it: validated, the schema's defaults filled in."""
    config = yaml.safe_load((REPO / "config" / name).read_text(encoding="utf-8"))
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


def by_parameter(table: pd.DataFrame) -> dict[str, dict]:
    return {row["parameter"]: row for row in table.to_dict(orient="records")}


def test_the_study_config_is_the_study_as_its_sources_say():
    table = ft.fidelity_table(STUDY, validated("config.yaml"))
    assert set(table["status"]) <= {"same", "not stated", "execution", "by design"}, \
        table[table["status"] == "deviation"].to_string()
    rows = by_parameter(table)
    assert rows["Judge model"]["this_run"] == "gpt-3.5-turbo"
    assert rows["Rank r"]["this_run"] == "16" and rows["Alpha"]["this_run"] == "16"
    assert rows["Target modules"]["this_run"] == "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj"
    assert rows["Training rows"]["this_run"] == "400" and rows["Validation rows"]["this_run"] == "100"
    assert rows["Max new tokens"]["this_run"] == "800" and rows["Repetition penalty"]["this_run"] == "1.2"
    assert rows["Learning rate, settings 1-3"]["study"] == "2e-5"
    # What the study does not give is ours, and says so.
    assert rows["Split seed"]["status"] == "not stated" and rows["Split seed"]["source"] == "assumption"
    assert rows["Learning rate, settings 1-3"]["source"] == "assumption"


def test_every_parameter_names_its_source_and_a_key_the_study_config_has():
    config = validated("config.yaml")
    for param in STUDY["parameters"]:
        assert param["source"].startswith(SOURCES), param
        if param.get("protocol"):
            continue
        values = ft.run_values(config, param["key"], STUDY["settings"])
        assert all(v is not ft.ABSENT for v in values.values()) or param["key"] == "data.subset", param


def test_an_overlay_that_changes_the_judge_is_a_deviation():
    config = validated("config.yaml")
    config["judge"]["model"] = "gpt-4o"
    config["settings"]["setting2"]["lora"] = {**config["settings"]["setting2"]["lora"], "r": 8}
    rows = by_parameter(ft.fidelity_table(STUDY, config))
    assert rows["Judge model"]["status"] == "deviation" and rows["Judge model"]["this_run"] == "gpt-4o"
    assert rows["Rank r"]["status"] == "deviation"
    assert rows["Rank r"]["this_run"] == "setting1: 16; setting2: 8; setting3: 16; setting4: 16"
    deviating = [p for p, row in rows.items() if row["status"] == "deviation"]
    assert deviating == ["Rank r", "Judge model"]


def test_the_demo_deviates_where_it_is_small_and_offline():
    rows = by_parameter(ft.fidelity_table(STUDY, validated("demo.yaml")))
    for parameter in ("Dataset", "Test set", "Judge model", "Method", "Max new tokens", "Rank r"):
        assert rows[parameter]["status"] == "deviation", parameter
    assert rows["Rewriting model"]["this_run"] == "absent"


def test_a_removed_setting_is_absent():
    config = copy.deepcopy(validated("config.yaml"))
    del config["settings"]["setting3"]
    rows = by_parameter(ft.fidelity_table(STUDY, config))
    assert "setting3: absent" in rows["Epochs"]["this_run"] and rows["Epochs"]["status"] == "deviation"


def test_values_compare_as_config_values():
    assert ft.same(2e-5, 2.0e-05) and ft.same(1, 1.0) and not ft.same(True, 1)
    assert ft.same(ft.ABSENT, None) and not ft.same([1, 2], [2, 1])
    assert ft.text(1e-4) == "1e-4" and ft.text(0.05) == "0.05" and ft.text(True) == "yes"


def test_main_writes_the_table(tmp_path):
    out = tmp_path / "tables" / "fidelity.csv"
    smk = fake_snakemake(input={"study": str(REPO / "config" / "study.yaml")}, output={},
                         params={"config": validated("config.yaml")})
    smk.output = [str(out)]
    ft.main(smk)
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ft.COLUMNS and len(table) == len(STUDY["parameters"])


@pytest.mark.parametrize("study, message", [
    ({"parameters": []}, "'parameters' must be a non-empty list"),
    ({"parameters": [{"group": "Data", "label": "Dataset", "key": "data.source"}]}, "parameter 'Dataset': missing 'source'"),
])
def test_a_broken_study_file_is_named(study, message):
    with pytest.raises(PipelineError, match=message):
        ft.fidelity_table(study, validated("config.yaml"))
