rule split_data:
    input:
        f"{RESULTS}/data/raw.jsonl",
    output:
        train=f"{RESULTS}/data/train.jsonl",
        val=f"{RESULTS}/data/val.jsonl",
        heldout=f"{RESULTS}/data/heldout.jsonl",
        stats=f"{RESULTS}/data/split_stats.json",
    params:
        splits=config["splits"],
    log:
        f"{LOGS}/split_data.log",
    resources:
        gpu=0,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/split_data.py"
