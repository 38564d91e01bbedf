# Every replicate's answers against the test set's baseline, by each judge (the primary and the panel).
rule judge_pairwise:
    input:
        test=f"{RESULTS}/data/test/{{test_set}}.jsonl",
        baseline=f"{RESULTS}/baseline/{{test_set}}.jsonl",
        answers=f"{RESULTS}/generations/{{test_set}}/{{setting}}/rep{{replicate}}.jsonl",
        prompt=JUDGE_PROMPT,
    output:
        verdicts=f"{RESULTS}/verdicts/{{test_set}}/{{judge}}/{{setting}}/rep{{replicate}}.jsonl",
    log:
        f"{LOGS}/judge_pairwise/{{test_set}}/{{judge}}/{{setting}}/rep{{replicate}}.log",
    benchmark:
        f"{BENCHMARKS}/judge_pairwise/{{test_set}}/{{judge}}/{{setting}}/rep{{replicate}}.tsv"
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        # Prices only feed the table's cost estimate: changing them reruns the table alone.
        judge=lambda wc: {
            k: v for k, v in JUDGES[wc.judge].items() if k != "price_per_million"
        },
        setting=lambda wc: wc.setting,
        section=lambda wc: run_plan.judge_key(wc.judge),
        cache_dir=lambda wc: JUDGES[wc.judge]["cache_dir"] or f"{RESULTS}/judge_cache",
    script:
        "../scripts/judge_pairwise.py"
