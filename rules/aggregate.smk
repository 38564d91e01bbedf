# The tables, per test set and judge: win rates (replicates pooled, with their spread), paired
# tests between settings, and the study's claims; and the judges' agreement.
rule winrate_table:
    input:
        verdicts=lambda wc: verdicts_of(wc.test_set, wc.judge),
        study=STUDY,
    output:
        csv=f"{RESULTS}/tables/{{test_set}}/{{judge}}/winrate.csv",
        json=f"{RESULTS}/tables/{{test_set}}/{{judge}}/winrate.json",
        pairwise=f"{RESULTS}/tables/{{test_set}}/{{judge}}/pairwise.csv",
        replicates=f"{RESULTS}/tables/{{test_set}}/{{judge}}/replicates.csv",
    log:
        f"{LOGS}/winrate_table/{{test_set}}/{{judge}}.log",
    benchmark:
        f"{BENCHMARKS}/winrate_table/{{test_set}}/{{judge}}.tsv"
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        settings=[
            {"name": s, "title": config["settings"][s].get("title", s)}
            for s in SETTINGS
        ],
        replicates=config["replicates"],
        prices=lambda wc: JUDGES[wc.judge]["price_per_million"],
        compare_published=lambda wc: compares_with_published(wc.test_set, wc.judge),
        statistics=statistics_of("n_bootstrap", "seed"),
    script:
        "../scripts/winrate_table.py"


rule claims_table:
    input:
        verdicts=lambda wc: verdicts_of(wc.test_set, wc.judge),
        study=STUDY,
    output:
        csv=f"{RESULTS}/tables/{{test_set}}/{{judge}}/claims.csv",
        json=f"{RESULTS}/tables/{{test_set}}/{{judge}}/claims.json",
    log:
        f"{LOGS}/claims_table/{{test_set}}/{{judge}}.log",
    benchmark:
        f"{BENCHMARKS}/claims_table/{{test_set}}/{{judge}}.tsv"
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        settings=SETTINGS,
        replicates=config["replicates"],
        controls=controls_by_setting(),
        statistics=statistics_of("alpha", "power_simulations", "seed"),
    script:
        "../scripts/claims_table.py"


rule calibration_table:
    input:
        tests=expand(f"{RESULTS}/data/test/{{test_set}}.jsonl", test_set=TEST_SETS),
        study=STUDY,
    output:
        csv=f"{RESULTS}/tables/calibration.csv",
    log:
        f"{LOGS}/calibration_table.log",
    benchmark:
        f"{BENCHMARKS}/calibration_table.tsv"
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        test_sets=TEST_SETS,
        replicates=config["replicates"],
        statistics=statistics_of("alpha", "power_simulations", "seed"),
    script:
        "../scripts/calibration_table.py"


# Every setting and the baseline ranked by Bradley-Terry score against the baseline, as
# Arena-Hard-Auto fits it (baseline 1000), with the crossed interval: the same verdicts.
rule ranking_table:
    input:
        verdicts=lambda wc: verdicts_of(wc.test_set, wc.judge),
    output:
        csv=f"{RESULTS}/tables/{{test_set}}/{{judge}}/ranking.csv",
        json=f"{RESULTS}/tables/{{test_set}}/{{judge}}/ranking.json",
    log:
        f"{LOGS}/ranking_table/{{test_set}}/{{judge}}.log",
    benchmark:
        f"{BENCHMARKS}/ranking_table/{{test_set}}/{{judge}}.tsv"
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        settings=[
            {"name": s, "title": config["settings"][s].get("title", s)}
            for s in SETTINGS
        ],
        replicates=config["replicates"],
        alpha=config["statistics"]["alpha"],
    script:
        "../scripts/ranking_table.py"


rule judge_agreement:
    input:
        verdicts=[verdicts_of(t, j) for t in TEST_SETS for j in JUDGES],
    output:
        csv=f"{RESULTS}/tables/judge_agreement.csv",
    log:
        f"{LOGS}/judge_agreement.log",
    benchmark:
        f"{BENCHMARKS}/judge_agreement.tsv"
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        test_sets=TEST_SETS,
        judges=list(JUDGES),
        settings=SETTINGS,
        replicates=config["replicates"],
        statistics=statistics_of("n_bootstrap", "seed"),
    script:
        "../scripts/judge_agreement.py"


# The compute table: per GPU job, Snakemake's benchmark (the whole job's wall time and max RSS)
# beside the device, peak GPU memory and tokens/s the job's stage recorded.
rule compute_table:
    input:
        benchmarks=compute_job_files("benchmark"),
        stats=compute_job_files("stats"),
    output:
        csv=f"{RESULTS}/tables/compute.csv",
    log:
        f"{LOGS}/compute_table.log",
    benchmark:
        f"{BENCHMARKS}/compute_table.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        jobs=compute_jobs(),
    script:
        "../scripts/compute_table.py"
