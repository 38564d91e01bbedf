"""Calibration of the claims table's inference by simulation (scripts/verdict_simulation.py):
coverage of the 95% crossed interval and the family-wise error of Holm's correction, on data
shaped like ours. Prints a Markdown table; the README's copy came from

    python bench/inference_calibration.py --studies 4000

The data's shape is config/study.yaml's `inference.simulation` with the run-to-run sd varied.
Columns: the simulated design (questions x replicates, the run-to-run sd on the logit scale), the
coverage of the recipe's true effect by the 95% interval for a setting against the baseline (at a
true mean score of 0.5, 0.75 and 0.9) and for one setting against another (0.9 against 0.75), and
the share of simulated studies in which any of the study's 11 claims comes out supported when no
setting differs from another or from the baseline (family-wise error, Holm at 5%)."""

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from claim_stats import holm_adjusted  # noqa: E402
from claims_table import read_inference, read_study  # noqa: E402
from crossed_stats import crossed_interval  # noqa: E402
from verdict_simulation import Nuisance, expected_score, quality_for_score, simulate_scores  # noqa: E402

RATES = {"even": 0.5, "good": 0.75, "strong": 0.9}
# The study's family of claims (config/study.yaml): 3 between settings 1-4, 2 of scaling's gain,
# 4 against the baseline, 2 against untuned controls.
FAMILY = [("s2", "s1"), ("s3", "s1"), ("s4", "s1"), ("s2", "s3"), ("s2", "s4"),
          ("s1", None), ("s2", None), ("s3", None), ("s4", None), ("s1", "c4"), ("s2", "c14")]


def coverage(n: int, k: int, nuisance: Nuisance, studies: int, rng: np.random.Generator) -> dict[str, float]:
    qualities = {name: quality_for_score(rate, nuisance) for name, rate in RATES.items()}
    truth = {name: expected_score(q, nuisance) for name, q in qualities.items()}
    hits = dict.fromkeys([*RATES, "strong-good"], 0)
    for start in range(0, studies, 100):
        scores = simulate_scores(rng, min(100, studies - start), n, k, qualities, nuisance)
        for name in RATES:
            _, low, high, _ = crossed_interval(scores[name])
            hits[name] += int(((low <= truth[name] - 0.5) & (truth[name] - 0.5 <= high)).sum())
        _, low, high, _ = crossed_interval(scores["strong"], scores["good"])
        diff = truth["strong"] - truth["good"]
        hits["strong-good"] += int(((low <= diff) & (diff <= high)).sum())
    return {name: count / studies for name, count in hits.items()}


def family_wise_error(n: int, k: int, nuisance: Nuisance, studies: int, rng: np.random.Generator,
                      alpha: float = 0.05) -> float:
    """Share of studies with any claim supported when every setting equals the baseline."""
    names = {x for pair in FAMILY for x in pair if x}
    errors = 0
    for start in range(0, studies, 100):
        scores = simulate_scores(rng, min(100, studies - start), n, k, dict.fromkeys(names, 0.0), nuisance)
        estimates = [crossed_interval(scores[a], None if b is None else scores[b], alpha) for a, b in FAMILY]
        effects = np.stack([e[0] for e in estimates], -1)
        p_holm = holm_adjusted(np.stack([e[3] for e in estimates], -1))
        errors += int(((p_holm < alpha) & (effects > 0)).any(-1).sum())
    return errors / studies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    study = Path(__file__).resolve().parents[1] / "config" / "study.yaml"
    _, study_nuisance = read_inference(study, read_study(study))
    print(f"Nuisance of config/study.yaml, run sd varied: {study_nuisance}\n")
    print("| questions x replicates | run sd (logit) | vs baseline at 0.5 | at 0.75 | at 0.9 | 0.9 vs 0.75 | family-wise error |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n, k in ((20, 3), (200, 3), (20, 1), (12, 2)):
        for sd in (0.0, 0.25, 0.75, 1.5):
            nuisance = dataclasses.replace(study_nuisance, replicate_sd=sd)
            c = coverage(n, k, nuisance, args.studies, rng)
            fwe = family_wise_error(n, k, nuisance, args.studies, rng)
            print(f"| {n} x {k} | {sd} | {c['even']:.3f} | {c['good']:.3f} | {c['strong']:.3f} | "
                  f"{c['strong-good']:.3f} | {fwe:.3f} |", flush=True)


if __name__ == "__main__":
    main()
