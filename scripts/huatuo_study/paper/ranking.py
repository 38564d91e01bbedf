"""The paper's ranking: the headline ranking.json (ranking_table.py) as table rows of text, each
setting named as the paper numbers it, and the notes its rows carry."""

from collections.abc import Mapping, Sequence

from huatuo_study.common import PipelineError
from huatuo_study.paper.formatting import need, pct
from huatuo_study.statistics.ranking_scale import BASELINE, NOTES


def _score(value: float | None) -> str:
    return "--" if value is None else f"{value:.0f}"


def ranking_context(ranking: Sequence[Mapping], settings: Sequence[Mapping]) -> dict:
    """{rows: one per ranking.json row in its order (rank, label, score, ci, rate, n), notes: the
    sentences the rows' notes need (all wins or losses; not run)}; settings: setting_specs."""
    numbers = {s["key"]: s["k"] for s in settings}
    rows, notes = [], []
    for i, row in enumerate(ranking, 1):
        where = f"ranking.json row {i}"
        setting = need(row, "setting", where)
        if setting != BASELINE and setting not in numbers:
            raise PipelineError(f"{where}: setting {setting!r} is not in the config")
        label = "Baseline (anchor)" if setting == BASELINE else f"Setting {numbers[setting]}"
        anchored = setting == BASELINE
        n, k = need(row, "n", where), need(row, "replicates", where)
        rows.append(
            {
                "rank": "--" if need(row, "rank", where) is None else str(row["rank"]),
                "label": label,
                "score": _score(need(row, "score", where)),
                "ci": "--"
                if anchored or row["score"] is None
                else f"[{_score(row['ci_low'])}, {_score(row['ci_high'])}]",
                "rate": pct(need(row, "win_rate", where)),
                "n": "--" if n is None else (f"{n}" if anchored or k is None else f"{n} x {k}"),
            }
        )
        note = need(row, "note", where)
        if note and note != NOTES["anchor"]:
            notes.append(f"{label}: {note}.")
    return {"rows": rows, "notes": notes}
