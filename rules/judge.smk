rule judge_pairwise:
    input:
        test=f"{RESULTS}/data/test.jsonl",
        baseline=f"{RESULTS}/baseline/answers.jsonl",
        answers=f"{RESULTS}/generations/{{setting}}.jsonl",
        prompt=JUDGE_PROMPT,
    output:
        verdicts=f"{RESULTS}/verdicts/{{setting}}.jsonl",
    log:
        f"{LOGS}/judge_pairwise/{{setting}}.log",
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        # Prices only feed the table's cost estimate: changing them reruns the table alone.
        judge={k: v for k, v in config["judge"].items() if k != "price_per_million"},
        setting=lambda wc: wc.setting,
        cache_dir=config["judge"].get("cache_dir") or f"{RESULTS}/judge_cache",
    script:
        "../scripts/judge_pairwise.py"
