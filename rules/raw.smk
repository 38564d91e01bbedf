rule raw_data:
    input:
        local_data_source(),
    output:
        f"{RESULTS}/data/raw.jsonl",
    log:
        f"{LOGS}/raw_data.log",
    benchmark:
        f"{BENCHMARKS}/raw_data.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        gpu=0,
    params:
        data=config["data"],
    script:
        "../scripts/raw_data.py"
