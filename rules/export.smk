# What a run leaves for use elsewhere: a model card beside every adapter (its data, recipe,
# training and this run's evaluation) and, where export.merged is on, the adapter merged into its
# base as a dense Hugging Face model. The merge does not read the card: new verdicts rewrite
# every card, and should not merge every adapter again.
rule model_card:
    input:
        adapter=f"{RESULTS}/adapters/{{setting}}/rep{{replicate}}",
        stats=f"{RESULTS}/train_stats/{{setting}}/rep{{replicate}}.json",
        loss=f"{RESULTS}/losses/{{setting}}/rep{{replicate}}.csv",
        benchmark=f"{BENCHMARKS}/train_adapter/{{setting}}/rep{{replicate}}.tsv",
        model=setting_model,
        train=train_split,
        val=f"{RESULTS}/data/val.jsonl",
        split_stats=f"{RESULTS}/data/split_stats.json",
        augment_stats=lambda wc: (
            augment_stats_input()
            if config["settings"][wc.setting]["data"] == "augmented"
            else []
        ),
        # Per test set and judge, in card_evaluations()'s order.
        ranking=tables_of("ranking.json"),
        claims=tables_of("claims.json"),
        winrate=tables_of("winrate.json"),
        replicates=tables_of("replicates.csv"),
        template="scripts/templates/model_card.md.j2",
    output:
        card=f"{RESULTS}/model_cards/{{setting}}/rep{{replicate}}/README.md",
    log:
        f"{LOGS}/model_card/{{setting}}/rep{{replicate}}.log",
    benchmark:
        f"{BENCHMARKS}/model_card/{{setting}}/rep{{replicate}}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        gpu=0,
    params:
        run=config["run"],
        title=lambda wc: config["settings"][wc.setting].get("title", wc.setting),
        setting=setting_params,
        base_model=lambda wc: config["models"][config["settings"][wc.setting]["model"]],
        data=config["data"],
        quantization=config["quantization"],
        device=config["device"],
        license=config["export"]["license"],
        merged=lambda wc: (
            f"{RESULTS}/merged/{wc.setting}/rep{wc.replicate}"
            if config["export"]["merged"]
            else None
        ),
        evaluations=card_evaluations(),
    script:
        "../scripts/model_card.py"


rule merged_model:
    input:
        model=setting_model,
        adapter=f"{RESULTS}/adapters/{{setting}}/rep{{replicate}}",
    output:
        merged=directory(f"{RESULTS}/merged/{{setting}}/rep{{replicate}}"),
    log:
        f"{LOGS}/merged_model/{{setting}}/rep{{replicate}}.log",
    benchmark:
        f"{BENCHMARKS}/merged_model/{{setting}}/rep{{replicate}}.tsv"
    conda:
        "../envs/train.yaml"
    resources:
        # It loads the base where the answers are made (device), as generate_answers does.
        gpu=1,
        mem_mb=gpu_job_resource("generate", "mem_mb"),
        runtime=gpu_job_resource("generate", "runtime"),
    params:
        quantization=config["quantization"],
        device=config["device"],
    script:
        "../scripts/merge_adapter.py"


# One test set's answers and verdicts in FastChat llm_judge's and AlpacaEval's layouts.
rule interchange:
    input:
        test=f"{RESULTS}/data/test/{{test_set}}.jsonl",
        baseline=f"{RESULTS}/baseline/{{test_set}}.jsonl",
        answers=lambda wc: runs_of(
            f"{RESULTS}/generations/{wc.test_set}/{{setting}}/rep{{replicate}}.jsonl"
        ),
        # Per judge, then setting and replicate.
        verdicts=lambda wc: [v for j in JUDGES for v in verdicts_of(wc.test_set, j)],
    output:
        folder=directory(f"{RESULTS}/interchange/{{test_set}}"),
    log:
        f"{LOGS}/interchange/{{test_set}}.log",
    benchmark:
        f"{BENCHMARKS}/interchange/{{test_set}}.tsv"
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        settings=SETTINGS,
        replicates=config["replicates"],
        judges=list(JUDGES),
    script:
        "../scripts/interchange.py"


# Every test set's answers and the judges' replies, to read side by side in a browser: one static
# page, no server.
rule answer_browser:
    input:
        test=expand(f"{RESULTS}/data/test/{{test_set}}.jsonl", test_set=TEST_SETS),
        baseline=expand(f"{RESULTS}/baseline/{{test_set}}.jsonl", test_set=TEST_SETS),
        # Per test set, then setting and replicate.
        answers=[
            a
            for t in TEST_SETS
            for a in runs_of(
                f"{RESULTS}/generations/{{test_set}}/{{setting}}/rep{{replicate}}.jsonl",
                test_set=t,
            )
        ],
        # Per test set, then judge, then setting and replicate.
        verdicts=[v for t in TEST_SETS for j in JUDGES for v in verdicts_of(t, j)],
        template="scripts/templates/answer_browser.html.j2",
    output:
        html=report(
            f"{RESULTS}/browser.html",
            caption="../paper/report/browser.rst",
            category="Answers",
        ),
    log:
        f"{LOGS}/answer_browser.log",
    benchmark:
        f"{BENCHMARKS}/answer_browser.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        run=config["run"],
        test_sets=TEST_SETS,
        settings=SETTINGS,
        replicates=config["replicates"],
        controls=CONTROLS,
        titles={s: config["settings"][s].get("title", s) for s in SETTINGS},
        judges={j: f"{JUDGES[j]['backend']}: {JUDGES[j]['model']}" for j in JUDGES},
    script:
        "../scripts/answer_browser.py"


# What the first run of this config will cost at most, before it calls anything:
# `snakemake --cores 1 cost_plan` prints the table (no other rule needs it).
rule cost_plan:
    input:
        judge_prompt=JUDGE_PROMPT,
    output:
        csv=f"{RESULTS}/cost_plan.csv",
    log:
        f"{LOGS}/cost_plan.log",
    benchmark:
        f"{BENCHMARKS}/cost_plan.tsv"
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        judges=JUDGES,
        test_sets=config["test_sets"],
        n_settings=len(SETTINGS),
        replicates=config["replicates"],
        max_new_tokens=config["generation"]["max_new_tokens"],
        augmentation=config["augmentation"],
        n_train=config["splits"].get("sizes", {}).get("train"),
    script:
        "../scripts/cost_plan.py"
