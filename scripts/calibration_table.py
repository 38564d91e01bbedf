"""Stage calibration: how well the claims table's inference holds at this run's own design, by
simulation (calibration.py) with the data's shape from config/study.yaml (`inference.simulation`).

tables/calibration.csv, one row per test set (COLUMNS): its questions and the run's replicates;
the coverage of the 95% interval of a setting against the baseline at true mean scores 0.5, 0.75
and 0.9, and of 0.9 against 0.75; the family-wise error of the study's claims (config/study.yaml
`claims:`) after Holm at the run's alpha when no setting differs; the simulated studies behind
each share."""

import numpy as np
import pandas as pd

from huatuo_study.common import log, read_jsonl, run_stage, write_text
from huatuo_study.statistics.calibration import COVERAGE_RATES, coverage, family_wise_error
from huatuo_study.statistics.study_file import CONTROL, read_inference, read_study

COLUMNS = [
    "test_set",
    "questions",
    "replicates",
    *(f"coverage_{r}" for r in COVERAGE_RATES),
    "coverage_difference",
    "family_wise_error",
    "studies",
]


def claim_family(claims: list[dict]) -> list[tuple[str, str]]:
    """The claims as (setting, against) pairs; a claim against its control gets a control of its own."""
    return [(c["setting"], f"{CONTROL} of {c['setting']}" if c["against"] == CONTROL else c["against"]) for c in claims]


def calibration_table(
    sizes: dict[str, int], replicates: int, claims: list[dict], nuisance, alpha: float, studies: int, seed: int
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for test_set, n in sizes.items():
        cover = coverage(n, replicates, nuisance, studies, rng)
        rows.append(
            {
                "test_set": test_set,
                "questions": n,
                "replicates": replicates,
                **{f"coverage_{r}": cover[str(r)] for r in COVERAGE_RATES},
                "coverage_difference": cover["difference"],
                "family_wise_error": family_wise_error(
                    claim_family(claims), n, replicates, nuisance, studies, rng, alpha
                ),
                "studies": studies,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def main(smk) -> None:
    study = read_study(smk.input.study)
    _, nuisance = read_inference(smk.input.study, study)
    sizes = {name: len(read_jsonl(path)) for name, path in zip(smk.params.test_sets, smk.input.tests)}
    stats = smk.params.statistics
    table = calibration_table(
        sizes,
        smk.params.replicates,
        study["claims"],
        nuisance,
        stats["alpha"],
        stats["power_simulations"],
        stats["seed"],
    )
    write_text(smk.output.csv, table.to_csv(index=False))
    for row in table.to_dict(orient="records"):
        log.info(
            "%s: %d questions x %d replicates: coverage %s, family-wise error %s",
            row["test_set"],
            row["questions"],
            row["replicates"],
            ", ".join(f"{row[f'coverage_{r}']:.3f}" for r in COVERAGE_RATES),
            row["family_wise_error"],
        )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
