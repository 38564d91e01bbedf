"""Near-duplicate leakage (scripts/near_duplicates.py): real datasketch MinHash LSH over character
n-grams, exact Jaccard on its candidates, a reworded copy found, a near-copy stopping the run."""

import json

import pytest

import near_duplicates as nd
from conftest import fake_snakemake
from huatuo_study.common import PipelineError, read_json, read_jsonl, write_jsonl

CFG = {"ngram": 2, "num_perm": 128, "threshold": 0.5, "stop_threshold": 0.9, "top_k": 10}
TEST = [
    {"id": 1, "question": "高血压患者平时饮食需要注意什么？"},
    {"id": 2, "question": "请描述一下病毒性感染的传播途径以及如何防止传播？"},
]
TRAIN = [
    {"id": "a", "question": "高血压患者平时的饮食需要注意些什么？"},  # reworded test question 1
    {"id": "b", "question": "孩子发烧三天了，吃了布洛芬还是不退，应该怎么办？"},
    {"id": "c", "question": "胃痛了好几天，吃饭以后更加难受，请问是什么原因？"},
]
VAL = [{"id": "v", "question": "经常熬夜会不会导致脱发，有什么好的办法？"}]


def test_a_reworded_test_question_is_found_with_its_exact_similarity():
    pairs = nd.near_duplicates(TEST, {"train": TRAIN, "val": VAL}, CFG)
    assert [(p["test_id"], p["split"], p["id"]) for p in pairs] == [(1, "train", "a")]
    expected = nd.jaccard(nd.shingles(TEST[0]["question"], 2), nd.shingles(TRAIN[0]["question"], 2))
    assert 0.5 <= pairs[0]["jaccard"] == round(expected, 4) < 0.9
    nd.check_stop(pairs, CFG["stop_threshold"])  # close, not a copy: reported, not stopped
    assert nd.near_duplicates(TEST, {"train": TRAIN, "val": VAL}, CFG) == pairs  # seeded signatures


def test_a_near_copy_stops_the_run_naming_the_pair():
    copy = [{"id": "x", "question": "请描述一下，病毒性感染的传播途径以及如何防止传播?"}]  # punctuation only
    pairs = nd.near_duplicates(TEST, {"train": TRAIN, "val": copy}, CFG)
    assert pairs[0]["jaccard"] == 1.0 and pairs[0]["split"] == "val"
    with pytest.raises(
        PipelineError,
        match=r"test question 2 is a near-duplicate of val row 'x' .*Jaccard 1.00 "
        r">= leakage.stop_threshold 0.9",
    ):
        nd.check_stop(pairs, 0.9)
    nd.check_stop(pairs, None)  # null: report only


def test_the_stage_writes_counts_and_the_closest_pairs(tmp_path):
    paths = {name: tmp_path / f"{name}.jsonl" for name in ("test", "train", "val")}
    for name, rows in (("test", TEST), ("train", TRAIN), ("val", VAL)):
        write_jsonl(paths[name], rows)
    smk = fake_snakemake(input={k: str(v) for k, v in paths.items()}, params={"leakage": CFG})
    smk.output = [str(tmp_path / "near_duplicates.json")]
    nd.main(smk)
    report = read_json(smk.output[0])
    assert report["n_test"] == 2 and report["n_compared"] == {"train": 3, "val": 1}
    assert report["n_test_with_near_duplicate"] == 1 and report["closest"][0]["id"] == "a"
    json.dumps(report)


def test_the_course_questions_have_no_near_duplicate_in_real_rows(shared_data):
    course = json.loads((shared_data / "zh_med.json").read_text(encoding="utf-8"))
    test = [{"id": i, "question": q} for i, (q, _) in enumerate(course, 1)]
    rows = [{"id": i, **r} for i, r in enumerate(read_jsonl(shared_data / "huatuo26m_lite_sample500.jsonl"))]
    assert nd.near_duplicates(test, {"train": rows}, {**CFG, "threshold": 0.2}) == []
    # and a question of the real rows, lightly reworded, is caught among all 500
    probe = [{"id": "p", "question": rows[7]["question"].replace("？", "呢？")}]
    assert nd.near_duplicates(probe, {"train": rows}, CFG)[0]["id"] == 7
