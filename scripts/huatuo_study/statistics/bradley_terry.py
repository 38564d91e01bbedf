"""Bradley-Terry scores of the settings against the baseline, as Arena-Hard-Auto fits them.

Arena-Hard-Auto (v0.1, show_result.py compute_mle_elo) fits a Bradley-Terry model by logistic
regression to judgments of every model against one baseline, a tie counting as half a win, and
reports the coefficients on an Elo-like scale: base 10, scale 400, the baseline anchored at 1000.
When every model is compared with the baseline only, the likelihood splits into one term per
model, and its maximum is where the model's predicted rate equals its observed mean score p:

    score = 1000 + 400 * log10(p / (1 - p))

a monotone map of the mean score (crossed_stats.SCORES: win 1, tie 1/2, loss 0, an unparseable
verdict 1/2). The baseline scores 1000 by construction, a setting as good as it 1000, and a
difference of 400 means odds of 10 to 1 against the baseline. No new judge calls: the verdicts
are those of the win-rate and claims tables.

The interval is the crossed one of crossed_stats (questions and training runs both sampled),
which is built on the logit of the mean score: mapped through the same map, its ends map exactly
(the map is monotone and linear in the logit). A setting with all wins (or all losses) has no
finite maximum: as crossed_stats does, its score is taken half a question inside (p = 1 - 1/(2Q),
Q questions) and its interval is the crossed interval around that point on the logit scale;
crossed_interval itself widens that interval to the unclipped mean score, whose end, 1, has no
finite score. Intervals are per setting at level 1 - alpha, not corrected for the number of
settings: a reader comparing two settings' scores should turn to the pairwise and claims tables.
"""

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import logit

from huatuo_study.common import PipelineError
from huatuo_study.statistics.claim_stats import check_verdicts, per_question
from huatuo_study.statistics.crossed_stats import NO_EFFECT_SCORE, crossed_interval
from huatuo_study.statistics.ranking_scale import ANCHOR, BASELINE, COLUMNS, NOTES, SCALE


def elo_from_logit(x):
    """The score of a natural-log odds x of beating the baseline."""
    return ANCHOR + SCALE * np.asarray(x, float) / math.log(10)


def elo_from_rate(p):
    """The score of a rate p of beating the baseline (ties one half): 1000 + 400 log10(p / (1 - p))."""
    p = np.asarray(p, float)
    if np.any((p < 0) | (p > 1)):
        raise PipelineError(f"Bradley-Terry score: a rate must lie in [0, 1], got {p}")
    with np.errstate(divide="ignore"):
        return elo_from_logit(logit(p))


def setting_score(grid, alpha: float) -> dict:
    """A setting's score against the baseline from its questions x replicates grid of scores:
    score, ci_low, ci_high (module doc), win_rate (the unclipped mean score), n, replicates, note."""
    grid = np.asarray(grid, float)
    effect, low, high, _ = (float(np.asarray(x)) for x in crossed_interval(grid, None, alpha))
    q, k = grid.shape
    edge = 1 / (2 * q)
    rate = float(grid.mean())  # = effect + 1/2, without its rounding
    centre = float(logit(min(max(rate, edge), 1 - edge)))
    # crossed_interval's ends are expit(centre -+ half), unless an end was widened to an unclipped
    # mean score of 0 or 1; that end is read back from the other, the interval being symmetric
    # about the centre on the logit scale.
    low_logit, high_logit = float(logit(low + NO_EFFECT_SCORE)), float(logit(high + NO_EFFECT_SCORE))
    if rate == 1:
        high_logit = 2 * centre - low_logit
    if rate == 0:
        low_logit = 2 * centre - high_logit
    note = "all wins" if rate == 1 else "all losses" if rate == 0 else ""
    return {
        "score": float(elo_from_logit(centre)),
        "ci_low": float(elo_from_logit(low_logit)),
        "ci_high": float(elo_from_logit(high_logit)),
        "win_rate": rate,
        "n": q,
        "replicates": k,
        "note": NOTES.get(note, ""),
    }


def ranking(
    verdicts: pd.DataFrame, settings: Sequence[str], alpha: float, titles: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per setting of `settings` (config order) and one for the baseline, ranked by score,
    highest first (equal scores share the better rank); a setting without verdicts is "not run",
    unranked, last. `verdicts` is verdicts.verdict_frame's table (claim_stats.check_verdicts)."""
    if not 0 < alpha < 1:
        raise PipelineError(f"ranking: alpha must lie in (0, 1), got {alpha}")
    if len(set(settings)) != len(settings) or BASELINE in settings:
        raise PipelineError(f"ranking: settings must be distinct and not {BASELINE!r}, got {list(settings)}")
    if not verdicts.empty:
        check_verdicts(verdicts)
    unknown = sorted(set(verdicts["setting"]) - set(settings))
    if unknown:
        raise PipelineError(f"ranking: verdicts of settings not in the run: {', '.join(map(str, unknown))}")
    titles = dict(titles or {})
    rows, questions = [], verdicts["id"].astype(str).nunique()
    for setting in settings:
        row = {"setting": setting, "title": titles.get(setting, setting)}
        if setting in set(verdicts["setting"]):
            row.update(setting_score(per_question(verdicts, setting), alpha))
        else:
            row.update(
                score=math.nan,
                ci_low=math.nan,
                ci_high=math.nan,
                win_rate=math.nan,
                n=None,
                replicates=None,
                note=NOTES["not run"],
            )
        rows.append(row)
    rows.append(
        {
            "setting": BASELINE,
            "title": titles.get(BASELINE, BASELINE),
            "score": ANCHOR,
            "ci_low": ANCHOR,
            "ci_high": ANCHOR,
            "win_rate": NO_EFFECT_SCORE,
            "n": questions or None,
            "replicates": None,
            "note": NOTES["anchor"],
        }
    )
    table = pd.DataFrame(rows)
    table["rank"] = table["score"].rank(ascending=False, method="min").astype("Int64")
    table = table.sort_values(["score", "setting"], ascending=[False, True], na_position="last", kind="stable")
    return table.reset_index(drop=True)[COLUMNS].astype(
        {"n": "Int64", "replicates": "Int64", **dict.fromkeys(("score", "ci_low", "ci_high", "win_rate"), "float64")}
    )
