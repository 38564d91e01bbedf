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
        # The near-duplicate check's keys change only its own report (rule near_duplicates).
        test={k: v for k, v in config["test"].items() if k != "leakage"},
    script:
        "../scripts/test_set.py"


# Near-duplicates of the test questions in the training data. First among the jobs ready with
# it (priority), so that a leak stops the run before any GPU job is started.
rule near_duplicates:
    input:
        test=f"{RESULTS}/data/test.jsonl",
        train=f"{RESULTS}/data/train.jsonl",
        val=f"{RESULTS}/data/val.jsonl",
    output:
        f"{RESULTS}/data/near_duplicates.json",
    log:
        f"{LOGS}/near_duplicates.log",
    priority: 100
    conda:
        "../envs/data.yaml"
    resources:
        gpu=0,
    params:
        leakage=config["test"]["leakage"],
    script:
        "../scripts/near_duplicates.py"
