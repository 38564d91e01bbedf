rule test_set:
    input:
        source=test_source(),
        heldout=f"{RESULTS}/data/heldout.jsonl",
        train=f"{RESULTS}/data/train.jsonl",
        val=f"{RESULTS}/data/val.jsonl",
    output:
        f"{RESULTS}/data/test.jsonl",
    log:
        f"{LOGS}/test_set.log",
    conda:
        "../envs/data.yaml"
    resources:
        gpu=0,
    params:
        test=config["test"],
    script:
        "../scripts/test_set.py"
