"""The paper's results: Table 1's rows from the win-rate table, the paired tests between settings
(one table, Holm-adjusted over its pairs), and the analysis sentences generated from them. A
difference is called significant only where its test's p-value is below the config's
statistics.alpha."""

from collections.abc import Mapping, Sequence
from typing import Any

from statsmodels.stats.multitest import multipletests

from huatuo_study.common import PipelineError
from huatuo_study.paper.formatting import fmt, fmt_p, fraction, need, p_phrase, pct, significant

RATES = (
    "win_rate",
    "win_rate_ties_half",
    "ci_low",
    "ci_high",
    "p_value",
    "consistency",
    "win_rate_as_first",
    "win_rate_as_second",
    "order_flip_share",
    "study_order_score",
    "published_win_rate",
    "published_equivalence_p",
)
OTHER = (
    "mean_answer_chars",
    "baseline_mean_answer_chars",
    "judge_calls",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "order_flips",
    "published_difference",
    "published_difference_low",
    "published_difference_high",
    "published_margin",
    "published_equivalent",
)


def _truncation(generations: list[dict], where: str) -> dict:
    """How many answers stopped at max_new_tokens instead of ending (cut off mid-answer)."""
    hits = sum(bool(need(g, "hit_token_limit", where)) for g in generations)
    return {"truncated": hits, "truncated_text": f"{hits} of {len(generations)}"}


def _published_texts(rates: Mapping, other: Mapping) -> dict:
    """Ours in the study's order against the published rate: the difference and the equivalence
    test's reading (winrate_table.published_comparison)."""
    d, low, high = (other[k] for k in ("published_difference", "published_difference_low", "published_difference_high"))
    equivalent, margin = other["published_equivalent"], other["published_margin"]
    margin_text = "--" if margin is None else f"{100 * margin:.0f}"
    reading = None if equivalent is None else "equivalent" if equivalent else "not shown equivalent"
    return {
        "study_order_pct": pct(rates["study_order_score"]),
        "published_difference_text": (
            "--"
            if d is None
            else f"{100 * d:+.1f}"
            if low is None or high is None
            else f"{100 * d:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"
        ),
        "published_margin_text": margin_text,
        "published_reading": reading,
        "published_equivalence_text": (
            "--" if reading is None else f"{reading} ({fmt_p(rates['published_equivalence_p'])})"
        ),
    }


def _texts(rates: Mapping, other: Mapping) -> dict:
    """A winrate row's numbers as the paper's table cells."""
    published = None if rates["published_win_rate"] is None else 100 * rates["published_win_rate"]
    return {
        "win_rate_pct": pct(rates["win_rate"]),
        "half_pct": pct(rates["win_rate_ties_half"]),
        "ci_text": (
            "--"
            if rates["ci_low"] is None or rates["ci_high"] is None
            else f"[{pct(rates['ci_low'])}, {pct(rates['ci_high'])}]"
        ),
        "p_text": fmt_p(rates["p_value"]),
        "consistency_pct": pct(rates["consistency"]),
        "published_value": published,
        "published": "--" if published is None else f"{published:.1f}",
        **_published_texts(rates, other),
        "as_first_pct": pct(rates["win_rate_as_first"]),
        "as_second_pct": pct(rates["win_rate_as_second"]),
        "flip_pct": pct(rates["order_flip_share"]),
        "mean_chars_text": "--" if other["mean_answer_chars"] is None else f"{other['mean_answer_chars']:.0f}",
        "baseline_chars_text": (
            "--" if other["baseline_mean_answer_chars"] is None else f"{other['baseline_mean_answer_chars']:.0f}"
        ),
    }


def result_rows(
    winrate: Sequence[Mapping], settings: list[dict], generations: Mapping[str, list[dict]], alpha: float
) -> list[dict]:
    """One row per setting, in config order: winrate.json's values and their table cells."""
    by_setting = {need(row, "setting", f"winrate.json row {i + 1}"): row for i, row in enumerate(winrate)}
    rows = []
    for s in settings:
        if s["key"] not in by_setting:
            raise PipelineError(f"winrate.json: no row for setting '{s['key']}'")
        if s["key"] not in generations:
            raise PipelineError(f"no generations for setting '{s['key']}'")
        row = by_setting[s["key"]]
        where = f"winrate.json row of {s['key']}"
        counts = {k: need(row, k, where) for k in ("n", "wins", "ties", "losses", "invalid")}
        rates = {k: fraction(row, k, where) for k in RATES}
        other = {k: need(row, k, where) for k in OTHER}
        rows.append(
            {
                "k": s["k"],
                "setting": s["key"],
                "title": s["title"],
                **counts,
                **rates,
                **other,
                "significant": significant(rates["p_value"], alpha),
                **_texts(rates, other),
                **_truncation(generations[s["key"]], f"generations of {s['key']}"),
            }
        )
    return rows


def pair_rows(
    pairwise: Sequence[Mapping], settings: list[dict], alpha: float, questions: int, replicates: int
) -> list[dict]:
    """pairwise.csv's rows with the p-values Holm-adjusted over all of them, the table's family.
    Each pair is judged on every question of every replicate, as the table's caption says."""
    k_of = {s["key"]: s["k"] for s in settings}
    for row in pairwise:
        for key in (row["setting_a"], row["setting_b"]):
            if key not in k_of:
                raise PipelineError(f"pairwise.csv: setting '{key}' is not in the config's settings")
        if row["n"] != questions * replicates:
            raise PipelineError(
                f"pairwise.csv: {row['setting_a']} against {row['setting_b']} has n {row['n']}, "
                f"not {questions} questions x {replicates} replicates"
            )
    holm = multipletests([row["p_value"] for row in pairwise], method="holm")[1] if pairwise else []
    return [
        {
            **row,
            "a_k": k_of[row["setting_a"]],
            "b_k": k_of[row["setting_b"]],
            "p_text": fmt_p(row["p_value"]),
            "significant": significant(row["p_value"], alpha),
            "p_holm": float(p_holm),
            "p_holm_text": fmt_p(float(p_holm)),
        }
        for row, p_holm in zip(pairwise, holm)
    ]


def _against_published(r: Mapping) -> str:
    text = (
        f" The study published {r['published']}%; in its order alone (the baseline as Assistant 1, our "
        f"assumption from the course's code), each question once, ours scores {r['study_order_pct']}%"
    )
    if r["published_reading"] is None:
        return text + "; too few questions to compare the two."
    within = (
        f"within ±{r['published_margin_text']} points of the study's (equivalent)"
        if r["published_equivalent"]
        else f"not shown equivalent to the study's within ±{r['published_margin_text']} points, "
        "which is no evidence of a difference either"
    )
    return (
        text + f"; ours minus the study's is {r['published_difference_text']} points (estimate [95% interval]); "
        f"the equivalence "
        f"test gives {p_phrase(r['published_equivalence_p'])}: our rate is {within}."
    )


def baseline_sentences(results: Sequence[Mapping]) -> list[str]:
    """One paragraph per setting: its verdicts, interval and sign test against the baseline.
    'Significant' appears only where the sign test's p-value is below alpha."""
    paragraphs = []
    for r in results:
        name = f"Setting {r['k']} ({r['title']})"
        if not r["n"] or r["win_rate"] is None:
            paragraphs.append(f"{name} has no judged answers.")
            continue
        text = (
            f"{name} wins {r['wins']} of {r['n']} judged answers against the baseline ({r['win_rate_pct']}%, "
            f"95% interval {r['ci_text']}%), with {r['ties']} ties and {r['losses']} losses; counting a tie "
            f"as half a win gives {r['half_pct']}%."
        )
        p = r["p_value"]
        if p is None:
            text += " No sign test is available."
        elif r["significant"] and r["wins"] != r["losses"]:
            preferred = "this setting's answers" if r["wins"] > r["losses"] else "the baseline's answers"
            text += (
                f" The sign test on wins against losses gives {p_phrase(p)}: the judge prefers "
                f"{preferred} significantly more often than the other way round."
            )
        else:
            text += (
                f" The sign test on wins against losses gives {p_phrase(p)}: the difference between "
                "wins and losses is not significant."
            )
        if r["published_value"] is not None:
            text += _against_published(r)
        paragraphs.append(text)
    return paragraphs


def results_context(
    winrate: Sequence[Mapping],
    pairwise: Sequence[Mapping],
    settings: list[dict],
    generations: Mapping[str, list[dict]],
    alpha: float,
    questions: int,
    replicates: int,
) -> dict[str, Any]:
    """The results and analysis sections' part of the template's context; `questions` is the
    headline test set's size."""
    results = result_rows(winrate, settings, generations, alpha)
    pairs = pair_rows(pairwise, settings, alpha, questions, replicates)
    return {
        # The table has published rates only where the run's test set and baseline are the study's.
        "study_baseline": any(r["published_value"] is not None for r in results),
        "published_margin_text": next(
            (r["published_margin_text"] for r in results if r["published_margin_text"] != "--"), "--"
        ),
        "alpha": fmt(alpha),
        "results": results,
        "total_invalid": sum(r["invalid"] for r in results),
        "pairs": pairs,
        "analysis": {"baseline": baseline_sentences(results)},
    }
