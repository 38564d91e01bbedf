rule base_model:
    input:
        train=model_source_input,
    output:
        f"{RESULTS}/models/{{model}}/manifest.json",
    log:
        f"{LOGS}/base_model/{{model}}.log",
    benchmark:
        f"{BENCHMARKS}/base_model/{{model}}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        # A model of a published shape is built where it runs: initialising ~15B weights takes
        # seconds on the GPU and minutes in the job's one CPU thread.
        gpu=lambda wc: int(
            config["models"][wc.model]["source"] == "build"
            and config["device"] == "cuda"
        ),
    params:
        model=lambda wc: config["models"][wc.model],
        device=config["device"],
    script:
        "../scripts/base_model.py"
