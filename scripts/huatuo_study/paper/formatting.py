"""How the paper writes numbers and lists: the formatters and lookups every part of the paper's
context shares (design, results, case study, provenance, report tables)."""

from collections.abc import Mapping, Sequence
from typing import Any

from huatuo_study.common import PipelineError

EXCERPT_CHARS = 300
# What a byte-level tokenizer's decoding gives for a token that ends mid-character (U+FFFD).
UNDECODABLE = "\ufffd"


def fmt(value: Any) -> str:
    """A config value as table text: yes/no, compact floats (2e-5), lists joined, None as --."""
    if value is None:
        return "--"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:  # learning rates: 2e-5, 1e-4
            mantissa, exponent = f"{value:.4e}".split("e")
            return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def pct(fraction: float | None) -> str:
    return "--" if fraction is None else f"{100 * fraction:.1f}"


def fmt_p(p: float | None) -> str:
    """A p-value as a table cell."""
    if p is None:
        return "--"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_phrase(p: float) -> str:
    """A p-value inside a sentence."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def significant(p: float | None, alpha: float) -> bool:
    """Below the config's statistics.alpha, the level of every test in the paper."""
    return p is not None and p < alpha


def count(value: Any) -> str:
    return "--" if value is None else f"{value:,}"


def oneline(text: Any) -> str:
    """Collapse whitespace: a blank line inside a LaTeX argument would end the paragraph."""
    return " ".join(str(text).split())


def excerpt(text: Any, n: int = EXCERPT_CHARS) -> dict:
    text = oneline(text)
    return {"text": text[:n], "truncated": len(text) > n}


def need(mapping: Any, key: str, where: str) -> Any:
    """mapping[key], or a PipelineError naming the file or section (`where`) that lacks it."""
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise PipelineError(f"{where}: missing key '{key}'")
    return mapping[key]


def fraction(row: Mapping, key: str, where: str) -> float | None:
    value = need(row, key, where)
    if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
        raise PipelineError(f"{where}: {key} must be a number in [0, 1], got {value!r}")
    return value


def settings_list(settings: Sequence[int]) -> str:
    """'setting 2', 'settings 1 and 3', 'settings 1, 3 and 4'."""
    if len(settings) == 1:
        return f"setting {settings[0]}"
    return "settings " + ", ".join(str(k) for k in settings[:-1]) + f" and {settings[-1]}"
