"""FastChat's and AlpacaEval's layouts of our answers and verdicts: read back as those tools read
them (FastChat: the file name is the model, rows keyed by question_id; the pair rule combines g1
and g2), they give our answers and our verdicts."""

import glob
import json
import os

import pytest

import interchange
from conftest import fake_snakemake

TEST = [
    {"id": 1, "question": "孩子发烧怎么办？", "reference": "r1"},
    {"id": 2, "question": "胃反酸？", "reference": "r2"},
    {"id": 3, "question": "湿疹很痒？", "reference": "r3"},
    {"id": 4, "question": "头晕？", "reference": "r4"},
]
BASELINE = [{"id": t["id"], "question": t["question"], "answer": f"baseline {t['id']}"} for t in TEST]
# (setting_first label, baseline_first label) -> our verdict, judge_pairwise's both-orders rule
CASES = [
    (("better", "worse"), "win"),
    (("worse", "better"), "loss"),
    (("better", "better"), "tie"),
    (("equal", "worse"), "tie"),
    ((None, "worse"), "invalid"),
]


def verdict(qid, setting, labels, outcome):
    return {
        "id": qid,
        "setting": setting,
        "question": TEST[qid - 1]["question"],
        "setting_answer": f"{setting} {qid}",
        "baseline_answer": f"baseline {qid}",
        "verdict": outcome,
        "orders": [
            {"order": order, "label": label, "calls": [{"reply": "first try"}, {"reply": f"{order} {label}"}]}
            for order, label in zip(("setting_first", "baseline_first"), labels)
        ],
    }


@pytest.fixture
def exported(tmp_path):
    settings, replicates = ["s1", "control"], 2
    answers, verdicts = [], []
    for s in settings:
        for r in range(replicates):
            path = tmp_path / f"gen-{s}-{r}.jsonl"
            path.write_text(
                "".join(
                    json.dumps(
                        {"id": t["id"], "question": t["question"], "answer": f"{s} {t['id']}"}, ensure_ascii=False
                    )
                    + "\n"
                    for t in TEST
                ),
                encoding="utf-8",
            )
            answers.append(str(path))
    for judge in ("primary", "chrf"):
        for s in settings:
            for r in range(replicates):
                path = tmp_path / f"v-{judge}-{s}-{r}.jsonl"
                rows = [verdict(t["id"], s, *CASES[(t["id"] + r) % len(CASES)]) for t in TEST]
                path.write_text("".join(json.dumps(v, ensure_ascii=False) + "\n" for v in rows), encoding="utf-8")
                verdicts.append(str(path))
    for name, rows in (("test", TEST), ("baseline", BASELINE)):
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows), encoding="utf-8"
        )
    smk = fake_snakemake(
        input={
            "test": str(tmp_path / "test.jsonl"),
            "baseline": str(tmp_path / "baseline.jsonl"),
            "answers": answers,
            "verdicts": verdicts,
        },
        output={"folder": str(tmp_path / "out")},
        params={"settings": settings, "replicates": replicates, "judges": ["primary", "chrf"]},
    )
    smk.wildcards = type("W", (), {"test_set": "small"})
    interchange.main(smk)
    return tmp_path / "out"


def load_model_answers(answer_dir):
    """FastChat's reading: model name from the file name, answers keyed by question_id."""
    answers = {}
    for filename in sorted(glob.glob(os.path.join(answer_dir, "*.jsonl"))):
        with open(filename, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        answers[os.path.splitext(os.path.basename(filename))[0]] = {r["question_id"]: r for r in rows}
    return answers


def fastchat_pair_winner(g1, g2):
    """MT-bench's rule for a pair judged in both orders: agreement or a tie."""
    return g1 if g1 == g2 else "tie"


def test_fastchat_questions_and_answers(exported):
    fastchat = exported / "fastchat"
    questions = [json.loads(line) for line in (fastchat / "question.jsonl").read_text(encoding="utf-8").splitlines()]
    assert questions[0] == {"question_id": 1, "category": "medical", "turns": ["孩子发烧怎么办？"]}
    answers = load_model_answers(fastchat / "model_answer")
    assert sorted(answers) == ["baseline", "control-rep0", "control-rep1", "s1-rep0", "s1-rep1"]
    assert answers["s1-rep1"][3]["choices"] == [{"index": 0, "turns": ["s1 3"]}]
    assert answers["baseline"][2]["choices"][0]["turns"] == ["baseline 2"]
    assert answers["s1-rep1"][3]["model_id"] == "s1-rep1"


def test_fastchat_judgments_combine_to_our_verdicts(exported):
    path = exported / "fastchat" / "model_judgment" / "primary_pair.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 * 2 * 2  # questions x settings x replicates
    ours = {"model_1": "win", "model_2": "loss", "tie": "tie"}
    for row in rows:
        replicate = int(row["model_1"].rsplit("rep", 1)[1])
        labels, expected = CASES[(row["question_id"] + replicate) % len(CASES)]
        assert row["model_2"] == "baseline" and row["judge"] == ["primary", "pair"] and row["turn"] == 1
        assert row["g1_judgment"] == f"setting_first {labels[0]}"  # the reply that counted, after a retry
        if expected == "invalid":
            assert "error" in (row["g1_winner"], row["g2_winner"])
        else:
            assert ours[fastchat_pair_winner(row["g1_winner"], row["g2_winner"])] == expected


def test_alpaca_eval_outputs_and_annotations(exported):
    alpaca = exported / "alpaca_eval"
    outputs = json.loads((alpaca / "s1-rep0" / "model_outputs.json").read_text(encoding="utf-8"))
    assert outputs[1] == {"instruction": "胃反酸？", "output": "s1 2", "generator": "s1-rep0", "dataset": "small"}
    baseline = json.loads((alpaca / "baseline" / "model_outputs.json").read_text(encoding="utf-8"))
    assert [o["output"] for o in baseline] == [b["answer"] for b in BASELINE]
    annotations = json.loads((alpaca / "s1-rep0" / "annotations_chrf.json").read_text(encoding="utf-8"))
    by_question = {a["instruction"]: a for a in annotations}
    for t in TEST:
        a = by_question[t["question"]]
        expected = CASES[t["id"] % len(CASES)][1]
        assert a["output_1"] == f"baseline {t['id']}" and a["output_2"] == f"s1 {t['id']}"  # the reference first
        assert a["preference"] == {"win": 2, "loss": 1, "tie": 1.5, "invalid": None}[expected]
    # preference - 1 is the mean score's win 1, tie 1/2, loss 0
    scores = {"win": 1, "tie": 0.5, "loss": 0}
    valid = [scores[CASES[t["id"] % len(CASES)][1]] for t in TEST if CASES[t["id"] % len(CASES)][1] in scores]
    got = [a["preference"] - 1 for a in annotations if a["preference"] is not None]
    assert sum(got) / len(got) == pytest.approx(sum(valid) / len(valid))
