# The paper: the run's files read into one context.json, rendered into paper.tex and the report's
# HTML tables, and compiled with the figures (rules/figures.smk) into paper.pdf.
rule paper_context:
    input:
        # The headline: the first test set, by the primary judge; every table of every test set
        # and judge beside it.
        winrate=f"{RESULTS}/tables/{HEADLINE}/primary/winrate.json",
        pairwise=f"{RESULTS}/tables/{HEADLINE}/primary/pairwise.csv",
        winrates=tables_of("winrate.json"),
        claims=tables_of("claims.json"),
        calibration=f"{RESULTS}/tables/calibration.csv",
        ranking=f"{RESULTS}/tables/{HEADLINE}/primary/ranking.json",
        agreement=f"{RESULTS}/tables/judge_agreement.csv",
        human_agreement=human_agreement_input(),
        fidelity=f"{RESULTS}/tables/fidelity.csv",
        compute=f"{RESULTS}/tables/compute.csv",
        split_stats=f"{RESULTS}/data/split_stats.json",
        augment_stats=augment_stats_input(),
        raw=f"{RESULTS}/data/raw.jsonl",
        tests=expand(f"{RESULTS}/data/test/{{test_set}}.jsonl", test_set=TEST_SETS),
        near_duplicates=expand(
            f"{RESULTS}/data/near_duplicates/{{test_set}}.json", test_set=TEST_SETS
        ),
        baseline=f"{RESULTS}/baseline/{HEADLINE}.jsonl",
        # Truncated answers (every replicate) and the case study (the first) on the headline set.
        generations=runs_of(
            f"{RESULTS}/generations/{HEADLINE}/{{setting}}/rep{{replicate}}.jsonl"
        ),
        # Provenance: the training devices and dates, and the models' resolved revisions.
        train_stats=runs_of(
            f"{RESULTS}/train_stats/{{setting}}/rep{{replicate}}.json",
            settings=TRAINED,
        ),
        models=expand(
            f"{RESULTS}/models/{{model}}/manifest.json", model=answering_models()
        ),
        judge_prompt=JUDGE_PROMPT,
    output:
        context=f"{PAPER}/context.json",
    log:
        f"{LOGS}/paper_context.log",
    benchmark:
        f"{BENCHMARKS}/paper_context.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        config=RUN_CONFIG,
        figures=FIGURES,
        test_sets=TEST_SETS,
        judges=list(JUDGES),
        trained=TRAINED,
        secret_envs=SECRET_ENVS,
    script:
        "../scripts/paper_context.py"


rule render_tex:
    input:
        context=f"{PAPER}/context.json",
        template="paper/paper.tex.j2",
    output:
        tex=f"{PAPER}/paper.tex",
    log:
        f"{LOGS}/render_tex.log",
    benchmark:
        f"{BENCHMARKS}/render_tex.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        secret_envs=SECRET_ENVS,
    script:
        "../scripts/render_tex.py"


rule report_tables:
    input:
        context=f"{PAPER}/context.json",
    output:
        table=report(
            f"{PAPER}/table1.html",
            caption="../paper/report/table1.rst",
            category="Tables",
        ),
        lengths_table=report(
            f"{PAPER}/answer_lengths.html",
            caption="../paper/report/answer_lengths_table.rst",
            category="Tables",
        ),
        pairwise_table=report(
            f"{PAPER}/pairwise.html",
            caption="../paper/report/pairwise.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/report_tables.log",
    benchmark:
        f"{BENCHMARKS}/report_tables.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        secret_envs=SECRET_ENVS,
    script:
        "../scripts/report_tables.py"


# latexmk and xelatex come from Debian, not from the conda env (preflight_checks looks for them).
# Built in a temporary folder and only paper.pdf moved into place, so a LaTeX error leaves no PDF;
# xelatex's messages are in the log, its '!' error lines also on stderr.
rule paper_pdf:
    input:
        tex=f"{PAPER}/paper.tex",
        figures=expand(f"{PAPER}/{{name}}", name=FIGURES.values()),
    output:
        pdf=report(
            f"{PAPER}/paper.pdf",
            caption="../paper/report/paper.rst",
            category="Paper",
        ),
    log:
        f"{LOGS}/paper_pdf.log",
    benchmark:
        f"{BENCHMARKS}/paper_pdf.tsv"
    conda:
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        timeout_s=300,
    shell:
        """
        build=$(mktemp -d)
        trap 'rm -rf "$build"' EXIT
        cp {input.tex:q} {input.figures:q} "$build"
        if ! (cd "$build" && timeout {params.timeout_s} latexmk -xelatex -interaction=nonstopmode -halt-on-error paper.tex) >{log:q} 2>&1; then
            echo "xelatex failed on paper.tex (log: {log}):" >&2
            grep -A2 '^!' {log:q} >&2 || tail -n 20 {log:q} >&2
            exit 1
        fi
        mv "$build/paper.pdf" {output.pdf:q}
        """
