rule train_adapter:
    input:
        model=setting_model,
        train=train_split,
        val=f"{RESULTS}/data/val.jsonl",
    output:
        **tensorboard_output(),
        adapter=directory(f"{RESULTS}/adapters/{{setting}}/rep{{replicate}}"),
        loss=f"{RESULTS}/losses/{{setting}}/rep{{replicate}}.csv",
        # Steps, runtime and the device it trained on: the paper's provenance reads them.
        stats=f"{RESULTS}/train_stats/{{setting}}/rep{{replicate}}.json",
    log:
        f"{LOGS}/train_adapter/{{setting}}/rep{{replicate}}.log",
    benchmark:
        f"{BENCHMARKS}/train_adapter/{{setting}}/rep{{replicate}}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        # One GPU per process: more than one trains data-parallel (scripts/train_adapter.py, launch).
        gpu=config["training_processes"],
        mem_mb=gpu_job_resource("train", "mem_mb"),
        runtime=gpu_job_resource("train", "runtime"),
        # The card's memory sets how fast the recipe runs, never what it learns: a resource, not a
        # param, so a run on another card reruns nothing.
        gpu_memory_gib=config["gpu_memory_gib"],
    params:
        setting=setting_params,
        quantization=config["quantization"],
        device=config["device"],
        # Checkpoints live outside the output, so a killed job's are kept and resumed from.
        checkpoints=lambda wc: f"{RESULTS}/checkpoints/{wc.setting}/rep{wc.replicate}",
    script:
        "../scripts/train_adapter.py"
