rule augment_train:
    input:
        train=f"{RESULTS}/data/train.jsonl",
        protected=config["augmentation"].get("protected_terms", "data/protected_terms.txt"),
    output:
        train=f"{RESULTS}/data/train_augmented.jsonl",
        stats=f"{RESULTS}/data/augment_stats.json",
    params:
        augmentation=config["augmentation"],
    log:
        f"{LOGS}/augment_train.log",
    resources:
        gpu=0,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/augment_train.py"
