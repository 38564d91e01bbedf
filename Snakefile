# QLoRA SFT of Qwen3 on Huatuo26M-Lite, judged pairwise against a baseline: the whole study as
# one DAG. The study's config is the default; `--configfile config/demo.yaml` replaces it (it is
# not merged over it, so the demo never inherits the study's settings or models).
from snakemake.utils import min_version, validate

min_version("9.0")


if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/raw.smk"
include: "rules/splits.smk"
include: "rules/test_set.smk"
include: "rules/augment.smk"
include: "rules/models.smk"
include: "rules/train.smk"
include: "rules/generate.smk"
include: "rules/baseline.smk"
include: "rules/judge.smk"
include: "rules/aggregate.smk"
include: "rules/fidelity.smk"
include: "rules/figures.smk"
include: "rules/paper.smk"
include: "rules/export.smk"
include: "rules/human_labels.smk"


onstart:
    preflight_checks()


rule all:
    default_target: True
    input:
        tables_of("winrate.csv"),
        tables_of("ranking.csv"),
        f"{RESULTS}/paper/paper.pdf",
        # The report's HTML tables: no other rule reads them.
        rules.report_tables.output,
        export_targets(),
        rules.human_label_sheet.output,
