"""The interchange files' schemas (scripts/huatuo_study/schemas/, scripts/huatuo_study/records.py): each is a valid JSON
Schema, a reader's error names file, line and field, and the writers not covered by their own
stage tests (test set, baseline from the course file) write records that fit."""

import json
from types import SimpleNamespace

import pytest
from jsonschema import Draft202012Validator

import baseline_answers
import test_set
from conftest import fake_snakemake
from huatuo_study.common import DataError, read_jsonl, write_jsonl
from huatuo_study.records import KINDS, SCHEMAS, check_record, read_records, read_table_json, validator


@pytest.mark.parametrize("kind", KINDS)
def test_each_schema_is_a_valid_draft_2020_12_schema(kind):
    Draft202012Validator.check_schema(validator(kind).schema)
    assert (SCHEMAS / f"{kind}.yaml").exists()


def test_a_bad_record_names_file_line_and_field(tmp_path):
    path = tmp_path / "answers.jsonl"
    write_jsonl(
        path,
        [
            {"id": 1, "question": "头痛怎么办？", "answer": "多休息。"},
            {"id": 2, "question": "失眠怎么调理？", "answer": 7},
        ],
    )
    with pytest.raises(DataError, match=r"answers\.jsonl, line 2: field 'answer': 7 is not of type 'string'"):
        read_records(path, "answer")
    write_jsonl(path, [{"id": 1, "answer": "多休息。"}])
    with pytest.raises(DataError, match=r"line 1: 'question' is a required property"):
        read_records(path, "answer")
    with pytest.raises(ValueError, match="unknown record kind 'answers'"):
        check_record({}, "answers", path)


def test_nested_fields_are_named_by_their_path():
    record = {
        "id": "q1",
        "setting": "s",
        "setting_answer": "a",
        "baseline_answer": "b",
        "verdict": "win",
        "consistent": True,
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "calls": 2},
        "orders": [{"order": "setting_first", "outcome": "win"}, {"order": "baseline_first", "outcome": "won"}],
    }
    with pytest.raises(DataError, match=r"field 'orders\.1\.outcome': 'won' is not one of"):
        check_record(record, "verdict", "verdicts.jsonl", 3)
    record["orders"][1]["outcome"] = "win"
    assert check_record(record, "verdict", "verdicts.jsonl", 3) is record
    record["orders"][1] = dict(record["orders"][0])  # the same order twice
    with pytest.raises(DataError, match=r"field 'orders'"):
        check_record(record, "verdict", "verdicts.jsonl", 3)


def test_test_set_and_file_baseline_write_records_that_fit(tmp_path):
    course = tmp_path / "zh_med.json"
    course.write_text(
        json.dumps([["头痛怎么办？", "多休息。"], ["失眠怎么调理？", "规律作息。"]], ensure_ascii=False),
        encoding="utf-8",
    )
    split = tmp_path / "split.jsonl"
    write_jsonl(split, [{"id": 9, "question": "发烧怎么办？", "answer": "物理降温。"}])
    test_path, baseline_path = tmp_path / "test.jsonl", tmp_path / "baseline.jsonl"
    smk = fake_snakemake(
        input={"source": [str(course)], "heldout": str(split), "train": str(split), "val": str(split)},
        params={"source": str(course), "n": 2, "copies": 1, "heldout_slice": None},
        rule="test_set",
    )
    smk.output, smk.wildcards = [str(test_path)], SimpleNamespace(test_set="course")
    test_set.main(smk)
    test_set_rows = read_records(test_path, "test_question")
    assert [r["baseline_answer"] for _, r in test_set_rows] == ["多休息。", "规律作息。"]
    smk = fake_snakemake(
        input={"test": str(test_path), "model": []},
        params={
            "baseline": {"source": "file"},
            "generation": {},
            "quantization": {},
            "device": "cpu",
            "cache_dir": str(tmp_path / "cache"),
            "section": "test_sets.course.baseline",
        },
        rule="baseline_answers",
    )
    smk.output = [str(baseline_path)]
    baseline_answers.main(smk)
    answers = [r for _, r in read_records(baseline_path, "answer")]
    assert [a["answer"] for a in answers] == ["多休息。", "规律作息。"] and {a["source"] for a in answers} == {"file"}
    assert set(answers[0]) <= set(validator("answer").schema["properties"])
    assert read_jsonl(test_path)[0]["reference"] is None


def test_a_bad_table_row_names_the_row_and_the_column(tmp_path):
    path = tmp_path / "claims.json"
    row = {
        "id": "scaling",
        "claim": "c",
        "source": "report §4.1",
        "setting": "setting2",
        "against": "setting1",
        "n": 20,
        "replicates": 3,
        "published_effect": 0.15,
        "effect": 0.05,
        "ci_low": -0.1,
        "ci_high": 0.2,
        "published_in_ci": True,
        "p_value": 0.4,
        "p_holm": 1.0,
        "holm_level": 0.05,
        "ci_holm_low": -0.1,
        "ci_holm_high": 0.2,
        "margin": 0.15,
        "power": 0.2,
        "n_for_80_power": 99,
        "verdict": "inconclusive",
        "reading": "the corrected interval holds 0",
    }
    path.write_text(json.dumps([row, {**row, "verdict": "maybe"}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"claims\.json: field 'row 2\.verdict': 'maybe' is not one of"):
        read_table_json(path, "claim_row")
    path.write_text(json.dumps({"rows": [row]}), encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list of rows"):
        read_table_json(path, "claim_row")
