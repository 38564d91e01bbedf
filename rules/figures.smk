# The paper's figures, one rule each, so that a figure reruns only when its table or its program
# changes (and the PDF after it).
rule figure_loss_curves:
    input:
        losses=runs_of(
            f"{RESULTS}/losses/{{setting}}/rep{{replicate}}.csv", settings=TRAINED
        ),
    output:
        figure=report(
            f"{PAPER}/{FIGURES['loss']}",
            caption="../paper/report/loss_curves.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/figure_loss_curves.log",
    benchmark:
        f"{BENCHMARKS}/figure_loss_curves.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        numbers=trained_numbers(),
        replicates=config["replicates"],
    script:
        "../scripts/figure_loss_curves.py"


rule figure_win_rates:
    input:
        winrate=f"{RESULTS}/tables/{HEADLINE}/primary/winrate.json",
    output:
        figure=report(
            f"{PAPER}/{FIGURES['winrate']}",
            caption="../paper/report/win_rates.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/figure_win_rates.log",
    benchmark:
        f"{BENCHMARKS}/figure_win_rates.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    script:
        "../scripts/figure_win_rates.py"


rule figure_answer_lengths:
    input:
        winrate=f"{RESULTS}/tables/{HEADLINE}/primary/winrate.json",
    output:
        figure=report(
            f"{PAPER}/{FIGURES['lengths']}",
            caption="../paper/report/answer_lengths.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/figure_answer_lengths.log",
    benchmark:
        f"{BENCHMARKS}/figure_answer_lengths.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    script:
        "../scripts/figure_answer_lengths.py"


rule figure_ranking:
    input:
        ranking=f"{RESULTS}/tables/{HEADLINE}/primary/ranking.json",
    output:
        figure=report(
            f"{PAPER}/{FIGURES['ranking']}",
            caption="../paper/report/ranking.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/figure_ranking.log",
    benchmark:
        f"{BENCHMARKS}/figure_ranking.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        # The paper's numbers of the settings (its labels); titles come with the table.
        numbers={s: k for k, s in enumerate(SETTINGS, 1)},
    script:
        "../scripts/figure_ranking.py"
