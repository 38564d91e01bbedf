rule fidelity_table:
    input:
        study=STUDY,
    output:
        f"{RESULTS}/tables/fidelity.csv",
    log:
        f"{LOGS}/fidelity_table.log",
    benchmark:
        f"{BENCHMARKS}/fidelity_table.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        config=RUN_CONFIG,
    script:
        "../scripts/fidelity_table.py"
