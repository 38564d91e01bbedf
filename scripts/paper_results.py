"""The paper's results: Table 1's rows from the win-rate table, the paired tests between settings
(one table, Holm-adjusted over its pairs), and the analysis and conclusion sentences generated
from them. A difference is called significant only where its test's p-value is below the
config's statistics.alpha."""

from typing import Any, Mapping, Sequence

from statsmodels.stats.multitest import multipletests

from common import PipelineError
from paper_format import fmt, fmt_p, fraction, need, p_phrase, pct, settings_list, significant

RATES = ("win_rate", "win_rate_ties_half", "ci_low", "ci_high", "p_value", "consistency", "win_rate_as_first",
         "win_rate_as_second", "order_flip_share", "published_win_rate", "published_p_value")
OTHER = ("mean_answer_chars", "baseline_mean_answer_chars", "judge_calls", "prompt_tokens", "completion_tokens",
         "cost_usd", "order_flips", "published_wins", "published_n")


def _truncation(generations: list[dict], where: str) -> dict:
    """How many answers stopped at max_new_tokens instead of ending (cut off mid-answer)."""
    hits = sum(bool(need(g, "hit_token_limit", where)) for g in generations)
    return {"truncated": hits, "truncated_text": f"{hits} of {len(generations)}"}


def _texts(rates: Mapping, other: Mapping) -> dict:
    """A winrate row's numbers as the paper's table cells."""
    published = None if rates["published_win_rate"] is None else 100 * rates["published_win_rate"]
    return {
        "win_rate_pct": pct(rates["win_rate"]),
        "half_pct": pct(rates["win_rate_ties_half"]),
        "ci_text": ("--" if rates["ci_low"] is None or rates["ci_high"] is None
                    else f"[{pct(rates['ci_low'])}, {pct(rates['ci_high'])}]"),
        "p_text": fmt_p(rates["p_value"]),
        "consistency_pct": pct(rates["consistency"]),
        "published_value": published,
        "published": "--" if published is None else f"{published:.1f}",
        "published_p_text": fmt_p(rates["published_p_value"]),
        "as_first_pct": pct(rates["win_rate_as_first"]),
        "as_second_pct": pct(rates["win_rate_as_second"]),
        "flip_pct": pct(rates["order_flip_share"]),
        "mean_chars_text": "--" if other["mean_answer_chars"] is None else f"{other['mean_answer_chars']:.0f}",
        "baseline_chars_text": ("--" if other["baseline_mean_answer_chars"] is None
                                else f"{other['baseline_mean_answer_chars']:.0f}"),
    }


def result_rows(winrate: Sequence[Mapping], settings: list[dict],
                generations: Mapping[str, list[dict]], alpha: float) -> list[dict]:
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
        rows.append({"k": s["k"], "setting": s["key"], "title": s["title"], **counts, **rates, **other,
                     "significant": significant(rates["p_value"], alpha),
                     "published_significant": significant(rates["published_p_value"], alpha),
                     **_texts(rates, other), **_truncation(generations[s["key"]], f"generations of {s['key']}")})
    return rows


def pair_rows(pairwise: Sequence[Mapping], settings: list[dict], alpha: float, questions: int,
              replicates: int) -> list[dict]:
    """pairwise.csv's rows with the p-values Holm-adjusted over all of them, the table's family.
    Each pair is judged on every question of every replicate, as the table's caption says."""
    k_of = {s["key"]: s["k"] for s in settings}
    for row in pairwise:
        for key in (row["setting_a"], row["setting_b"]):
            if key not in k_of:
                raise PipelineError(f"pairwise.csv: setting '{key}' is not in the config's settings")
        if row["n"] != questions * replicates:
            raise PipelineError(f"pairwise.csv: {row['setting_a']} against {row['setting_b']} has n {row['n']}, "
                                f"not {questions} questions x {replicates} replicates")
    holm = multipletests([row["p_value"] for row in pairwise], method="holm")[1] if pairwise else []
    return [{**row, "a_k": k_of[row["setting_a"]], "b_k": k_of[row["setting_b"]],
             "p_text": fmt_p(row["p_value"]), "significant": significant(row["p_value"], alpha),
             "p_holm": float(p_holm), "p_holm_text": fmt_p(float(p_holm))}
            for row, p_holm in zip(pairwise, holm)]


def _against_published(r: Mapping) -> str:
    p = r["published_p_value"]
    differs = "differs significantly from" if r["published_significant"] else "is not significantly different from"
    return (f" The study published {r['published']}% ({r['published_wins']} of {r['published_n']}); "
            f"Boschloo's exact test of our {r['wins']} of {r['n']} against it gives {p_phrase(p)}: "
            f"our rate {differs} the published one.")


def baseline_sentences(results: Sequence[Mapping]) -> list[str]:
    """One paragraph per setting: its verdicts, interval and sign test against the baseline.
    'Significant' appears only where the sign test's p-value is below alpha."""
    paragraphs = []
    for r in results:
        name = f"Setting {r['k']} ({r['title']})"
        if not r["n"] or r["win_rate"] is None:
            paragraphs.append(f"{name} has no judged answers.")
            continue
        text = (f"{name} wins {r['wins']} of {r['n']} judged answers against the baseline ({r['win_rate_pct']}%, "
                f"95% interval {r['ci_text']}%), with {r['ties']} ties and {r['losses']} losses; counting a tie "
                f"as half a win gives {r['half_pct']}%.")
        p = r["p_value"]
        if p is None:
            text += " No sign test is available."
        elif r["significant"] and r["wins"] != r["losses"]:
            preferred = "this setting's answers" if r["wins"] > r["losses"] else "the baseline's answers"
            text += (f" The sign test on wins against losses gives {p_phrase(p)}: the judge prefers "
                     f"{preferred} significantly more often than the other way round.")
        else:
            text += (f" The sign test on wins against losses gives {p_phrase(p)}: the difference between "
                     "wins and losses is not significant.")
        if r["published_value"] is not None and r["published_p_value"] is not None:
            text += _against_published(r)
        paragraphs.append(text)
    return paragraphs


def _best_against_others(best: Mapping, results: Sequence[Mapping], pairs: Sequence[Mapping]) -> list[str]:
    """What the paired tests say about the top setting's lead: only a significant test in its
    favour counts as being ahead."""
    ahead, level, behind, untested = [], [], [], []
    for other in results:
        if other["k"] == best["k"] or other["win_rate"] is None:
            continue
        pair = next((p for p in pairs if {p["a_k"], p["b_k"]} == {best["k"], other["k"]}), None)
        if pair is None:
            untested.append(other["k"])
            continue
        best_wins, other_wins = ((pair["a_better"], pair["b_better"]) if pair["a_k"] == best["k"]
                                 else (pair["b_better"], pair["a_better"]))
        if pair["significant"] and best_wins > other_wins:
            ahead.append(other["k"])
        elif pair["significant"] and best_wins < other_wins:
            behind.append(other["k"])
        else:
            level.append(other["k"])
    sentences = []
    if ahead:
        sentences.append(f"The paired tests put it significantly ahead of {settings_list(ahead)}.")
    if level:
        sentences.append(f"The paired tests do not separate it from {settings_list(level)}, so its lead over "
                         f"{'it' if len(level) == 1 else 'them'} may be chance.")
    if behind:
        sentences.append(f"On the questions themselves, {settings_list(behind)} "
                         f"{'wins' if len(behind) == 1 else 'win'} significantly more often than it.")
    if untested:
        sentences.append(f"No paired test compares it with {settings_list(untested)}.")
    return sentences


def _best_sentences(scored: Sequence[Mapping], results: Sequence[Mapping], pairs: Sequence[Mapping]) -> list[str]:
    """Which setting has the highest win rate, and whether the paired tests back its lead."""
    best_rate = max(r["win_rate"] for r in scored)
    best = [r for r in scored if r["win_rate"] == best_rate]
    if len(best) > 1:
        names = ", ".join(f"{b['k']} ({b['title']})" for b in best)
        return [f"Settings {names} share the highest win rate against the baseline, {best[0]['win_rate_pct']}%."]
    b = best[0]
    text = (f"Setting {b['k']} ({b['title']}) reaches the highest win rate against the baseline, "
            f"{b['win_rate_pct']}% (wins/ties/losses {b['wins']}/{b['ties']}/{b['losses']} of {b['n']}, "
            f"95% interval {b['ci_text']}%)")
    text += f"; the study published {b['published']}%." if b["published_value"] is not None else "."
    return [text, *_best_against_others(b, results, pairs)]


def conclusion_sentences(results: Sequence[Mapping], pairs: Sequence[Mapping]) -> list[str]:
    scored = [r for r in results if r["win_rate"] is not None and r["n"]]
    if not scored:
        return ["No setting has judged answers, so no setting can be called best."]
    sentences = _best_sentences(scored, results, pairs)
    better = [r["k"] for r in scored if r["significant"] and r["wins"] > r["losses"]]
    worse = [r["k"] for r in scored if r["significant"] and r["wins"] < r["losses"]]
    neither = [r["k"] for r in scored if r["k"] not in better + worse]
    for ks, how in ((better, "better"), (worse, "worse")):
        if ks:
            sentences.append(f"Against the baseline, {settings_list(ks)} "
                             f"{'is' if len(ks) == 1 else 'are'} judged significantly {how}.")
    if neither:
        sentences.append(f"For {settings_list(neither)}, the sign test finds no significant difference "
                         "from the baseline.")
    widths = [100 * (r["ci_high"] - r["ci_low"]) for r in scored if r["ci_low"] is not None and r["ci_high"] is not None]
    if widths:
        sizes = sorted({r["n"] for r in scored})
        n_text = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]} to {sizes[-1]}"
        sentences.append(f"With {n_text} questions per setting, the 95% intervals span {min(widths):.0f} to "
                         f"{max(widths):.0f} percentage points; differences between win rates smaller than "
                         "that should not be read as real.")
    return sentences


def results_context(winrate: Sequence[Mapping], pairwise: Sequence[Mapping], settings: list[dict],
                    generations: Mapping[str, list[dict]], alpha: float, questions: int,
                    replicates: int) -> dict[str, Any]:
    """The results, analysis and conclusion sections' part of the template's context; `questions`
    is the headline test set's size."""
    results = result_rows(winrate, settings, generations, alpha)
    pairs = pair_rows(pairwise, settings, alpha, questions, replicates)
    return {
        # The table has published rates only where the run's test set and baseline are the study's.
        "study_baseline": any(r["published_value"] is not None for r in results),
        "alpha": fmt(alpha),
        "results": results,
        "total_invalid": sum(r["invalid"] for r in results),
        "pairs": pairs,
        "analysis": {"baseline": baseline_sentences(results)},
        "conclusion": conclusion_sentences(results, pairs),
    }
