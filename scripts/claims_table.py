"""Stage claims: one row per claim of the study (config/study.yaml `claims:`), on one test set by
one judge: the claim in its words, its published effect, ours on the one measure (mean score) with
its 95% interval over questions and training runs, the p-value dual to it, Holm's correction and
the corrected interval, the power of the whole procedure at the published effect and the n that
80% needs, and a verdict: reproduced, supported, contradicted or inconclusive, with the sentence
it rests on (claim_stats says how each is computed).

A claim compares `setting` with another setting, with the baseline, or with `control`: the
untuned control of the setting's base model (run_plan.controls_by_setting). Published
effects are differences of the study's published win rates (`published:`), whatever the test
set: they are what the claim says, and what the power is computed at."""

from huatuo_study.common import log, run_stage, write_json, write_text
from huatuo_study.judging.verdicts import read_runs, table_rows, verdict_frame
from huatuo_study.statistics.claim_stats import BASELINE, claims_table
from huatuo_study.statistics.study_file import CONTROL, read_inference, read_published, read_study


def resolve_claims(claims: list[dict], published_rates: dict, controls: dict[str, str]) -> list[dict]:
    """Each claim with its comparison named (control -> the setting's control; a setting with none
    in this run is "not run") and the published rates it was made from (None where the study has none)."""
    resolved = []
    for claim in claims:
        setting, against = claim["setting"], claim["against"]
        setting_rate = published_rates.get(setting)
        if against == CONTROL:  # the study had no control: no published effect
            against, against_rate, setting_rate = controls.get(setting, f"{CONTROL} of {setting}"), None, None
        else:
            against_rate = None if against == BASELINE else published_rates.get(against)
            if against != BASELINE and against_rate is None:
                setting_rate = None
        effect = None if setting_rate is None else setting_rate - (0.5 if against_rate is None else against_rate)
        resolved.append(
            {
                **{k: claim[k] for k in ("id", "claim", "source", "setting")},
                "against": against,
                "published_effect": effect,
                "published_setting_rate": setting_rate,
                "published_against_rate": against_rate,
            }
        )
    return resolved


def main(smk) -> None:
    p = smk.params
    study = read_study(smk.input.study)
    rates = {setting: p["win_rate"] for setting, p in read_published(smk.input.study).items()}
    claims = resolve_claims(study["claims"], rates, dict(p.controls))
    verdicts = verdict_frame(read_runs(list(smk.input.verdicts), list(p.settings), p.replicates))
    margin, nuisance = read_inference(smk.input.study, study)
    stats = p.statistics
    table = claims_table(verdicts, claims, stats["alpha"], margin, nuisance, stats["power_simulations"], stats["seed"])
    write_text(smk.output.csv, table.to_csv(index=False))
    write_json(smk.output.json, table_rows(table))
    for row in table_rows(table):
        log.info(
            "%s: %s (effect %s, 95%% CI %s to %s, Holm p %s, power %s): %s",
            row["id"],
            row["verdict"],
            row["effect"],
            row["ci_low"],
            row["ci_high"],
            row["p_holm"],
            row["power"],
            row["reading"],
        )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
