"""The ranking's scale and columns, as plain constants: shared by the ranking stage
(bradley_terry.py, judge env) and the figure and paper stages (paper env, without scipy)."""

BASELINE = "baseline"
ANCHOR = 1000.0  # the baseline's score (Arena-Hard-Auto's INIT_RATING, anchored)
SCALE = 400.0  # score points per factor of 10 in the odds of beating the baseline
COLUMNS = ["rank", "setting", "title", "score", "ci_low", "ci_high", "win_rate", "n", "replicates", "note"]
NOTES = {
    "anchor": "the baseline: anchored at 1000",
    "not run": "not run: no verdicts for this setting",
    "all wins": "won every question: scored half a question inside",
    "all losses": "lost every question: scored half a question inside",
}
