"""Stage human label sheet: a blind labelling sheet for people, from the answers alone (not the
verdicts, so that a judge's rerun leaves a sheet being filled as it is). label_sheet.py says what
is sampled, hidden and kept.

  human_labels/sheet/sheet.csv   the rows to label (label empty); UTF-8 with a byte-order mark,
                                 so that spreadsheets read the Chinese text as UTF-8.
  human_labels/sheet/sheet.html  the same rows as a form that needs no server: choose A, B or tie
                                 per row and download the filled CSV (sheet.csv's columns).
  human_labels/key.csv           row -> test set, question id, setting, replicate, order: what
                                 un-blinds the filled sheet. Not to be shown to the labellers."""

import itertools
from pathlib import Path

import jinja2
from markupsafe import Markup

from huatuo_study.common import PipelineError, log, read_jsonl, run_stage, write_text
from huatuo_study.judging.label_sheet import (
    KEY_COLUMNS,
    SHEET_COLUMNS,
    candidate_pairs,
    csv_text,
    key_rows,
    sample_pairs,
    sheet_json,
    sheet_rows,
)


def render_form(template: str, rows: list[dict], run: str) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string(template).render(
        rows=rows, run=run, columns=SHEET_COLUMNS, rows_json=Markup(sheet_json(rows))
    )


def main(smk) -> None:
    p, i = smk.params, smk.input
    runs = list(itertools.product(p.settings, range(p.replicates)))
    per_test_set = len(runs)
    answers, baselines = list(i.answers), list(i.baselines)
    if len(answers) != len(p.test_sets) * per_test_set or len(baselines) != len(p.test_sets):
        raise PipelineError(
            f"{len(answers)} answer files and {len(baselines)} baselines for "
            f"{len(p.test_sets)} test sets x {per_test_set} runs"
        )
    candidates = {
        test_set: candidate_pairs(
            test_set,
            {run: read_jsonl(path) for run, path in zip(runs, answers[k * per_test_set : (k + 1) * per_test_set])},
            read_jsonl(baselines[k]),
            baselines[k],
        )
        for k, test_set in enumerate(p.test_sets)
    }
    pairs = sample_pairs(candidates, p.pairs_per_test_set, p.seed)
    rows = sheet_rows(pairs)
    # The BOM makes spreadsheets read the file as UTF-8; csv_records reads it either way.
    write_text(smk.output.csv, "\ufeff" + csv_text(rows, SHEET_COLUMNS))
    write_text(smk.output.html, render_form(Path(i.template).read_text(encoding="utf-8"), rows, p.run))
    write_text(smk.output.key, csv_text(key_rows(pairs), KEY_COLUMNS))
    log.info(
        "label sheet: %d pairs (%s) from seed %d",
        len(rows),
        ", ".join(f"{t}: {sum(q['test_set'] == t for q in pairs)} of {len(c)}" for t, c in candidates.items()),
        p.seed,
    )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
