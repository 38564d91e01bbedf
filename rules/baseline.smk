rule baseline_answers:
    input:
        test=f"{RESULTS}/data/test.jsonl",
        model=lambda wc: (
            [f"{RESULTS}/models/{config['baseline']['model']}/manifest.json"]
            if config["baseline"]["source"] == "model"
            else []
        ),
    output:
        f"{RESULTS}/baseline/answers.jsonl",
    log:
        f"{LOGS}/baseline_answers.log",
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1 if config["baseline"]["source"] == "model" else 0,
    params:
        baseline=config["baseline"],
        generation=config["generation"],
        quantization=config["quantization"],
        device=config["device"],
        cache_dir=api_cache_dir(config["baseline"], "baseline_cache"),
    script:
        "../scripts/baseline_answers.py"
