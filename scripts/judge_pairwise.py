"""Pairwise LLM judging of one setting's answers against the baseline's answers.

For every test question the judge sees the setting's answer as Assistant 1 and the baseline's
answer as Assistant 2, and ends its reply with one of three labels; the label becomes the
setting's verdict: better -> win, worse -> loss, equal -> tie, no label -> invalid.

Backends:
  openai     an OpenAI-compatible chat-completions endpoint (the study's judge).
  reference  offline: character-level ROUGE-L F1 of each answer against the test row's
             reference answer (the demo's judge; needs test.source: heldout).
"""


import os
import re
import unicodedata
from dataclasses import dataclass, field

from common import DataError, PipelineError, iter_jsonl, log, normalize_text, run_stage, write_jsonl

JUDGE_PROMPT = (
    "We would like to request your feedback on the two AI assistants in response to the user "
    "question displayed above. Please evaluate the helpfulness, relevance, accuracy, level of "
    "details of their responses. You should tell me whether Assistant 1 is 'better than', "
    "'worse than', or 'equal to' Assistant 2. Please first compare their responses and analyze "
    "which one is more in line with the given requirements. In the last line, please output a "
    "single line containing only a single label selecting from 'Assistant 1 is better than "
    "Assistant 2', 'Assistant 1 is worse than Assistant 2', and 'Assistant 1 is equal to "
    "Assistant 2', avoiding any potential bias and ensuring that the order in which the "
    "responses were presented does not affect your judgment."
)

BACKENDS = ("openai", "reference")
LABELS = ("better", "worse", "equal")
# The label as seen from Assistant 1 (the setting), which is what the verdict is about.
VERDICT_OF_LABEL = {"better": "win", "worse": "loss", "equal": "tie", None: "invalid"}
LABEL_TEXT = {
    "better": "Assistant 1 is better than Assistant 2",
    "worse": "Assistant 1 is worse than Assistant 2",
    "equal": "Assistant 1 is equal to Assistant 2",
}

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_MAX_RETRIES = 5
DEFAULT_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------- prompt and label


def build_messages(question: str, answer1: str, answer2: str) -> list[dict]:
    """The judge's conversation: one user message with the prompt, the question, two answers."""
    content = f"{JUDGE_PROMPT}\n\nQuestion: {question}\n\nAssistant1: {answer1}\n\nAssistant2: {answer2}"
    return [{"role": "user", "content": content}]


# Quotes of every kind (after NFKC), markdown emphasis and back-ticks: dropped before matching.
_QUOTES = re.compile(r"[\"'`*\u2018\u2019\u201a\u201b\u201c\u201d\u201e\u201f\u2032\u2033\u00ab\u00bb\u300c\u300d\u300e\u300f]")
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


def verdict_of(label: str | None) -> str:
    return VERDICT_OF_LABEL[label]


# --------------------------------------------------------------------------- inputs


@dataclass
class Item:
    """One test question with the two answers to compare."""

    id: str
    question: str
    setting_answer: str
    baseline_answer: str
    reference: str | None = None


@dataclass
class Judgement:
    reply: str
    label: str | None
    usage: dict = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0})


def _require_str(path, lineno, record, key, allow_none=False):
    value = record.get(key)
    if value is None and allow_none:
        return None
    if key not in record:
        raise DataError(path, lineno, key, "missing")
    if not isinstance(value, str):
        raise DataError(path, lineno, key, f"expected a string, got {type(value).__name__}")
    return value


def _read_by_id(path, fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, dict]:
    """Records of a JSONL file keyed by id (ids compared as strings), each checked for `fields`."""
    by_id: dict[str, dict] = {}
    for lineno, record in iter_jsonl(path):
        if "id" not in record or record["id"] is None:
            raise DataError(path, lineno, "id", "missing")
        key = str(record["id"])
        if key in by_id:
            raise DataError(path, lineno, "id", f"duplicate id {key!r}")
        row = {"id": record["id"], "_line": lineno}
        for name in fields:
            row[name] = _require_str(path, lineno, record, name)
        for name in optional:
            row[name] = _require_str(path, lineno, record, name, allow_none=True)
        by_id[key] = row
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
    test = _read_by_id(test_path, ("question",), optional=("reference",))
    if not test:
        raise DataError(test_path, None, None, "no test questions")
    baseline = _read_by_id(baseline_path, ("question", "answer"))
    answers = _read_by_id(answers_path, ("question", "answer"))
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
            reference=test[key]["reference"],
        )
        for key in test_ids
    ]


def _same_question(a: str, b: str) -> bool:
    return normalize_text(a) == normalize_text(b)


# --------------------------------------------------------------------------- judge config


def check_judge(judge: dict) -> str:
    """Validate the judge section; return the backend."""
    if not isinstance(judge, dict):
        raise PipelineError("judge: expected a mapping")
    backend = judge.get("backend")
    if backend not in BACKENDS:
        raise PipelineError(f"judge.backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "openai" and not judge.get("model"):
        raise PipelineError("judge.model: required for the openai backend")
    return backend


# --------------------------------------------------------------------------- openai backend


def api_key_from_env(judge: dict) -> str:
    env = judge.get("api_key_env") or DEFAULT_API_KEY_ENV
    key = os.environ.get(env)
    if not key:
        raise PipelineError(f"judge.api_key_env: environment variable {env} is not set")
    return key


def make_client(judge: dict, api_key: str):
    import openai

    return openai.OpenAI(
        base_url=judge.get("base_url") or None,
        api_key=api_key,
        max_retries=int(judge.get("max_retries", DEFAULT_MAX_RETRIES)),
        timeout=float(judge.get("timeout", DEFAULT_TIMEOUT_S)),
    )


def request_kwargs(judge: dict, messages: list[dict]) -> dict:
    kwargs = {"model": judge["model"], "messages": messages, "temperature": judge.get("temperature", 0.0)}
    if judge.get("max_tokens") is not None:
        kwargs["max_tokens"] = int(judge["max_tokens"])
    return kwargs


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def call_judge(client, judge: dict, messages: list[dict], api_key: str = "") -> Judgement:
    """One chat-completions call; the reply's text, its label and the token usage."""
    import openai

    try:
        response = client.chat.completions.create(**request_kwargs(judge, messages))
    except openai.AuthenticationError as e:
        raise PipelineError(f"judge: the API rejected the key (HTTP {e.status_code}); check judge.api_key_env") from None
    except openai.APIStatusError as e:
        raise PipelineError(f"judge: request failed with HTTP {e.status_code}: {_scrub(str(e), api_key)}") from None
    except openai.APIError as e:
        raise PipelineError(f"judge: request failed: {_scrub(str(e), api_key)}") from None
    reply = (response.choices[0].message.content or "") if response.choices else ""
    usage = getattr(response, "usage", None)
    return Judgement(
        reply=reply,
        label=parse_label(reply),
        usage={
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
        },
    )


def judge_openai(items: list[Item], judge: dict, desc: str = "judge") -> list[Judgement]:
    from tqdm import tqdm

    api_key = api_key_from_env(judge)  # before any call
    client = make_client(judge, api_key)
    log.info("judging %d pairs with %s at %s", len(items), judge["model"], judge.get("base_url") or "(default)")
    return [
        call_judge(client, judge, build_messages(it.question, it.setting_answer, it.baseline_answer), api_key)
        for it in tqdm(items, desc=desc, unit="call")
    ]


# --------------------------------------------------------------------------- reference backend


class CharTokenizer:
    """Characters as tokens, for Chinese: NFKC, lower case, whitespace and punctuation dropped."""

    def tokenize(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text or "").lower()
        return [c for c in text if not c.isspace() and not unicodedata.category(c).startswith("P")]


def reference_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=CharTokenizer())


def reference_label(score1: float, score2: float, tie_margin: float) -> str:
    diff = score1 - score2
    if abs(diff) <= tie_margin + 1e-12:
        return "equal"
    return "better" if diff > 0 else "worse"


def judge_reference(items: list[Item], judge: dict) -> list[Judgement]:
    missing = [it.id for it in items if not it.reference]
    if missing:
        raise PipelineError(
            f"the reference judge needs a reference answer for every test row (test id {missing[0]!r} has none); "
            "set test.source: heldout, or use judge.backend: openai"
        )
    tie_margin = float(judge.get("tie_margin", 0.0) or 0.0)
    scorer = reference_scorer()
    out = []
    for it in items:
        s1 = scorer.score(it.reference, it.setting_answer)["rougeL"].fmeasure
        s2 = scorer.score(it.reference, it.baseline_answer)["rougeL"].fmeasure
        label = reference_label(s1, s2, tie_margin)
        reply = (
            f"Character ROUGE-L F1 against the reference: Assistant 1 = {s1:.4f}, Assistant 2 = {s2:.4f} "
            f"(tie margin {tie_margin:g}).\n{LABEL_TEXT[label]}"
        )
        out.append(Judgement(reply=reply, label=label))
    return out


# --------------------------------------------------------------------------- records and main


def verdict_record(item: Item, setting: str, judge: dict, judgement: Judgement) -> dict:
    return {
        "id": item.id,
        "setting": setting,
        "question": item.question,
        "setting_answer": item.setting_answer,
        "baseline_answer": item.baseline_answer,
        "verdict": verdict_of(judgement.label),
        "label": judgement.label,
        "judge": {"backend": judge["backend"], "model": judge.get("model")},
        "reply": judgement.reply,
        "usage": dict(judgement.usage),
    }


def run_judge(items: list[Item], judge: dict, setting: str) -> list[Judgement]:
    if judge["backend"] == "openai":
        return judge_openai(items, judge, desc=f"judge {setting}")
    return judge_reference(items, judge)


def main(smk) -> None:
    judge = dict(smk.params.judge)
    check_judge(judge)
    setting = str(smk.params.setting)
    items = load_items(smk.input.test, smk.input.baseline, smk.input.answers)
    judgements = run_judge(items, judge, setting)
    records = [verdict_record(it, setting, judge, j) for it, j in zip(items, judgements)]
    write_jsonl(smk.output.verdicts, records)
    counts = {v: sum(r["verdict"] == v for r in records) for v in ("win", "tie", "loss", "invalid")}
    log.info("%s: %d verdicts %s", setting, len(records), counts)
    if counts["invalid"]:
        log.warning("%s: %d judge replies had no label in their last line (verdict 'invalid')", setting, counts["invalid"])


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
