rule test_set:
    input:
        source=test_source(),
        heldout=f"{RESULTS}/data/heldout.jsonl",
        train=f"{RESULTS}/data/train.jsonl",
        val=f"{RESULTS}/data/val.jsonl",
    output:
        f"{RESULTS}/data/test.jsonl",
    params:
        test=config["test"],
    log:
        f"{LOGS}/test_set.log",
    resources:
        gpu=0,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/test_set.py"
