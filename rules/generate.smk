rule generate_answers:
    input:
        model=setting_model,
        adapter=f"{RESULTS}/adapters/{{setting}}",
        test=f"{RESULTS}/data/test.jsonl",
    output:
        f"{RESULTS}/generations/{{setting}}.jsonl",
    log:
        f"{LOGS}/generate_answers/{{setting}}.log",
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
        mem_mb=gpu_job_resource("generate", "mem_mb"),
        runtime=gpu_job_resource("generate", "runtime"),
    params:
        generation=config["generation"],
        quantization=config["quantization"],
        device=config["device"],
    script:
        "../scripts/generate_answers.py"
