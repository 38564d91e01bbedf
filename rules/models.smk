rule base_model:
    input:
        train=model_source_input,
    output:
        f"{RESULTS}/models/{{model}}/manifest.json",
    params:
        model=lambda wc: config["models"][wc.model],
    log:
        f"{LOGS}/base_model/{{model}}.log",
    resources:
        gpu=0,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/base_model.py"
