rule augment_train:
    input:
        train=f"{RESULTS}/data/train.jsonl",
        protected=augmentation_protected_terms(),
    output:
        train=f"{RESULTS}/data/train_augmented.jsonl",
        stats=f"{RESULTS}/data/augment_stats.json",
    log:
        f"{LOGS}/augment_train.log",
    benchmark:
        f"{BENCHMARKS}/augment_train.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        gpu=0,
    params:
        augmentation=augmentation_params(),
        cache_dir=api_cache_dir(config["augmentation"].get("llm"), "augment_cache"),
    script:
        "../scripts/augment_train.py"
