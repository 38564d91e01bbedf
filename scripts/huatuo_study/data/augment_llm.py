"""The study's augmentation: an LLM rewrites a training question with synonyms, keeping its
meaning (the notebook's `deepseek-chat` call, its messages verbatim, temperature 0.7, at most the
question's length + 100 tokens). Every call goes through chat_api.ChatClient: cached on disk,
retried, the key read from the environment and written nowhere, so a rerun pays for nothing.

A reply is cleaned (whitespace, the notebook's leading "增强后的文本：") and must be plausibly a
rewrite: not empty, not the question itself, and 0.5-2x its length. An unusable reply is asked
once more (a second attempt, cached apart); if that one is unusable too, the question stays
unaugmented and is counted. The notebook's own fallback, which inserted a "[同义词替换]"
placeholder into the question, is not copied: it trains on a corrupted question.
"""

from dataclasses import dataclass

from huatuo_study.chat_api import ChatClient, Reply

# The notebook's messages, verbatim.
SYSTEM_MESSAGE = "你是一个专业的文本增强助手，擅长进行同义词替换而不改变原文意思。"
USER_TEMPLATE = "请对以下文本进行同义词替换，保持原意不变，只返回替换后的文本：\n\n原文：{text}\n\n增强后的文本："
REPLY_PREFIX = "增强后的文本："
EXTRA_TOKENS = 100  # the notebook's max_tokens: len(text) + 100
LENGTH_RATIO = (0.5, 2.0)  # a rewrite outside these bounds is not a synonym replacement


def messages(question: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": USER_TEMPLATE.format(text=question)},
    ]


def token_limit(question: str) -> int:
    return len(question) + EXTRA_TOKENS


def clean_reply(text: str) -> str:
    text = (text or "").strip()
    return text.removeprefix(REPLY_PREFIX).strip()


def unusable(question: str, rewrite: str) -> str | None:
    """Why a cleaned reply cannot stand for the question (None: it can)."""
    if not rewrite:
        return "empty"
    if rewrite == question.strip():
        return "unchanged"
    low, high = LENGTH_RATIO
    if not low * len(question) <= len(rewrite) <= high * len(question):
        return "length"
    return None


@dataclass
class Rewrite:
    question: str | None  # None: left unaugmented
    reason: str | None  # why the last reply was unusable
    calls: list[Reply]


class LLMRewriter:
    """Rewrites questions through the cached client; `cfg` is the config's augmentation.llm."""

    def __init__(self, cfg: dict, cache_dir: str):
        self.client = ChatClient(cfg, cache_dir, desc="augmentation", section="augmentation.llm")

    def rewrite_all(self, questions: list[str]) -> list[Rewrite]:
        results = [self._outcome(q, [r]) for q, r in zip(questions, self._ask(questions, attempt=0))]
        again = [i for i, r in enumerate(results) if r.question is None]
        for i, reply in zip(again, self._ask([questions[i] for i in again], attempt=1)):
            results[i] = self._outcome(questions[i], [*results[i].calls, reply])
        return results

    def _ask(self, questions: list[str], attempt: int) -> list[Reply]:
        if not questions:
            return []
        conversations = [messages(q) for q in questions]
        return self.client.ask(conversations, attempt, max_tokens=[token_limit(q) for q in questions])

    @staticmethod
    def _outcome(question: str, calls: list[Reply]) -> Rewrite:
        rewrite = clean_reply(calls[-1].content)
        reason = unusable(question, rewrite)
        return Rewrite(None if reason else rewrite, reason, calls)
