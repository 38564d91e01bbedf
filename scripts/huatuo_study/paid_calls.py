"""Paid API calls a config makes before any is made: how many calls go to OpenAI-compatible APIs
(the judges, the API baselines, the LLM augmentation), their tokens at most and what they cost at
the configured prices. Token counts are upper bounds from the config alone, since no answer exists
yet: every answer at its token limit, every reply at max_tokens, text tokens estimated as one per
CJK character and one per four other characters, a question taken as QUESTION_CHARS characters.
The call cache is not consulted: a rerun pays only for what it never asked, so this is the first
run's bill."""

import csv
import io
import math

from huatuo_study.data.augment_llm import EXTRA_TOKENS, SYSTEM_MESSAGE, USER_TEMPLATE

# A Huatuo26M-Lite question's length in characters, generously (the demo's are 20-40).
QUESTION_CHARS = 100
COLUMNS = [
    "stage",
    "caller",
    "model",
    "calls",
    "input_tokens",
    "output_tokens",
    "price_input",
    "price_output",
    "cost_usd",
]


def text_tokens(text: str) -> int:
    """About how many tokens a text is: one per non-ASCII (CJK) character, one per four ASCII ones."""
    ascii_chars = sum(1 for c in text if ord(c) < 128)
    return (len(text) - ascii_chars) + math.ceil(ascii_chars / 4)


def row(stage, caller, section, calls, input_per_call, output_per_call) -> dict:
    prices = section.get("price_per_million")
    input_tokens, output_tokens = calls * input_per_call, calls * output_per_call
    cost = None if prices is None else (input_tokens * prices["input"] + output_tokens * prices["output"]) / 1e6
    return {
        "stage": stage,
        "caller": caller,
        "model": section["model"],
        "calls": calls,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "price_input": prices and prices["input"],
        "price_output": prices and prices["output"],
        "cost_usd": None if cost is None else round(cost, 2),
    }


def plan(
    judges: dict,
    test_sets: dict,
    n_settings: int,
    replicates: int,
    max_new_tokens: int,
    augmentation: dict,
    n_train: int | None,
    judge_prompt: str,
) -> list[dict]:
    """One row per paying caller: each OpenAI judge, each OpenAI baseline, the LLM augmentation."""
    question = QUESTION_CHARS  # as tokens, at one per character
    rows = []
    baseline_tokens = {
        name: (t["baseline"]["max_tokens"] if t["baseline"]["source"] == "openai" else max_new_tokens)
        for name, t in test_sets.items()
    }
    for name, judge in judges.items():
        if judge["backend"] != "openai":
            continue
        for test_set, spec in test_sets.items():
            calls = spec["n"] * n_settings * replicates * 2  # both orders
            prompt = text_tokens(judge_prompt) + question + max_new_tokens + baseline_tokens[test_set]
            rows.append(row("judge", f"{name} on {test_set}", judge, calls, prompt, judge["max_tokens"]))
    for test_set, spec in test_sets.items():
        baseline = spec["baseline"]
        if baseline["source"] == "openai":
            rows.append(row("baseline", test_set, baseline, spec["n"], question, baseline["max_tokens"]))
    if augmentation["method"] == "llm" and n_train is not None:
        messages = text_tokens(SYSTEM_MESSAGE + USER_TEMPLATE.format(text="")) + question
        calls = round(augmentation["ratio"] * n_train)
        rows.append(row("augmentation", "llm", augmentation["llm"], calls, messages, question + EXTRA_TOKENS))
    return rows


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_table(rows: list[dict]) -> str:
    """The plan as an aligned text table with a total line ("no price" where one is missing)."""
    cells = [[str(r[c]) if r[c] is not None else "-" for c in COLUMNS] for r in rows]
    priced = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
    total = f"{sum(priced):.2f}" + (" (some callers have no price)" if len(priced) < len(rows) else "")
    cells.append(
        [
            "total",
            "",
            "",
            str(sum(r["calls"] for r in rows)),
            str(sum(r["input_tokens"] for r in rows)),
            str(sum(r["output_tokens"] for r in rows)),
            "",
            "",
            total if rows else "0.00",
        ]
    )
    widths = [max(len(c), *(len(line[k]) for line in cells)) for k, c in enumerate(COLUMNS)]
    lines = [COLUMNS, *cells]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)
