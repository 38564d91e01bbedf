# Each setting's answers, replicate by replicate; a control's base model answers with no adapter.
rule generate_answers:
    input:
        model=setting_model,
        adapter=adapter_input,
        test=f"{RESULTS}/data/test/{{test_set}}.jsonl",
    output:
        answers=f"{RESULTS}/generations/{{test_set}}/{{setting}}/rep{{replicate}}.jsonl",
        # Wall time, tokens/s and peak GPU memory of the answering: the paper's compute table.
        stats=f"{RESULTS}/generation_stats/{{test_set}}/{{setting}}/rep{{replicate}}.json",
    log:
        f"{LOGS}/generate_answers/{{test_set}}/{{setting}}/rep{{replicate}}.log",
    benchmark:
        f"{BENCHMARKS}/generate_answers/{{test_set}}/{{setting}}/rep{{replicate}}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1,
        mem_mb=gpu_job_resource("generate", "mem_mb"),
        runtime=gpu_job_resource("generate", "runtime"),
        # The memory budget sets the answering form and batch, never the answers: a resource.
        gpu_memory_gib=config["gpu_memory_gib"],
    params:
        generation=replicate_generation,
        quantization=config["quantization"],
        device=config["device"],
    script:
        "../scripts/generate_answers.py"
