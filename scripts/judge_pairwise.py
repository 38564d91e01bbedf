"""Pairwise LLM judging of one setting's answers against the baseline's answers.

Every test question is judged twice, the setting's answer once as Assistant 1 and once as
Assistant 2 (ORDERS). The judge ends each reply with one of three labels about Assistant 1; the
label is read from the reply's last non-empty line only (an answer under judgement that quotes a
label cannot change it), and a reply without one is asked once more, then recorded as invalid.
Each order gives the setting an outcome (win, loss, tie or invalid); the verdict follows
FastChat's MT-bench rule: the same outcome both ways stands, two different ones make a tie, and
an invalid order makes the verdict invalid (counted as such, never a silent tie). `consistent`
says whether the two orders agreed (null when one is invalid).

Backends, both through the same two-order path:
  openai     an OpenAI-compatible chat-completions endpoint (the study's judge), cached, with
             retries, optionally through the Batch API (chat_api.py).
  reference  offline: character-level ROUGE-L F1 (model rouge-l-char) or chrF (model chrf) of
             each answer against the test row's reference answer (the demo's judges; needs
             held-out test sets). Symmetric.

One record per question in verdicts/<test set>/<judge>/<setting>/rep<r>.jsonl, with per order the label, the outcome and
every call (reply and token usage), and per question the usage totals the win-rate table sums.
"""

import re
import unicodedata
from dataclasses import dataclass

from huatuo_study.chat_api import ChatClient, Reply
from huatuo_study.common import DataError, PipelineError, log, normalize_text, read_prompt, run_stage, write_jsonl
from huatuo_study.records import read_records

# Which answer is Assistant 1: the setting's, then the baseline's.
ORDERS = ("setting_first", "baseline_first")
# The label (about Assistant 1) as an outcome for the setting, in each order.
OUTCOME = {
    "setting_first": {"better": "win", "worse": "loss", "equal": "tie", None: "invalid"},
    "baseline_first": {"better": "loss", "worse": "win", "equal": "tie", None: "invalid"},
}
LABEL_TEXT = {
    "better": "Assistant 1 is better than Assistant 2",
    "worse": "Assistant 1 is worse than Assistant 2",
    "equal": "Assistant 1 is equal to Assistant 2",
}


# --------------------------------------------------------------------------- prompt and label


# Each answer sits between its own start and end lines (FastChat's pairwise layout), so that the
# judge reads it as data. An answer cannot write those lines: a "[The Start of" or "[The End of"
# inside it gets a full-width bracket, so no answer can close its block early or pose as the other.
_FENCE = re.compile(r"\[(?=The (?:Start|End) of )")


def _fenced(n: int, answer: str) -> str:
    answer = _FENCE.sub("\uff3b", answer)
    return f"[The Start of Assistant {n}'s Answer]\n{answer}\n[The End of Assistant {n}'s Answer]"


def build_messages(prompt: str, question: str, answer1: str, answer2: str) -> list[dict]:
    """The judge's conversation: one user message with the study's prompt (config/judge_prompt.txt),
    the question and the two fenced answers."""
    question = _FENCE.sub("\uff3b", question)
    content = f"{prompt}\n\n[Question]\n{question}\n\n{_fenced(1, answer1)}\n\n{_fenced(2, answer2)}"
    return [{"role": "user", "content": content}]


# Quotes of every kind (after NFKC), markdown emphasis and back-ticks: dropped before matching.
_QUOTES = re.compile(
    r"[\"'`*\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u2032\u2033\u00ab\u00bb\u300c\u300d\u300e\u300f]"
)
_LABEL = re.compile(r"assistant\s*1\s+is\s+(better\s+than|worse\s+than|equal\s+to)\s+assistant\s*2(?!\d)")
_TRAILING = re.compile(r"[\s.\u3002!?;,:]+$")


def _normalize_line(line: str) -> str:
    line = unicodedata.normalize("NFKC", line)
    line = _QUOTES.sub("", line).lower()
    line = re.sub(r"\s+", " ", line).strip()
    return _TRAILING.sub("", line)


def parse_label(reply: str | None) -> str | None:
    """The judge's label, 'better' | 'worse' | 'equal', read from the last non-empty line of the
    reply only (a label quoted earlier, e.g. from an answer, does not count); None when that
    line holds no label or holds two different ones."""
    if not reply:
        return None
    lines = [line for line in reply.splitlines() if line.strip()]
    if not lines:
        return None
    found = {m.group(1).split()[0] for m in _LABEL.finditer(_normalize_line(lines[-1]))}
    return found.pop() if len(found) == 1 else None


def verdict_of(outcome1: str, outcome2: str) -> str:
    """The setting's verdict from its outcomes in the two orders (FastChat's MT-bench rule):
    the same both ways stands, two different ones make a tie; an invalid one makes it invalid."""
    if "invalid" in (outcome1, outcome2):
        return "invalid"
    return outcome1 if outcome1 == outcome2 else "tie"


# --------------------------------------------------------------------------- inputs


@dataclass
class Item:
    """One test question with the two answers to compare."""

    id: str
    question: str
    setting_answer: str
    baseline_answer: str
    reference: str | None = None


@dataclass(frozen=True)
class Pair:
    """What one judge call compares: the question and the two answers, in the order shown."""

    question: str
    answer1: str
    answer2: str
    reference: str | None = None


def pairs_of(item: Item) -> list[Pair]:
    """The item's two calls, in ORDERS."""
    s, b = item.setting_answer, item.baseline_answer
    return [Pair(item.question, s, b, item.reference), Pair(item.question, b, s, item.reference)]


def _read_by_id(path, kind: str) -> dict[str, dict]:
    """Records of a JSONL file of `kind` (records.py) keyed by id, ids compared as strings."""
    by_id: dict[str, dict] = {}
    for lineno, record in read_records(path, kind):
        key = str(record["id"])
        if key in by_id:
            raise DataError(path, lineno, "id", f"duplicate id {key!r}")
        by_id[key] = {**record, "_line": lineno}
    return by_id


def _check_same_ids(test_ids: list[str], path, by_id: dict[str, dict]) -> None:
    for key in test_ids:
        if key not in by_id:
            raise DataError(path, None, "id", f"no record for test id {key!r}")
    extra = [key for key in by_id if key not in set(test_ids)]
    if extra:
        raise DataError(path, by_id[extra[0]]["_line"], "id", f"id {extra[0]!r} is not in the test file")


def load_items(test_path, baseline_path, answers_path) -> list[Item]:
    """Join the test file, the baseline's answers and the setting's answers on id, in test order.
    Every file must hold exactly the test ids, each once, for the same question."""
    test = _read_by_id(test_path, "test_question")
    if not test:
        raise DataError(test_path, None, None, "no test questions")
    baseline = _read_by_id(baseline_path, "answer")
    answers = _read_by_id(answers_path, "answer")
    test_ids = list(test)
    for path, by_id in ((baseline_path, baseline), (answers_path, answers)):
        _check_same_ids(test_ids, path, by_id)
        for key in test_ids:
            if _same_question(by_id[key]["question"], test[key]["question"]):
                continue
            raise DataError(path, by_id[key]["_line"], "question", f"id {key!r}: question differs from the test file's")
    return [
        Item(
            id=test[key]["id"],
            question=test[key]["question"],
            setting_answer=answers[key]["answer"],
            baseline_answer=baseline[key]["answer"],
            reference=test[key].get("reference"),
        )
        for key in test_ids
    ]


def _same_question(a: str, b: str) -> bool:
    return normalize_text(a) == normalize_text(b)


# --------------------------------------------------------------------------- reference backend


class CharTokenizer:
    """Characters as tokens, for Chinese: NFKC, lower case, whitespace and punctuation dropped."""

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text or "").lower()
        return [c for c in text if not c.isspace() and not unicodedata.category(c).startswith("P")]


def rouge_l_char(reference: str, answer: str) -> float:
    """Character ROUGE-L F1 (rouge-score, Chinese text as characters)."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=CharTokenizer()).score(reference, answer)["rougeL"].fmeasure


def chrf(reference: str, answer: str) -> float:
    """chrF (sacrebleu, its defaults: character 6-grams, beta 2), 0-100."""
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(answer, [reference]).score


# judge.model of the reference backend -> (its name in the reply, the metric).
REFERENCE_METRICS = {"rouge-l-char": ("Character ROUGE-L F1", rouge_l_char), "chrf": ("chrF", chrf)}


def reference_label(score1: float, score2: float, tie_margin: float) -> str:
    diff = score1 - score2
    if abs(diff) <= tie_margin + 1e-12:
        return "equal"
    return "better" if diff > 0 else "worse"


class ReferenceJudge:
    """Replies like an LLM judge would, its last line a label, from a metric against the reference."""

    def __init__(self, judge: dict):
        self.tie_margin = float(judge["tie_margin"])
        self.name, self.metric = REFERENCE_METRICS[judge["model"]]

    def ask(self, pairs: list[Pair], attempt: int = 0) -> list[Reply]:
        return [self.reply(pair) for pair in pairs]

    def reply(self, pair: Pair) -> Reply:
        s1, s2 = self.metric(pair.reference, pair.answer1), self.metric(pair.reference, pair.answer2)
        label = reference_label(s1, s2, self.tie_margin)
        return Reply(
            f"{self.name} against the reference: Assistant 1 = {s1:.4f}, Assistant 2 = {s2:.4f} "
            f"(tie margin {self.tie_margin:g}).\n{LABEL_TEXT[label]}"
        )


class OpenAIJudge:
    """The study's judge prompt, sent through chat_api.ChatClient (cache, retries, batch)."""

    def __init__(self, judge: dict, cache_dir: str, desc: str, prompt: str, section: str):
        self.chat, self.prompt = ChatClient(judge, cache_dir, desc, section=section), prompt

    def ask(self, pairs: list[Pair], attempt: int = 0) -> list[Reply]:
        return self.chat.ask([build_messages(self.prompt, p.question, p.answer1, p.answer2) for p in pairs], attempt)


def make_judge(judge: dict, items: list[Item], cache_dir: str, setting: str, prompt: str, section: str = "judge"):
    """`section` names the judge's config section in errors (judge, judge_panel.<name>)."""
    if judge["backend"] == "openai":
        return OpenAIJudge(judge, cache_dir, desc=f"judge {setting}", prompt=prompt, section=section)
    missing = [it.id for it in items if not it.reference]
    if missing:
        raise PipelineError(
            f"the reference judge needs a reference answer for every test row (test id {missing[0]!r} has none); "
            "use a held-out test set (source: heldout), or an openai judge"
        )
    return ReferenceJudge(judge)


# --------------------------------------------------------------------------- both orders


def ask_with_label_retry(judge, pairs: list[Pair]) -> list[list[Reply]]:
    """Every call's replies: the first, and a second where the first has no label."""
    calls = [[reply] for reply in judge.ask(pairs, attempt=0)]
    again = [i for i, replies in enumerate(calls) if parse_label(replies[0].content) is None]
    if again:
        log.warning("%d judge replies had no label in their last line: asking those once more", len(again))
        for i, reply in zip(again, judge.ask([pairs[i] for i in again], attempt=1)):
            calls[i].append(reply)
    return calls


def order_record(order: str, replies: list[Reply]) -> dict:
    label = parse_label(replies[-1].content)
    return {
        "order": order,
        "label": label,
        "outcome": OUTCOME[order][label],
        "calls": [
            {
                "reply": r.content,
                "label": parse_label(r.content),
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
            }
            for r in replies
        ],
    }


def verdict_record(item: Item, setting: str, judge: dict, orders: list[dict]) -> dict:
    first, second = (o["outcome"] for o in orders)
    calls = [call for o in orders for call in o["calls"]]
    return {
        "id": item.id,
        "setting": setting,
        "question": item.question,
        "setting_answer": item.setting_answer,
        "baseline_answer": item.baseline_answer,
        "verdict": verdict_of(first, second),
        "consistent": None if "invalid" in (first, second) else first == second,
        "orders": orders,
        "judge": {"backend": judge["backend"], "model": judge.get("model")},
        "usage": {
            "prompt_tokens": sum(c["prompt_tokens"] for c in calls),
            "completion_tokens": sum(c["completion_tokens"] for c in calls),
            "calls": len(calls),
        },
    }


def judge_items(items: list[Item], judge_cfg: dict, judge, setting: str) -> list[dict]:
    """One verdict record per item, from both orders of each."""
    pairs = [pair for item in items for pair in pairs_of(item)]
    calls = ask_with_label_retry(judge, pairs)
    records = []
    for i, item in enumerate(items):
        orders = [order_record(order, calls[2 * i + k]) for k, order in enumerate(ORDERS)]
        records.append(verdict_record(item, setting, judge_cfg, orders))
    return records


def main(smk) -> None:
    judge_cfg = dict(smk.params.judge)  # validated, with its defaults, by config/schema.yaml
    setting = str(smk.params.setting)
    items = load_items(smk.input.test, smk.input.baseline, smk.input.answers)
    judge = make_judge(
        judge_cfg, items, str(smk.params.cache_dir), setting, read_prompt(smk.input.prompt), smk.params.section
    )
    records = judge_items(items, judge_cfg, judge, setting)
    write_jsonl(smk.output.verdicts, records)
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("win", "tie", "loss", "invalid")}
    consistent = [r["consistent"] for r in records if r["consistent"] is not None]
    log.info(
        "%s: %d verdicts %s; the two orders agree on %d of %d",
        setting,
        len(records),
        counts,
        sum(consistent),
        len(consistent),
    )
    if counts["invalid"]:
        log.warning(
            "%s: %d verdicts invalid (a judge reply without a label in its last line, twice)",
            setting,
            counts["invalid"],
        )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
