rule test_set:
    input:
        source=test_source,
        heldout=f"{RESULTS}/data/heldout.jsonl",
        train=f"{RESULTS}/data/train.jsonl",
        val=f"{RESULTS}/data/val.jsonl",
    output:
        f"{RESULTS}/data/test/{{test_set}}.jsonl",
    log:
        f"{LOGS}/test_set/{{test_set}}.log",
    benchmark:
        f"{BENCHMARKS}/test_set/{{test_set}}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        gpu=0,
    params:
        # The baseline's keys change the baseline's answers, not the questions.
        source=lambda wc: config["test_sets"][wc.test_set]["source"],
        n=lambda wc: config["test_sets"][wc.test_set]["n"],
        copies=lambda wc: config["test_sets"][wc.test_set]["copies"],
        heldout_slice=lambda wc: heldout_slice(wc.test_set),
    script:
        "../scripts/test_set.py"


# Near-duplicates of the test questions in the training data. First among the jobs ready with
# it (priority), so that a leak stops the run before any GPU job is started.
rule near_duplicates:
    input:
        test=f"{RESULTS}/data/test/{{test_set}}.jsonl",
        train=f"{RESULTS}/data/train.jsonl",
        val=f"{RESULTS}/data/val.jsonl",
    output:
        f"{RESULTS}/data/near_duplicates/{{test_set}}.json",
    log:
        f"{LOGS}/near_duplicates/{{test_set}}.log",
    benchmark:
        f"{BENCHMARKS}/near_duplicates/{{test_set}}.tsv"
    priority: 100
    conda:
        "../envs/data.yaml"
    resources:
        gpu=0,
    params:
        leakage=config["leakage"],
    script:
        "../scripts/near_duplicates.py"
