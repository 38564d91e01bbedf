rule winrate_table:
    input:
        verdicts=expand(f"{RESULTS}/verdicts/{{setting}}.jsonl", setting=SETTINGS),
    output:
        csv=f"{RESULTS}/tables/winrate.csv",
        json=f"{RESULTS}/tables/winrate.json",
    params:
        settings=[{"name": s, "title": config["settings"][s].get("title", s)} for s in SETTINGS],
    log:
        f"{LOGS}/winrate_table.log",
    resources:
        gpu=0,
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/winrate_table.py"
