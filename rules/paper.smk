rule render_paper:
    input:
        winrate=f"{RESULTS}/tables/winrate.json",
        losses=expand(f"{RESULTS}/losses/{{setting}}.csv", setting=SETTINGS),
        split_stats=f"{RESULTS}/data/split_stats.json",
        test=f"{RESULTS}/data/test.jsonl",
        baseline=f"{RESULTS}/baseline/answers.jsonl",
        generations=expand(f"{RESULTS}/generations/{{setting}}.jsonl", setting=SETTINGS),
        template="paper/paper.tex.j2",
    output:
        tex=f"{RESULTS}/paper/paper.tex",
        figure=f"{RESULTS}/paper/loss_curves.pdf",
    params:
        config={k: v for k, v in config.items() if k != "recipes"},
    log:
        f"{LOGS}/render_paper.log",
    resources:
        gpu=0,
    conda:
        "../envs/paper.yaml"
    script:
        "../scripts/render_paper.py"
