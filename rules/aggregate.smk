rule winrate_table:
    input:
        verdicts=expand(f"{RESULTS}/verdicts/{{setting}}.jsonl", setting=SETTINGS),
        study=STUDY,
    output:
        csv=f"{RESULTS}/tables/winrate.csv",
        json=f"{RESULTS}/tables/winrate.json",
        pairwise=f"{RESULTS}/tables/pairwise.csv",
    log:
        f"{LOGS}/winrate_table.log",
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        settings=[
            {"name": s, "title": config["settings"][s].get("title", s)}
            for s in SETTINGS
        ],
        prices=config["judge"].get("price_per_million"),
        compare_published=compares_with_published(),
    script:
        "../scripts/winrate_table.py"
