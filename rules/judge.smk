rule judge_pairwise:
    input:
        test=f"{RESULTS}/data/test.jsonl",
        baseline=f"{RESULTS}/baseline/answers.jsonl",
        answers=f"{RESULTS}/generations/{{setting}}.jsonl",
    output:
        verdicts=f"{RESULTS}/verdicts/{{setting}}.jsonl",
    log:
        f"{LOGS}/judge_pairwise/{{setting}}.log",
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        judge=config["judge"],
        setting=lambda wc: wc.setting,
    script:
        "../scripts/judge_pairwise.py"
