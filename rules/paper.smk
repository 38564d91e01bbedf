rule render_paper:
    input:
        winrate=f"{RESULTS}/tables/winrate.json",
        pairwise=f"{RESULTS}/tables/pairwise.csv",
        fidelity=f"{RESULTS}/tables/fidelity.csv",
        losses=expand(f"{RESULTS}/losses/{{setting}}.csv", setting=SETTINGS),
        split_stats=f"{RESULTS}/data/split_stats.json",
        augment_stats=augment_stats_input(),
        raw=f"{RESULTS}/data/raw.jsonl",
        test=f"{RESULTS}/data/test.jsonl",
        baseline=f"{RESULTS}/baseline/answers.jsonl",
        generations=expand(f"{RESULTS}/generations/{{setting}}.jsonl", setting=SETTINGS),
        # Provenance: the models' resolved revisions.
        models=expand(
            f"{RESULTS}/models/{{model}}/manifest.json",
            model=sorted({s["model"] for s in config["settings"].values()}),
        ),
        judge_prompt=JUDGE_PROMPT,
        template="paper/paper.tex.j2",
    output:
        tex=f"{RESULTS}/paper/paper.tex",
        pdf=report(
            f"{RESULTS}/paper/paper.pdf",
            caption="../paper/report/paper.rst",
            category="Paper",
        ),
        loss_figure=report(
            f"{RESULTS}/paper/loss_curves.pdf",
            caption="../paper/report/loss_curves.rst",
            category="Figures",
        ),
        winrate_figure=report(
            f"{RESULTS}/paper/win_rates.pdf",
            caption="../paper/report/win_rates.rst",
            category="Figures",
        ),
        length_figure=report(
            f"{RESULTS}/paper/answer_lengths.pdf",
            caption="../paper/report/answer_lengths.rst",
            category="Figures",
        ),
        table=report(
            f"{RESULTS}/paper/table1.html",
            caption="../paper/report/table1.rst",
            category="Tables",
        ),
        lengths_table=report(
            f"{RESULTS}/paper/answer_lengths.html",
            caption="../paper/report/answer_lengths_table.rst",
            category="Tables",
        ),
        pairwise_table=report(
            f"{RESULTS}/paper/pairwise.html",
            caption="../paper/report/pairwise.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/render_paper.log",
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        config=RUN_CONFIG,
        # Read for the training device only; the generations already depend on the adapters.
        adapters=expand(f"{RESULTS}/adapters/{{setting}}", setting=SETTINGS),
    script:
        "../scripts/render_paper.py"
