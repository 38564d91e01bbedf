rule baseline_answers:
    input:
        test=f"{RESULTS}/data/test/{{test_set}}.jsonl",
        model=baseline_model_input,
    output:
        f"{RESULTS}/baseline/{{test_set}}.jsonl",
    log:
        f"{LOGS}/baseline_answers/{{test_set}}.log",
    benchmark:
        f"{BENCHMARKS}/baseline_answers/{{test_set}}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        gpu=lambda wc: int(
            config["test_sets"][wc.test_set]["baseline"]["source"] == "model"
        ),
        gpu_memory_gib=config["gpu_memory_gib"],
    params:
        baseline=lambda wc: config["test_sets"][wc.test_set]["baseline"],
        generation=config["generation"],
        quantization=config["quantization"],
        device=config["device"],
        section=lambda wc: f"test_sets.{wc.test_set}.baseline",
        cache_dir=lambda wc: api_cache_dir(
            config["test_sets"][wc.test_set]["baseline"], "baseline_cache"
        ),
    script:
        "../scripts/baseline_answers.py"
