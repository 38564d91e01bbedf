"""The study config against the study's sources (config/study.yaml), and the fidelity table the
paper shows: each row says what its source says and no more, the study config deviates only where
a row declares it, an overlay's change shows up as a deviation."""

import copy

import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

import fidelity_table as ft
from conftest import REPO, fake_snakemake
from huatuo_study.common import PipelineError
from huatuo_study.paper import design

STUDY = yaml.safe_load((REPO / "config" / "study.yaml").read_text(encoding="utf-8"))
SOURCES = ("report §", "report Table", "notebook", "assumption")
SETTINGS_1_3 = ["setting1", "setting2", "setting3"]


def validated(name: str) -> dict:
    """A config as the pipeline sees it: validated, the schema's defaults filled in."""
    config = yaml.safe_load((REPO / "config" / name).read_text(encoding="utf-8"))
    validate(config, str(REPO / "config" / "schema.yaml"))
    return config


def by_parameter(table: pd.DataFrame) -> dict[str, dict]:
    return {row["parameter"]: row for row in table.to_dict(orient="records")}


def study_rows() -> dict[str, dict]:
    return by_parameter(ft.fidelity_table(STUDY, validated("config.yaml")))


def test_the_study_config_is_the_study_as_its_sources_say():
    rows = study_rows()
    assert rows["Rank r"]["this_run"] == "16" and rows["Alpha"]["this_run"] == "16"
    assert rows["Target modules"]["this_run"] == "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj"
    assert rows["Training rows"]["this_run"] == "400" and rows["Validation rows"]["this_run"] == "100"
    assert rows["Max new tokens"]["this_run"] == "800" and rows["Repetition penalty"]["this_run"] == "1.2"
    # The one deviation is declared, with the reason we keep it.
    assert [p for p, row in rows.items() if row["status"] == "deviation"] == ["bf16 mixed precision, setting 4"]


def test_the_config_holds_every_stated_and_assumed_value_but_the_declared_deviations():
    config = validated("config.yaml")
    study_settings = STUDY["settings"]
    declared = {p for p, row in study_rows().items() if row["status"] == "deviation"}
    differing = set()
    for param in STUDY["parameters"]:
        if param.get("protocol") or param.get("execution"):
            continue
        expected = param["value"] if "value" in param else param["assumed"]
        values = ft.run_values(config, param["key"], ft.row_settings(param, study_settings))
        if not all(ft.same(v, expected) for v in values.values()):
            differing.add(param["label"])
    assert differing == declared
    for label in declared:
        assert "our choice" in study_rows()[label]["note"], label


def test_settings_1_to_3_training_arguments_are_ours_not_the_study_s():
    """The report gives setting 4's arguments only: settings 1-3's are assumptions, never "same",
    with our value visible in the note; setting 4's are the report's."""
    rows = study_rows()
    assumed = {
        "Batch size": ("2", "the course template's"),
        "Grad. accumulation": ("8", "the course template's"),
        "Learning rate": ("2e-5", "the course template's"),
        "Eval every (steps)": ("10", "the course template's"),
        "Epochs": ("1", "as setting 4"),
        "Optimizer": ("paged_adamw_32bit", "as setting 4"),
        "Weight decay": ("0.001", "as setting 4"),
        "Warmup ratio": ("0.03", "as setting 4"),
        "Scheduler": ("cosine", "as setting 4"),
        "Group by length": ("group_by_length", "as setting 4"),
    }
    stated = {
        "Batch size": "10",
        "Grad. accumulation": "1",
        "Learning rate": "1e-4",
        "Eval every (steps)": "1",
        "Epochs": "1",
        "Optimizer": "paged_adamw_32bit",
        "Weight decay": "0.001",
        "Warmup ratio": "0.03",
        "Scheduler": "cosine",
        "Group by length": "group_by_length",
    }
    for name, (value, why) in assumed.items():
        row = rows[f"{name}, settings 1-3"]
        assert (row["study"], row["source"], row["status"]) == ("not stated", "assumption", "not stated"), name
        assert row["this_run"] == value and row["note"] == f"our assumption: {value}; {why}", name
        row = rows[f"{name}, setting 4"]
        assert (row["study"], row["this_run"], row["source"], row["status"]) == (
            stated[name],
            stated[name],
            "report §3.3, notebook",
            "same",
        ), name


def test_bf16_is_the_reports_compute_dtype_not_mixed_precision():
    rows = study_rows()
    assert (rows["Compute dtype"]["study"], rows["Compute dtype"]["source"]) == ("bfloat16", "report §3.2")
    row = rows["bf16 mixed precision, setting 4"]
    assert row["study"] == "not set in §3.3's arguments (transformers' default: no)"
    assert (row["this_run"], row["source"], row["status"]) == ("yes", "report §3.2, §3.3", "deviation")
    assert "the notebook not checked by us" in row["note"] and "ours: our choice" in row["note"]
    row = rows["bf16 mixed precision, settings 1-3"]
    assert (row["study"], row["source"], row["status"]) == ("not stated", "assumption", "not stated")
    # A config that follows the report is the study's.
    config = validated("config.yaml")
    for name in STUDY["settings"]:
        config["settings"][name]["training"] = {**config["settings"][name]["training"], "bf16": False}
    assert by_parameter(ft.fidelity_table(STUDY, config))["bf16 mixed precision, setting 4"]["status"] == "same"


def test_the_judge_model_is_our_reading_of_chatgpt_3():
    row = study_rows()["Judge model"]
    assert (row["study"], row["this_run"], row["source"]) == ("ChatGPT-3", "gpt-3.5-turbo", "report §2, §3.4")
    assert row["status"] == "our reading" and row["note"] == "our reading: gpt-3.5-turbo"


def test_the_judge_s_layout_and_orders_differ_by_design_from_the_course_code():
    rows = study_rows()
    for label in ("Judge message layout", "Orders judged per question"):
        row = rows[label]
        assert row["source"] == "report §2, §3.4; course code (public), our reading", label
        assert row["status"] == "by design" and row["study"].startswith("not stated (course code: "), label
    assert "Question:, Assistant1:, Assistant2:" in rows["Judge message layout"]["study"]
    assert "start and end lines" in rows["Judge message layout"]["this_run"]
    assert "the baseline as Assistant 1" in rows["Orders judged per question"]["study"]
    assert rows["Orders judged per question"]["this_run"] == "both"
    row = rows["Runs per setting"]
    assert (row["study"], row["this_run"], row["source"], row["status"]) == (
        "one (one win rate per setting)",
        "3",
        "report Table 1, our reading",
        "by design",
    )


def test_the_study_s_environment_has_rows_that_change_speed_only():
    rows = {r["parameter"]: r for r in study_rows().values() if r["group"] == "Environment"}
    assert {p: r["study"] for p, r in rows.items()} == {
        "GPU": "one RTX 5090 (32 GB)",
        "Python": "3.12",
        "PyTorch": "2.8.0+cu128",
        "CUDA": "12.8",
    }
    assert all(r["source"] == "report §2, §3.1" and r["status"] == "execution" for r in rows.values())
    assert rows["GPU"]["this_run"] == "cuda"
    assert all("recorded in the Provenance section" in rows[p]["this_run"] for p in ("Python", "PyTorch", "CUDA"))


def test_an_assumption_is_never_the_study_s_value():
    rows = study_rows()
    for param in STUDY["parameters"]:
        row = rows[param["label"]]
        if param["source"] == "assumption":
            assert "value" not in param and row["study"] == "not stated" and row["status"] == "not stated", param
            assert row["note"].startswith(f"our assumption: {ft.text(param['assumed'])}"), param
        if row["status"] == "same":
            assert "assumption" not in row["source"] and "our reading" not in row["source"], param


def test_every_parameter_names_its_source_and_a_key_the_study_config_has():
    config = validated("config.yaml")
    for param in STUDY["parameters"]:
        assert param["source"].startswith(SOURCES), param
        if "ours" in param:
            continue
        values = ft.run_values(config, param["key"], ft.row_settings(param, STUDY["settings"]))
        assert all(v is not ft.ABSENT for v in values.values()) or param["key"] == "data.subset", param


def test_an_overlay_that_changes_the_judge_is_a_deviation():
    config = validated("config.yaml")
    config["judge"]["model"] = "gpt-4o"
    config["settings"]["setting2"]["lora"] = {**config["settings"]["setting2"]["lora"], "r": 8}
    rows = by_parameter(ft.fidelity_table(STUDY, config))
    assert rows["Judge model"]["status"] == "deviation" and rows["Judge model"]["this_run"] == "gpt-4o"
    assert rows["Judge model"]["note"] == "our reading: gpt-3.5-turbo"
    assert rows["Rank r"]["status"] == "deviation"
    assert rows["Rank r"]["this_run"] == "setting1: 16; setting2: 8; setting3: 16; setting4: 16"
    deviating = [p for p, row in rows.items() if row["status"] == "deviation"]
    assert deviating == ["Rank r", "bf16 mixed precision, setting 4", "Judge model"]


def test_a_settings_1_to_3_row_shows_each_of_them():
    config = validated("config.yaml")
    config["settings"]["setting2"]["training"] = {**config["settings"]["setting2"]["training"], "learning_rate": 3e-5}
    row = by_parameter(ft.fidelity_table(STUDY, config))["Learning rate, settings 1-3"]
    assert row["this_run"] == "setting1: 2e-5; setting2: 3e-5; setting3: 2e-5" and row["status"] == "not stated"


def test_the_demo_deviates_where_it_is_small_and_offline():
    rows = by_parameter(ft.fidelity_table(STUDY, validated("demo.yaml")))
    for parameter in ("Dataset", "Test set", "Judge model", "Method", "Max new tokens", "Rank r"):
        assert rows[parameter]["status"] == "deviation", parameter
    assert rows["Rewriting model"]["this_run"] == "absent" and rows["GPU"]["this_run"] == "cpu"


def test_a_removed_setting_is_absent():
    config = copy.deepcopy(validated("config.yaml"))
    del config["settings"]["setting3"]
    rows = by_parameter(ft.fidelity_table(STUDY, config))
    assert "setting3: absent" in rows["Rank r"]["this_run"] and rows["Rank r"]["status"] == "deviation"


def test_values_compare_as_config_values():
    assert ft.same(2e-5, 2.0e-05) and ft.same(1, 1.0) and not ft.same(True, 1)
    assert ft.same(ft.ABSENT, None) and not ft.same([1, 2], [2, 1])
    assert ft.text(1e-4) == "1e-4" and ft.text(0.05) == "0.05" and ft.text(True) == "yes"


def test_the_paper_counts_every_status():
    rows = [{"status": s} for s in ["same"] * 3 + ["not stated"] * 2 + ["our reading", "by design", "execution"]]
    assert design.fidelity_summary(rows) == (
        "of its 8 rows, 3 hold the study's value, none differs from it in this run, 2 are ours where the "
        "study is silent (``ours''), 1 is our reading of the study's words (``our reading''), 1 differs by "
        "design (``by design'') and 1 changes speed only (``speed only'')."
    )
    assert design.fidelity_summary([{"status": "deviation"}, {"status": "same"}]) == (
        "of its 2 rows, 1 holds the study's value and 1 differs from it in this run (``differs'')."
    )
    with pytest.raises(PipelineError, match=r"tables/fidelity.csv: status \['unknown'\]"):
        design.fidelity_summary([{"status": "unknown"}])


def test_main_writes_the_table(tmp_path):
    out = tmp_path / "tables" / "fidelity.csv"
    smk = fake_snakemake(
        input={"study": str(REPO / "config" / "study.yaml")}, output={}, params={"config": validated("config.yaml")}
    )
    smk.output = [str(out)]
    ft.main(smk)
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns) == ft.COLUMNS and len(table) == len(STUDY["parameters"])


ROW = {"group": "Training", "label": "Epochs", "key": "settings.*.training.num_train_epochs", "source": "notebook"}


@pytest.mark.parametrize(
    "study, message",
    [
        ({"parameters": []}, "'parameters' must be a non-empty list"),
        (
            {"parameters": [{"group": "Data", "label": "Dataset", "key": "data.source"}]},
            "parameter 'Dataset': missing 'source'",
        ),
        (
            {"parameters": [{**ROW, "value": 1, "not what is learned": None}]},
            r"parameter 'Epochs': unknown field\(s\) \['not what is learned'\]",
        ),
        ({"parameters": [{**ROW, "value": 1, "assumed": 1}]}, "parameter 'Epochs': 'assumed' is ours where"),
        (
            {"parameters": [{**ROW, "value": 1, "reading": True}]},
            "parameter 'Epochs': 'reading' needs the study's words",
        ),
        (
            {"parameters": [{**ROW, "study": "one epoch"}]},
            "parameter 'Epochs': 'study' gives the words of the study's 'value'",
        ),
        ({"parameters": [{**ROW, "value": 1, "ours": "one"}]}, "parameter 'Epochs': 'ours' is for a 'protocol' or"),
        (
            {"settings": SETTINGS_1_3, "parameters": [{**ROW, "key": "judge.model", "settings": ["setting1"]}]},
            "parameter 'Epochs': 'settings' needs a key 'settings.*.<name>'",
        ),
        (
            {"settings": SETTINGS_1_3, "parameters": [{**ROW, "settings": ["setting4"]}]},
            "parameter 'Epochs': 'settings' must be a non-empty list of",
        ),
    ],
)
def test_a_broken_study_file_is_named(study, message):
    with pytest.raises(PipelineError, match=message):
        ft.fidelity_table(study, validated("config.yaml"))
