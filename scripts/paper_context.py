"""Paper stage: read the run's files (the win-rate, paired-test, fidelity and compute tables, the data
stages' stats and near-duplicate report, the test set, the answers, the training stats, the model manifests, the judge's
prompt) into results/<run>/paper/context.json: everything paper/paper.tex.j2 needs, as raw
values (the template escapes each one). The .tex, the report tables and, through them, the PDF
are built from this one file by later rules; the figures read their own tables."""

import csv
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from huatuo_study.common import DataError, PipelineError, log, read_json, read_jsonl, read_prompt, run_stage, write_text
from huatuo_study.paper.case import case_study
from huatuo_study.paper.claims import agreement_rows, claims_context
from huatuo_study.paper.compute import compute_context
from huatuo_study.paper.design import design_context, setting_specs
from huatuo_study.paper.formatting import need
from huatuo_study.paper.provenance import check_no_secrets, paper_rows
from huatuo_study.paper.provenance import collect as collect_provenance
from huatuo_study.paper.ranking import ranking_context
from huatuo_study.paper.results import results_context
from huatuo_study.records import FIDELITY_COLUMNS, PAIRWISE_COLUMNS, read_compute_csv, read_table_json
from huatuo_study.run_plan import FIGURES


def read_pairwise_csv(path: str | os.PathLike) -> list[dict]:
    """tables/pairwise.csv: one row per pair of settings, counts as ints and p_value a float."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in PAIRWISE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, 1, missing[0], "missing column")
        rows = []
        for lineno, row in enumerate(reader, 2):
            try:
                rows.append(
                    {
                        "setting_a": row["setting_a"],
                        "setting_b": row["setting_b"],
                        **{k: int(row[k]) for k in ("n", "a_better", "b_better")},
                        "p_value": float(row["p_value"]),
                    }
                )
            except ValueError as e:
                raise DataError(path, lineno, None, f"not a number ({e})") from None
    return rows


def read_fidelity_csv(path: str | os.PathLike) -> list[dict]:
    """tables/fidelity.csv: every value as text (an empty note stays empty, not NaN)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in FIDELITY_COLUMNS:
        if column not in frame.columns:
            raise DataError(path, 1, column, "missing column")
    return frame.to_dict(orient="records")


def paper_context(
    config: Mapping,
    winrate: Sequence[Mapping],
    pairwise: Sequence[Mapping],
    split_stats: Mapping,
    tests: Mapping[str, list[dict]],
    baseline: list[dict],
    generations: Mapping[str, list[dict]],
    provenance: Mapping,
    judge_prompt: str,
    fidelity: Sequence[Mapping],
    augment_stats: Mapping | None,
    leakage: Mapping[str, Mapping],
    claims: Mapping[str, Sequence[Mapping]],
    winrates: Mapping[tuple[str, str], Sequence[Mapping]],
    agreement: Sequence[Mapping],
    compute: Sequence[Mapping],
    calibration: Sequence[Mapping],
    figures: Mapping[str, str] = FIGURES,
    ranking: Sequence[Mapping] = (),
    human_agreement: Sequence[Mapping] = (),
) -> dict[str, Any]:
    """Everything the template needs, as raw (unescaped) strings and numbers. `tests` holds every
    test set by name, the first the headline one that `winrate`, `pairwise`, `baseline` and
    `generations` (setting -> its replicates' answers) are of; `claims` the primary judge's claims table per test set, `winrates` every
    test set's table by every judge; `compute` the compute table's rows (records.read_compute_csv);
    `calibration` tables/calibration.csv's rows. `figures` maps loss, winrate, lengths and ranking
    to file names relative to the .tex file; `ranking` the headline ranking.json's rows (none: the
    paper has no ranking); `human_agreement` tables/human_agreement.csv's rows (none: no human
    labels, no such table)."""
    settings = setting_specs(config)
    alpha = need(need(config, "statistics", "config"), "alpha", "config 'statistics'")
    test = next(iter(tests.values()))
    sizes = {name: len(rows) for name, rows in tests.items()}
    return {
        **design_context(config, settings, split_stats, sizes, judge_prompt, fidelity, augment_stats, leakage),
        **results_context(
            winrate,
            pairwise,
            settings,
            {s: sum(reps, []) for s, reps in generations.items()},
            alpha,
            questions=len(test),
            replicates=config.get("replicates", 1),
        ),
        **claims_context(claims, winrates, agreement, settings, calibration),
        "human_agreement": agreement_rows(human_agreement),
        "figures": dict(figures),
        "ranking": ranking_context(ranking, settings),
        "case": case_study(config, test, baseline, {s: reps[0] for s, reps in generations.items()}, settings),
        "provenance": paper_rows(provenance, settings),
        "compute": compute_context(compute, settings, config),
    }


def _paths(value: Any) -> list[str]:
    return [str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value]


def _by_name(names: Sequence[str], paths: Any, what: str) -> dict[str, str]:
    paths = _paths(paths)
    if len(paths) != len(names):
        raise PipelineError(f"input '{what}': {len(paths)} file(s) for {len(names)}")
    return dict(zip(names, paths))


def _replicates(settings: Sequence[str], replicates: int, paths: Any, read=lambda path: path) -> dict[str, list]:
    """setting -> its replicates' files (read), from paths in settings x replicates order."""
    paths = _paths(paths)
    if len(paths) != len(settings) * replicates:
        raise PipelineError(f"{len(paths)} file(s) for {len(settings)} settings x {replicates} replicates")
    return {s: [read(p) for p in paths[i * replicates : (i + 1) * replicates]] for i, s in enumerate(settings)}


def main(smk) -> None:
    config, p = smk.params.config, smk.params
    settings = list(need(config, "settings", "config"))
    test_sets, judges = list(p.test_sets), list(p.judges)
    pairs = [(t, j) for t in test_sets for j in judges]
    names = [f"{t}/{j}" for t, j in pairs]
    winrates = {
        pair: read_table_json(path, "winrate_row")
        for pair, path in zip(pairs, _by_name(names, smk.input.winrates, "winrates").values())
    }
    claims_paths = dict(zip(pairs, _by_name(names, smk.input.claims, "claims").values()))
    replicates = config.get("replicates", 1)
    train_stats = _replicates(p.trained, replicates, smk.input.train_stats)
    winrate = read_table_json(smk.input.winrate, "winrate_row")
    context = paper_context(
        config=config,
        winrate=winrate,
        pairwise=read_pairwise_csv(smk.input.pairwise),
        split_stats=read_json(smk.input.split_stats),
        tests={t: read_jsonl(path) for t, path in _by_name(test_sets, smk.input.tests, "tests").items()},
        baseline=read_jsonl(smk.input.baseline),
        generations=_replicates(settings, replicates, smk.input.generations, read_jsonl),
        # Package versions as each stage recorded them in its stats or manifest.
        provenance=collect_provenance(
            config,
            winrate,
            smk.input.winrate,
            smk.input.raw,
            train_stats,
            _paths(smk.input.models),
            split_stats=smk.input.split_stats,
            augment_stats=smk.input.augment_stats[0] if smk.input.augment_stats else None,
        ),
        judge_prompt=read_prompt(smk.input.judge_prompt),
        fidelity=read_fidelity_csv(smk.input.fidelity),
        augment_stats=read_json(smk.input.augment_stats[0]) if smk.input.augment_stats else None,
        leakage={
            t: read_json(path) for t, path in _by_name(test_sets, smk.input.near_duplicates, "near_duplicates").items()
        },
        claims={t: read_table_json(claims_paths[t, "primary"], "claim_row") for t in test_sets},
        winrates=winrates,
        agreement=pd.read_csv(smk.input.agreement).to_dict(orient="records"),
        compute=read_compute_csv(smk.input.compute),
        calibration=pd.read_csv(smk.input.calibration).to_dict(orient="records"),
        figures=smk.params.figures,
        ranking=read_table_json(smk.input.ranking, "ranking_row"),
        human_agreement=[
            row for path in _paths(smk.input.human_agreement) for row in pd.read_csv(path).to_dict(orient="records")
        ],
    )
    text = json.dumps(context, ensure_ascii=False, indent=2) + "\n"
    check_no_secrets({"context.json": text}, p.secret_envs)
    write_text(smk.output.context, text)
    log.info("paper context: wrote %s", smk.output.context)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
