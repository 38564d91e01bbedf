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
    log:
        f"{LOGS}/render_paper.log",
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        config={k: v for k, v in config.items() if k != "recipes"},
    script:
        "../scripts/render_paper.py"
