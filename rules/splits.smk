rule split_data:
    input:
        f"{RESULTS}/data/raw.jsonl",
    output:
        train=f"{RESULTS}/data/train.jsonl",
        val=f"{RESULTS}/data/val.jsonl",
        heldout=f"{RESULTS}/data/heldout.jsonl",
        stats=f"{RESULTS}/data/split_stats.json",
    log:
        f"{LOGS}/split_data.log",
    conda:
        "../envs/data.yaml"
    resources:
        gpu=0,
    params:
        splits=config["splits"],
    script:
        "../scripts/split_data.py"
