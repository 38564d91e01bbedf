rule judge_pairwise:
    input:
        test=f"{RESULTS}/data/test.jsonl",
        baseline=f"{RESULTS}/baseline/answers.jsonl",
        answers=f"{RESULTS}/generations/{{setting}}.jsonl",
    output:
        verdicts=f"{RESULTS}/verdicts/{{setting}}.jsonl",
    params:
        judge=config["judge"],
        setting=lambda wc: wc.setting,
    log:
        f"{LOGS}/judge_pairwise/{{setting}}.log",
    resources:
        gpu=0,
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/judge_pairwise.py"
