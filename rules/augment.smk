rule augment_train:
    input:
        train=f"{RESULTS}/data/train.jsonl",
        protected=config["augmentation"].get(
            "protected_terms", "data/protected_terms.txt"
        ),
    output:
        train=f"{RESULTS}/data/train_augmented.jsonl",
        stats=f"{RESULTS}/data/augment_stats.json",
    log:
        f"{LOGS}/augment_train.log",
    conda:
        "../envs/data.yaml"
    resources:
        gpu=0,
    params:
        augmentation=config["augmentation"],
    script:
        "../scripts/augment_train.py"
