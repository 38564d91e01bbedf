rule raw_data:
    input:
        local_data_source(),
    output:
        f"{RESULTS}/data/raw.jsonl",
    params:
        data=config["data"],
    log:
        f"{LOGS}/raw_data.log",
    resources:
        gpu=0,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/raw_data.py"
