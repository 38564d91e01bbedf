"""raw -> splits -> test set on tiny inputs, the real Huatuo rows, and the error paths."""

import json
import platform

import pytest

import raw_data
import split_data
import test_set
from conftest import fake_snakemake, with_defaults
from huatuo_study import versions
from huatuo_study.common import DataError, PipelineError, normalize_text, read_json, write_jsonl


def row(i, question, answer="多喝水，注意休息，如症状加重请及时就医。", score=5, **extra):
    return {
        "id": i,
        "question": question,
        "answer": answer,
        "score": score,
        "label": "内科",
        "related_diseases": "",
        **extra,
    }


@pytest.fixture
def raw_file(tmp_path):
    rows = [row(i, f"第{i}个问题：我头痛发烧怎么办？") for i in range(1, 21)]
    rows.append(row(21, "第1个问题 ：我头痛发烧怎么办?"))  # the same question, other punctuation
    rows.append(row(22, "分数很低的问题？", score=1))
    rows.append(row(23, "回答很长的问题？", answer="很" * 50))
    path = tmp_path / "raw.jsonl"
    write_jsonl(path, rows)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_load_rows_reads_every_local_format(tmp_path, suffix):
    import pandas as pd

    frame = pd.DataFrame([row(1, "问题一？"), row(2, "问题二？")])
    path = tmp_path / f"data{suffix}"
    {
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True, force_ascii=False),
        ".json": lambda: frame.to_json(path, orient="records", force_ascii=False),
        ".csv": lambda: frame.to_csv(path, index=False),
        ".parquet": lambda: frame.to_parquet(path),
    }[suffix]()
    rows = raw_data.load_rows(str(path))
    assert [r["question"] for r in rows] == ["问题一？", "问题二？"]


def test_load_rows_errors_name_the_source(tmp_path):
    with pytest.raises(PipelineError, match="missing.jsonl' does not exist"):
        raw_data.load_rows(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "data.txt"
    bad.write_text("x")
    with pytest.raises(PipelineError, match="unknown format"):
        raw_data.load_rows(str(bad))


def test_subset_takes_a_seeded_sample_of_a_window():
    import datasets

    rows = datasets.Dataset.from_list([{"id": i} for i in range(100)])
    a = raw_data.take_subset(rows, {"start": 10, "stop": 50, "n": 5, "seed": 42})
    b = raw_data.take_subset(rows, {"start": 10, "stop": 50, "n": 5, "seed": 42})
    assert a["id"] == b["id"] and len(a) == 5 and all(10 <= i < 50 for i in a["id"])
    with pytest.raises(PipelineError, match=r"rows \[0, 500\) are outside the 100 rows"):
        raw_data.take_subset(rows, {"start": 0, "stop": 500, "n": 5, "seed": 1})


def test_clean_rows_counts_each_reason(raw_file):
    kept, dropped = split_data.clean_rows(str(raw_file), {"min_score": 2, "max_answer_chars": 40}, False)
    assert len(kept) == 20
    assert dropped == {"duplicate_question": 1, "low_score": 1, "answer_too_long": 1}


class Files(list):
    """A rule's input or output as a `script:` sees it: a list, with names as attributes."""


def test_split_stage_writes_its_stats_and_the_versions_it_ran_with(raw_file, tmp_path):
    cfg = with_defaults(
        "splits",
        {"seed": 3, "val_fraction": 0.1, "heldout_fraction": 0.2, "filters": {"min_score": 2, "max_answer_chars": 40}},
    )
    smk = fake_snakemake(
        output={name: str(tmp_path / f"{name}.jsonl") for name in ("train", "val", "heldout")}, params={"splits": cfg}
    )
    smk.input, smk.output.stats = Files([str(raw_file)]), str(tmp_path / "split_stats.json")
    split_data.main(smk)
    stats = read_json(smk.output.stats)
    assert stats["n_raw"] == 23 and stats["n_kept"] == 20
    assert stats["n_train"] + stats["n_val"] + stats["n_heldout"] == 20
    # For the paper's provenance: the stage imports no third-party package, so Python alone.
    assert stats["versions"] == {"python": platform.python_version()} == versions.versions(versions.SPLIT)


@pytest.mark.parametrize(
    "bad, field, problem",
    [
        ({"question": "", "answer": "答"}, "question", "empty after trimming"),
        ({"question": "问", "answer": "   "}, "answer", "empty after trimming"),
        ({"question": 42, "answer": "答"}, "question", "expected a string, got int"),
        ({"answer": "答"}, "question", "missing"),
        ({"question": "问", "answer": "答", "score": "high"}, "score", "unexpected type str"),
    ],
)
def test_malformed_row_stops_with_file_line_and_field(tmp_path, bad, field, problem):
    path = tmp_path / "raw.jsonl"
    write_jsonl(path, [row(1, "好问题？"), {"id": 2, **bad}])
    with pytest.raises(DataError) as e:
        split_data.clean_rows(str(path), {}, skip_bad_rows=False)
    assert str(e.value).startswith(f"{path}, line 2: field '{field}': {problem}")
    kept, dropped = split_data.clean_rows(str(path), {}, skip_bad_rows=True)
    assert len(kept) == 1 and dropped["malformed"] == 1


def test_invalid_json_line_is_located(tmp_path):
    path = tmp_path / "raw.jsonl"
    path.write_text(json.dumps(row(1, "问？"), ensure_ascii=False) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"raw.jsonl, line 2: not valid JSON"):
        split_data.clean_rows(str(path), {}, False)


def test_split_is_seeded_disjoint_and_complete():
    rows = [row(i, f"问题{i}？") for i in range(100)]
    train, val, heldout = split_data.split_rows(rows, 3, 0.1, 0.2)
    assert (len(train), len(val), len(heldout)) == (70, 10, 20)
    ids = [r["id"] for r in train + val + heldout]
    assert sorted(ids) == list(range(100))
    assert split_data.split_rows(rows, 3, 0.1, 0.2) == (train, val, heldout)
    assert split_data.split_rows(rows, 4, 0.1, 0.2)[2] != heldout


def test_split_by_counts_draws_from_all_rows_and_leaves_the_rest():
    """The study's notebook: 400 train + 100 val rows drawn at random from the whole split."""
    rows = [row(i, f"问题{i}？") for i in range(1000)]
    train, val, heldout = split_data.split_rows(rows, 42, sizes={"train": 400, "val": 100, "heldout": 20})
    assert (len(train), len(val), len(heldout)) == (400, 100, 20)
    ids = [r["id"] for r in train + val + heldout]
    assert len(set(ids)) == 520
    assert max(r["id"] for r in train) > 900 and min(r["id"] for r in train) < 100  # from the whole range
    assert split_data.split_rows(rows, 42, sizes={"train": 400, "val": 100, "heldout": 20}) == (train, val, heldout)
    with pytest.raises(DataError, match=r"field 'sizes': 900 \+ 100 \+ 20 rows asked for, but only 1000"):
        split_data.split_rows(rows, 42, sizes={"train": 900, "val": 100, "heldout": 20})


def test_course_file_and_leakage(tmp_path):
    course = tmp_path / "zh_med.json"
    course.write_text(
        json.dumps([["感冒了怎么办？", "多休息。"], ["高血压吃什么药？", "遵医嘱。"]], ensure_ascii=False)
    )
    test = test_set.read_course_file(str(course))
    assert test[1] == {"id": 2, "question": "高血压吃什么药？", "reference": None, "baseline_answer": "遵医嘱。"}
    test_set.check_leakage(test, {"train": [row(1, "头痛怎么办？")], "val": []})
    with pytest.raises(PipelineError, match="test 1 = val id 9"):
        test_set.check_leakage(test, {"train": [], "val": [row(9, "感冒了 怎么办?")]})


def test_copies_of_a_test_set_have_their_own_ids_and_keep_the_rest():
    test = [
        {"id": 1, "question": "感冒了怎么办？", "reference": None, "baseline_answer": "多休息。"},
        {"id": 2, "question": "高血压吃什么药？", "reference": None, "baseline_answer": "遵医嘱。"},
    ]
    assert test_set.with_copies(test, 1) == test
    copies = test_set.with_copies(test, 3)
    assert [t["id"] for t in copies] == ["1.1", "2.1", "1.2", "2.2", "1.3", "2.3"]
    assert [{k: v for k, v in t.items() if k != "id"} for t in copies] == [
        {k: v for k, v in t.items() if k != "id"} for t in test
    ] * 3


def test_course_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([["问题", "答"], ["只有问题"]], ensure_ascii=False))
    with pytest.raises(DataError, match="item 2"):
        test_set.read_course_file(str(bad))
    with pytest.raises(PipelineError, match="does not exist"):
        test_set.read_course_file(str(tmp_path / "none.json"))


def test_heldout_slices_keep_reference_answers_and_do_not_overlap():
    heldout = [row(i, f"问题{i}？", answer=f"回答{i}") for i in range(10)]
    first, second = test_set.draw_from_heldout(heldout, 0, 4), test_set.draw_from_heldout(heldout, 4, 10)
    assert [t["id"] for t in first] == [0, 1, 2, 3] and [t["id"] for t in second] == list(range(4, 10))
    assert all(t["reference"] == f"回答{t['id']}" and t["baseline_answer"] is None for t in first + second)
    with pytest.raises(PipelineError, match=r"held-out rows \[4, 11\) asked for .* the held-out split has 10"):
        test_set.draw_from_heldout(heldout, 4, 11)


def test_real_rows_through_raw_and_splits(shared_data, tmp_path):
    rows = raw_data.load_rows(str(shared_data / "huatuo26m_lite_sample500.jsonl"))
    assert len(rows) == 500
    write_jsonl(tmp_path / "raw.jsonl", rows)
    kept, dropped = split_data.clean_rows(str(tmp_path / "raw.jsonl"), {"max_answer_chars": 600}, False)
    assert len(kept) + sum(dropped.values()) == 500 and dropped["answer_too_long"] >= 1
    train, val, heldout = split_data.split_rows(kept, 42, 0.1, 0.1)
    keys = [normalize_text(r["question"]) for r in train + val + heldout]
    assert len(keys) == len(set(keys)) == len(kept)


def test_real_course_file_has_the_case_study_question(shared_data):
    test = test_set.read_course_file(str(shared_data / "zh_med.json"))
    assert len(test) == 20
    assert test[2]["question"] == "请描述一下病毒性感染的传播途径以及如何防止传播？"


def test_a_killed_writes_temporary_goes_with_the_next_write_of_that_output(tmp_path):
    """SIGKILL runs no cleanup: a stale .<name>.<8 characters>[suffix] beside an output is removed
    when that output is written again; another output's temporaries are left alone."""
    from huatuo_study.common import atomic_dir, write_text

    stale_file, stale_dir = tmp_path / ".out.json.abcd1234.tmp", tmp_path / ".adapter.k9_x2mq7"
    others = [tmp_path / ".out.json.gz.abcd1234.tmp", tmp_path / ".out.jsonl.abcd1234.tmp", tmp_path / ".out.json.x"]
    stale_file.write_text("half", encoding="utf-8")
    stale_dir.mkdir()
    (stale_dir / "adapter_model.safetensors").write_text("half", encoding="utf-8")
    for other in others:
        other.write_text("another output's", encoding="utf-8")
    write_text(tmp_path / "out.json", "{}")
    with atomic_dir(tmp_path / "adapter") as tmp:
        (tmp / "adapter_config.json").write_text("{}", encoding="utf-8")
    assert not stale_file.exists() and not stale_dir.exists()
    assert all(other.exists() for other in others)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["adapter", "out.json"]
