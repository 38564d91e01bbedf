"""Calibration of the claims table's inference by simulation, over designs and run-to-run spreads
beyond any one run's (the pipeline's tables/calibration.csv holds its own design). Prints a
Markdown table; docs/statistics.md's copy came from

    python bench/inference_calibration.py --studies 4000

The data's shape is config/study.yaml's `inference.simulation` with the run-to-run sd varied.
Columns: the simulated design (questions x replicates, the run-to-run sd on the logit scale), the
coverage of the recipe's true effect by the 95% interval for a setting against the baseline (at a
true mean score of 0.5, 0.75 and 0.9) and for 0.9 against 0.75, and the share of simulated
studies in which any of the study's claims comes out supported when no setting differs from
another or from the baseline (family-wise error, Holm at 5%)."""

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from calibration_table import claim_family  # noqa: E402
from huatuo_study.statistics.calibration import coverage, family_wise_error  # noqa: E402
from huatuo_study.statistics.study_file import read_inference, read_study  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    path = Path(__file__).resolve().parents[1] / "config" / "study.yaml"
    study = read_study(path)
    _, study_nuisance = read_inference(path, study)
    family = claim_family(study["claims"])
    print(
        f"Nuisance of config/study.yaml, run sd varied: {study_nuisance}; {len(family)} claims; "
        f"{args.studies} studies a cell\n"
    )
    print(
        "| questions x replicates | run sd (logit) | vs baseline at 0.5 | at 0.75 | at 0.9 | 0.9 vs 0.75 | family-wise error |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n, k in ((20, 3), (200, 3), (20, 1), (12, 2)):
        for sd in (0.0, 0.25, 0.75, 1.5):
            nuisance = dataclasses.replace(study_nuisance, replicate_sd=sd)
            c = coverage(n, k, nuisance, args.studies, rng)
            fwe = family_wise_error(family, n, k, nuisance, args.studies, rng, 0.05)
            print(
                f"| {n} x {k} | {sd} | {c['0.5']:.3f} | {c['0.75']:.3f} | {c['0.9']:.3f} | "
                f"{c['difference']:.3f} | {fwe:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
