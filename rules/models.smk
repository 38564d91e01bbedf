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
        gpu=0,
    params:
        model=lambda wc: config["models"][wc.model],
    script:
        "../scripts/base_model.py"
