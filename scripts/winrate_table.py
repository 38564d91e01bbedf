"""Win rates of the settings against the baseline, with the statistics 20 questions allow.

tables/<test set>/<judge>/winrate.csv and .json, one row per setting (COLUMNS). A setting's K
replicates are pooled: n counts questions x K, and the interval and sign test below treat the K
verdicts on one question as independent, which they are not (one question, K answers): with K > 1
they are too narrow. The claims table (claims_table.py) is the inference that accounts for
replicates; these columns keep the study's single-run reading comparable.
  n                   every judged question, invalid verdicts included, so that an unparseable
                      reply is never a silent win or tie. FastChat's MT-bench pairwise script
                      drops failed verdicts from its counts; we keep them in n as non-wins, so
                      every rate below is out of all the questions.
  wins, ties, losses, invalid   the verdicts (judge_pairwise.py: both orders, MT-bench rule).
  win_rate            wins / n, a tie a non-win (ours: the report never says how it counted ties);
                      win_rate_ties_half = (wins + ties/2) / n.
  ci_low, ci_high     Wilson score 95% interval of win_rate (wins out of n).
  p_value             exact two-sided sign test of "the setting is no better than the baseline
                      nor worse": wins against losses, ties and invalid dropped, i.e. the
                      binomial test of wins out of wins + losses against 1/2 (1.0 when there
                      are neither wins nor losses).
  consistency         share of the questions judged validly in both orders whose two orders
                      agreed (position consistency; empty when there are none).
  win_rate_as_first, win_rate_as_second   the setting's wins in one order alone, out of n: its
                      answer shown as Assistant 1 (order setting_first), and as Assistant 2
                      (order baseline_first); an invalid order is a non-win.
  order_flips, order_flip_share   position bias in its strong form: a question flips when its
                      outcome is a win in one order and a loss in the other (a tie against a
                      win or a loss breaks consistency but is no flip). order_flip_share =
                      order_flips / the questions judged validly in both orders (empty when
                      there are none).
  study_order_score   ours on the study's terms: the setting's mean score (crossed_stats.SCORES:
                      win 1, tie 1/2, loss 0, invalid 1/2) in the one order the study judged,
                      the baseline as Assistant 1 (the verdict record's order baseline_first,
                      its `outcome`) [assumption: the study names no order; the course's public
                      code judges this one alone], each question once (its replicates averaged).
  published_win_rate, published_difference, published_difference_low, published_difference_high,
  published_margin, published_equivalent, published_equivalence_p   ours against the study's own
                      result, when the rule's param compare_published is true (our test set and
                      baseline are the study's) and config/study.yaml (`published:`) has a rate
                      for the setting; empty otherwise. The published rate is read as a mean
                      score on the same measure [assumption, config/study.yaml]. The difference
                      is study_order_score - published_win_rate; its interval (95%) adds two
                      independent variances, each part with its own t quantile (Graybill and
                      Wang's modified large-sample method, as crossed_stats combines its parts):
                      ours, crossed_stats.variance_parts of the baseline-first questions x
                      replicates grid (question part, t(Q-1); run part, t(K-1)), and the
                      published rate's own sampling variance p(1-p)/n over the study's n = 20
                      questions (t(n-1)), the largest variance a mean of n scores in [0, 1] with
                      mean p can have. The study's single training run adds a run variance the
                      study never reports; it is not in the published part. Both rates are on
                      the same 20 questions: adding the two as independent samples of questions
                      can only widen the interval (shared question effects would cancel), so the
                      test below errs towards "not shown equivalent". The equivalence test
                      (TOST at 5%): published_equivalent is true when the 90% interval of the
                      difference lies within +- published_margin (config/study.yaml
                      inference.equivalence_margin), i.e. both one-sided tests of "the
                      difference is at most -margin" and "at least +margin" reject at 5%;
                      published_equivalence_p is the larger of their two p-values (each dual to
                      the one-sided bound). False means "not shown equivalent", never
                      "different". On the questions every replicate has a verdict on (empty
                      where fewer than 2).
  mean_answer_chars, baseline_mean_answer_chars   mean answer length in characters, the
                      setting's and the baseline's on the same questions (judges like length).
  prompt_tokens, completion_tokens, judge_calls   what the verdicts cost: every call behind
                      them (two per question, plus label retries), whether it was answered
                      now or from the cache, so the numbers do not depend on what was cached.
  cost_usd            estimated from judge.price_per_million {input, output} (USD per million
                      prompt / completion tokens); empty when no prices are given.
  replicates, replicate_win_rate_min, _max, _sd   K and the spread of the replicates' own win
                      rates (sd with ddof 1, empty when K = 1): how far seed noise alone moves a
                      setting's rate.
  lc_win_rate, lc_ci_low, lc_ci_high, lc_note   AlpacaEval 2's length-controlled win rate
                      (length_control.py): a logistic GLM of the preference (win 1, tie 1/2,
                      loss 0; invalid verdicts left out) on tanh(length difference / its sd)
                      and the question's difficulty (how well the other settings do against
                      the baseline on it), read with the length term at 0, pooled over the
                      replicates; comparable with (wins + ties/2) / valid verdicts. Its 95%
                      percentile interval from a bootstrap of questions crossed with whole
                      replicates (seeded: the rule's statistics). Empty, with the reason in
                      lc_note, where equal length lies outside the data (fewer than 10% of the
                      answers on one side of it) or the fit separates; lc_note also says when
                      the interval or the instruction term had to be left out.

tables/<test set>/<judge>/replicates.csv, one row per setting and replicate (REPLICATE_COLUMNS):
its own verdict counts and win rate, the rows the spread columns above summarise.

tables/<test set>/<judge>/pairwise.csv, one row per pair of settings (in config order), on the
questions both were judged on, replicate r of one setting paired with replicate r of the other: a question is discordant when exactly one of the two settings won it (its
verdict is 'win'; a tie, loss or invalid verdict is not a win, as in win_rate). a_better counts
the questions that a won and b did not, b_better the reverse, and p_value is the exact McNemar
test: the two-sided binomial test of a_better out of a_better + b_better against 1/2 (1.0 when
no question is discordant).
"""

import itertools
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import binomtest

from huatuo_study.chat_api import cost_usd
from huatuo_study.common import PipelineError, log, run_stage, write_json, write_text
from huatuo_study.judging.verdicts import ORDERS, VERDICTS, is_order_flip, order_outcomes, read_runs, table_rows
from huatuo_study.records import PAIRWISE_COLUMNS
from huatuo_study.statistics.crossed_stats import SCORES, variance_parts
from huatuo_study.statistics.length_control import SCORE, length_controlled_win_rate, question_difficulty
from huatuo_study.statistics.study_file import load_study, read_inference, read_published

COLUMNS = [
    "setting",
    "title",
    "n",
    "wins",
    "ties",
    "losses",
    "invalid",
    "win_rate",
    "win_rate_ties_half",
    "ci_low",
    "ci_high",
    "p_value",
    "consistency",
    "win_rate_as_first",
    "win_rate_as_second",
    "order_flips",
    "order_flip_share",
    "study_order_score",
    "published_win_rate",
    "published_difference",
    "published_difference_low",
    "published_difference_high",
    "published_margin",
    "published_equivalent",
    "published_equivalence_p",
    "mean_answer_chars",
    "baseline_mean_answer_chars",
    "prompt_tokens",
    "completion_tokens",
    "judge_calls",
    "cost_usd",
    "replicates",
    "replicate_win_rate_min",
    "replicate_win_rate_max",
    "replicate_win_rate_sd",
    "lc_win_rate",
    "lc_ci_low",
    "lc_ci_high",
    "lc_note",
]
REPLICATE_COLUMNS = ["setting", "replicate", "n", "wins", "ties", "losses", "invalid", "win_rate"]
INT_COLUMNS = [
    "replicates",
    "n",
    "wins",
    "ties",
    "losses",
    "invalid",
    "order_flips",
    "prompt_tokens",
    "completion_tokens",
    "judge_calls",
]
NULLABLE_BOOL_COLUMNS = ["published_equivalent"]  # empty when not compared
PUBLISHED_FLOATS = [
    "published_win_rate",
    "published_difference",
    "published_difference_low",
    "published_difference_high",
    "published_margin",
    "published_equivalence_p",
]
FLOAT_COLUMNS = [
    "study_order_score",
    *PUBLISHED_FLOATS,
    "cost_usd",
    "replicate_win_rate_sd",
    "lc_win_rate",
    "lc_ci_low",
    "lc_ci_high",
]


def wilson_interval(k: int, n: int) -> tuple[float, float]:
    if not n:
        return math.nan, math.nan
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


def exact_binomial_p(k: int, n: int) -> float:
    """Two-sided exact binomial test of k successes out of n against 1/2; 1.0 when n is 0."""
    return binomtest(k, n, 0.5, alternative="two-sided").pvalue if n else 1.0


def order_statistics(records: list[dict]) -> dict:
    """Per-order win rates (out of every question) and win/loss flips between the orders."""
    n = len(records)
    outcomes = [order_outcomes(r) for r in records]
    both_valid = [o for o in outcomes if set(o) == set(ORDERS) and "invalid" not in o.values()]
    flips = sum(is_order_flip(r) for r in records)
    return {
        "win_rate_as_first": sum(o.get("setting_first") == "win" for o in outcomes) / n if n else math.nan,
        "win_rate_as_second": sum(o.get("baseline_first") == "win" for o in outcomes) / n if n else math.nan,
        "order_flips": flips,
        "order_flip_share": flips / len(both_valid) if both_valid else math.nan,
    }


def study_order_grid(replicates: list[list[dict]]) -> np.ndarray:
    """Questions x replicates grid of the setting's scores (SCORES) in the study's order,
    baseline_first; questions in first-seen order, NaN where a replicate lacks the question or
    the order."""
    ids = list(dict.fromkeys(str(r["id"]) for rep in replicates for r in rep))
    index = {q: i for i, q in enumerate(ids)}
    grid = np.full((len(ids), len(replicates)), np.nan)
    for k, rep in enumerate(replicates):
        for r in rep:
            outcome = order_outcomes(r).get("baseline_first")
            if outcome is not None:
                grid[index[str(r["id"])], k] = SCORES[outcome]
    return grid


def study_order_score(grid: np.ndarray) -> float:
    """Each question once: its replicates' scores averaged, then the mean over questions."""
    per_question = [row[~np.isnan(row)].mean() for row in grid if (~np.isnan(row)).any()]
    return float(np.mean(per_question)) if per_question else math.nan


def _difference_half_width(alpha, question_part, run_part, published_part, q: int, k: int, n: int):
    """Half-width at level 1 - alpha (two-sided) of ours minus published: the three independent
    variance parts, each with its own t quantile (Graybill and Wang 1980); the run part only
    with K > 1. Arrays broadcast, as in crossed_stats."""
    half = stats.t.isf(alpha / 2, q - 1) ** 2 * question_part + stats.t.isf(alpha / 2, n - 1) ** 2 * published_part
    if k > 1:
        half = half + stats.t.isf(alpha / 2, k - 1) ** 2 * run_part
    return np.sqrt(half)


def _one_sided_p(distance, parts, q: int, k: int, n: int):
    """p-value of a one-sided test whose estimate lies `distance` beyond the null bound (negative:
    on the null's side): the alpha at which the one-sided bound (the two-sided one at 2 alpha)
    just reaches it, by bisection on log10(alpha) below 1/2; 1 - that on the null's side."""
    distance = np.asarray(distance, float)
    low, high = np.full(distance.shape, -300.0), np.full(distance.shape, math.log10(0.5))
    for _ in range(60):
        mid = (low + high) / 2
        wider = _difference_half_width(2 * 10.0**mid, *parts, q, k, n) >= np.abs(distance)
        low, high = np.where(wider, mid, low), np.where(wider, high, mid)
    alpha = 10.0 ** ((low + high) / 2)
    return np.where(distance >= 0, alpha, 1 - alpha)


def equivalence_test(grid, published_rate: float, published_n: int, margin: float) -> dict:
    """Ours in the study's order minus the published rate, for [..., questions, replicates] grids
    without gaps: difference, its 95% interval (unclipped), the 90% interval's verdict
    (equivalent: within +- margin) and the TOST p-value (the larger one-sided p)."""
    grid = np.asarray(grid, float)
    q, k = grid.shape[-2:]
    _, question_part, run_part = variance_parts(grid)
    parts = (question_part, run_part, published_rate * (1 - published_rate) / published_n)
    d = grid.mean((-2, -1)) - published_rate
    half95 = _difference_half_width(0.05, *parts, q, k, published_n)
    half90 = _difference_half_width(0.10, *parts, q, k, published_n)
    p = np.maximum(
        _one_sided_p(d + margin, parts, q, k, published_n), _one_sided_p(margin - d, parts, q, k, published_n)
    )
    return {
        "difference": d,
        "low": d - half95,
        "high": d + half95,
        "equivalent": (-margin < d - half90) & (d + half90 < margin),
        "p": p,
    }


def published_comparison(grid: np.ndarray, published_rate: float, published_n: int, margin: float) -> dict:
    """The published columns (grid: study_order_grid): ours in the study's order minus the
    published rate, its 95% interval and the equivalence test with +- margin (the module
    docstring says how); the questions with a gap in the grid are left out."""
    out = {
        "published_win_rate": published_rate,
        "published_difference": math.nan,
        "published_difference_low": math.nan,
        "published_difference_high": math.nan,
        "published_margin": margin,
        "published_equivalent": None,
        "published_equivalence_p": math.nan,
    }
    grid = grid[~np.isnan(grid).any(axis=1)]
    if grid.shape[0] < 2 or grid.shape[1] < 1:
        return out
    test = {key: value.item() for key, value in equivalence_test(grid, published_rate, published_n, margin).items()}
    out.update(
        published_difference=test["difference"],
        published_difference_low=max(-1.0, test["low"]),
        published_difference_high=min(1.0, test["high"]),
        published_equivalent=bool(test["equivalent"]),
        published_equivalence_p=test["p"],
    )
    return out


def published_columns(grid: np.ndarray, published: Mapping | None, margin: float | None) -> dict:
    """The study's rate for the setting ({win_rate, n}, read_published) against ours in its order."""
    if not published:
        return {
            "published_win_rate": math.nan,
            "published_difference": math.nan,
            "published_difference_low": math.nan,
            "published_difference_high": math.nan,
            "published_margin": math.nan,
            "published_equivalent": None,
            "published_equivalence_p": math.nan,
        }
    if margin is None:
        raise PipelineError("a published rate to compare with needs the equivalence margin")
    return published_comparison(grid, published["win_rate"], published["n"], margin)


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else math.nan


def replicate_columns(replicates: list[list[dict]]) -> dict:
    """How far the replicates' own win rates spread (sd with ddof 1; empty for one replicate)."""
    rates = pd.Series([sum(r["verdict"] == "win" for r in rep) / len(rep) for rep in replicates if rep])
    return {
        "replicates": len(replicates),
        "replicate_win_rate_min": rates.min() if len(rates) else math.nan,
        "replicate_win_rate_max": rates.max() if len(rates) else math.nan,
        "replicate_win_rate_sd": rates.std(ddof=1) if len(rates) > 1 else math.nan,
    }


def question_scores(replicates: list[list[dict]], setting: str) -> dict[str, list[float]]:
    """Question id -> the setting's scores on it (length_control.SCORE; NaN for invalid), every replicate."""
    out: dict[str, list[float]] = {}
    for record in (r for rep in replicates for r in rep):
        if record["verdict"] not in SCORE:
            raise PipelineError(
                f"{setting}: unknown verdict {record['verdict']!r} (expected one of {', '.join(VERDICTS)})"
            )
        out.setdefault(str(record["id"]), []).append(SCORE[record["verdict"]])
    return out


def difficulties(by_setting: Mapping[str, list[list[dict]]]) -> dict[str, dict[str, float] | None]:
    """Setting -> question difficulty from the other settings' verdicts (None: no other setting)."""
    scores = {name: question_scores(replicates, name) for name, replicates in by_setting.items()}
    out = {}
    for name in by_setting:
        others: dict[str, list[float]] = {}
        for other, by_question in scores.items():
            if other != name:
                for q, values in by_question.items():
                    others.setdefault(q, []).extend(values)
        out[name] = question_difficulty(others) if len(scores) > 1 else None
    return out


def lc_columns(
    replicates: list[list[dict]], difficulty: Mapping[str, float] | None = None, n_boot: int = 2000, seed: int = 0
) -> dict:
    """The length-controlled columns of a setting: its verdicts as a questions x replicates grid."""
    ids = list(dict.fromkeys(str(r["id"]) for rep in replicates for r in rep))
    index = {q: i for i, q in enumerate(ids)}
    scores, diff = np.full((len(ids), len(replicates)), np.nan), np.zeros((len(ids), len(replicates)))
    for k, rep in enumerate(replicates):
        for r in rep:
            scores[index[str(r["id"])], k] = SCORE[r["verdict"]]
            diff[index[str(r["id"])], k] = len(r["setting_answer"]) - len(r["baseline_answer"])
    # A question no other setting answered has no difficulty: the term is left out.
    h = [difficulty.get(q) for q in ids] if difficulty else None
    h = None if h is None or None in h else h
    out = length_controlled_win_rate(scores, diff, h, n_boot, seed)
    return {k: (math.nan if v is None and k != "lc_note" else v) for k, v in out.items()}


def winrate_row(
    setting: str,
    title: str,
    replicates: list[list[dict]],
    prices: Mapping | None = None,
    published: Mapping | None = None,
    difficulty: Mapping[str, float] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    margin: float | None = None,
) -> dict:
    """A setting's row: its replicates' verdicts pooled (n = questions x replicates); difficulty:
    question id -> difficulty for the length control's instruction term (None: no term); margin:
    the equivalence margin of the published comparison (needed when `published` is given)."""
    records = [r for rep in replicates for r in rep]
    counts = {v: 0 for v in VERDICTS}
    for record in records:
        verdict = record.get("verdict")
        if verdict not in counts:
            raise PipelineError(f"{setting}: unknown verdict {verdict!r} (expected one of {', '.join(VERDICTS)})")
        counts[verdict] += 1
    n, wins, losses = len(records), counts["win"], counts["loss"]
    consistent = [r["consistent"] for r in records if r["consistent"] is not None]
    ci_low, ci_high = wilson_interval(wins, n)
    prompt_tokens = sum(r["usage"]["prompt_tokens"] for r in records)
    grid = study_order_grid(replicates)
    completion_tokens = sum(r["usage"]["completion_tokens"] for r in records)
    return {
        "setting": setting,
        "title": title,
        "n": n,
        "wins": wins,
        "ties": counts["tie"],
        "losses": losses,
        "invalid": counts["invalid"],
        "win_rate": wins / n if n else math.nan,
        "win_rate_ties_half": (wins + 0.5 * counts["tie"]) / n if n else math.nan,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "p_value": exact_binomial_p(wins, wins + losses),
        "consistency": _mean(consistent),
        **order_statistics(records),
        "study_order_score": study_order_score(grid),
        **published_columns(grid, published, margin),
        "mean_answer_chars": _mean([len(r["setting_answer"]) for r in records]),
        "baseline_mean_answer_chars": _mean([len(r["baseline_answer"]) for r in records]),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "judge_calls": sum(r["usage"]["calls"] for r in records),
        "cost_usd": cost_usd(prompt_tokens, completion_tokens, prices) if prices else math.nan,
        **replicate_columns(replicates),
        **lc_columns(replicates, difficulty, n_boot, seed),
    }


def winrate_table(
    verdict_records_by_setting: Mapping[str, list[list[dict]]],
    titles: Mapping[str, str] | None = None,
    prices: Mapping | None = None,
    published: Mapping[str, Mapping] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    margin: float | None = None,
) -> pd.DataFrame:
    """One row per setting, in the mapping's order (its value: the verdicts of each replicate); `published` (read_published) holds the
    study's rates to compare with, by setting (none: the published columns stay empty), margin its
    equivalence margin; n_boot and seed: the length control's bootstrap."""
    titles, published = titles or {}, published or {}
    hardness = difficulties(verdict_records_by_setting)
    rows = [
        winrate_row(
            name, titles.get(name, name), records, prices, published.get(name), hardness[name], n_boot, seed, margin
        )
        for name, records in verdict_records_by_setting.items()
    ]
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.astype(
        {
            **{c: "int64" for c in INT_COLUMNS},
            **{c: "boolean" for c in NULLABLE_BOOL_COLUMNS},
            **{c: "float64" for c in FLOAT_COLUMNS},
        }
    )


def _won(replicates: list[list[dict]]) -> dict[str, bool]:
    """(replicate, question) -> won: replicate r of one setting is paired with replicate r of another."""
    return {f"{i}:{r['id']}": r["verdict"] == "win" for i, rep in enumerate(replicates) for r in rep}


def replicate_table(verdict_records_by_setting: Mapping[str, list[list[dict]]]) -> pd.DataFrame:
    """One row per setting and replicate: that replicate's verdicts alone."""
    rows = []
    for setting, replicates in verdict_records_by_setting.items():
        for r, records in enumerate(replicates):
            counts = {v: sum(rec["verdict"] == v for rec in records) for v in VERDICTS}
            rows.append(
                {
                    "setting": setting,
                    "replicate": r,
                    "n": len(records),
                    "wins": counts["win"],
                    "ties": counts["tie"],
                    "losses": counts["loss"],
                    "invalid": counts["invalid"],
                    "win_rate": counts["win"] / len(records) if records else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=REPLICATE_COLUMNS)


def pairwise_row(a: str, a_replicates: list[list[dict]], b: str, b_replicates: list[list[dict]]) -> dict:
    won_a, won_b = _won(a_replicates), _won(b_replicates)
    common = [key for key in won_a if key in won_b]
    a_better = sum(won_a[key] and not won_b[key] for key in common)
    b_better = sum(won_b[key] and not won_a[key] for key in common)
    return {
        "setting_a": a,
        "setting_b": b,
        "n": len(common),
        "a_better": a_better,
        "b_better": b_better,
        "p_value": exact_binomial_p(a_better, a_better + b_better),
    }


def pairwise_table(verdict_records_by_setting: Mapping[str, list[list[dict]]]) -> pd.DataFrame:
    """Every pair of settings, each once, in the mapping's order."""
    rows = [
        pairwise_row(a, verdict_records_by_setting[a], b, verdict_records_by_setting[b])
        for a, b in itertools.combinations(verdict_records_by_setting, 2)
    ]
    df = pd.DataFrame(rows, columns=PAIRWISE_COLUMNS)
    return df.astype({c: "int64" for c in ("n", "a_better", "b_better")}).astype({"p_value": "float64"})


def main(smk) -> None:
    settings = list(smk.params.settings)
    names = [s["name"] for s in settings]
    runs = read_runs(list(smk.input.verdicts), names, smk.params.replicates)
    by_setting = {name: [runs[name, r] for r in range(smk.params.replicates)] for name in names}
    titles = {s["name"]: s.get("title") or s["name"] for s in settings}
    published, margin = {}, None
    if smk.params.compare_published:
        published = read_published(smk.input.study)
        margin, _ = read_inference(smk.input.study, load_study(smk.input.study))
    statistics = smk.params.statistics
    df = winrate_table(
        by_setting, titles, smk.params.prices, published, statistics["n_bootstrap"], statistics["seed"], margin
    )
    write_text(smk.output.csv, df.to_csv(index=False))
    write_json(smk.output.json, table_rows(df))
    write_text(smk.output.pairwise, pairwise_table(by_setting).to_csv(index=False))
    write_text(smk.output.replicates, replicate_table(by_setting).to_csv(index=False))
    for row in table_rows(df):
        log.info(
            "%s: win rate %s (%d/%d over %d replicates, spread %s-%s, 95%% CI %s-%s, sign test p=%s, "
            "%d invalid, orders agree %s, win/loss flips %d; length-controlled %s (%s-%s%s); in the study's order %s, published %s, "
            "difference %s (95%% CI %s to %s), equivalent within +-%s: %s (TOST p=%s))",
            row["setting"],
            row["win_rate"],
            row["wins"],
            row["n"],
            row["replicates"],
            row["replicate_win_rate_min"],
            row["replicate_win_rate_max"],
            row["ci_low"],
            row["ci_high"],
            row["p_value"],
            row["invalid"],
            row["consistency"],
            row["order_flips"],
            row["lc_win_rate"],
            row["lc_ci_low"],
            row["lc_ci_high"],
            f": {row['lc_note']}" if row["lc_note"] else "",
            row["study_order_score"],
            row["published_win_rate"],
            row["published_difference"],
            row["published_difference_low"],
            row["published_difference_high"],
            row["published_margin"],
            row["published_equivalent"],
            row["published_equivalence_p"],
        )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
