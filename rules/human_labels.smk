# Judges checked against people: a blind labelling sheet of a seeded sample of answer pairs (always
# written), and, once a filled sheet is configured (human_labels), each judge's agreement with it.
rule human_label_sheet:
    input:
        # Per test set, then setting and replicate; the baselines per test set.
        answers=[
            a
            for t in TEST_SETS
            for a in runs_of(
                f"{RESULTS}/generations/{{test_set}}/{{setting}}/rep{{replicate}}.jsonl",
                test_set=t,
            )
        ],
        baselines=expand(f"{RESULTS}/baseline/{{test_set}}.jsonl", test_set=TEST_SETS),
        template="scripts/templates/label_sheet.html.j2",
    output:
        csv=f"{RESULTS}/human_labels/sheet/sheet.csv",
        html=f"{RESULTS}/human_labels/sheet/sheet.html",
        key=f"{RESULTS}/human_labels/key.csv",
    log:
        f"{LOGS}/human_label_sheet.log",
    benchmark:
        f"{BENCHMARKS}/human_label_sheet.tsv"
    conda:
        # Jinja2 for the form.
        "../envs/paper.yaml"
    resources:
        gpu=0,
    params:
        run=config["run"],
        test_sets=TEST_SETS,
        settings=SETTINGS,
        replicates=config["replicates"],
        pairs_per_test_set=config["label_sheet"]["pairs_per_test_set"],
        seed=config["label_sheet"]["seed"],
    script:
        "../scripts/human_label_sheet.py"


rule human_agreement:
    input:
        labels=human_labels_file(),
        key=f"{RESULTS}/human_labels/key.csv",
        verdicts=[verdicts_of(t, j) for t in TEST_SETS for j in JUDGES],
    output:
        labels=f"{RESULTS}/human_labels/labels.csv",
        csv=f"{RESULTS}/tables/human_agreement.csv",
    log:
        f"{LOGS}/human_agreement.log",
    benchmark:
        f"{BENCHMARKS}/human_agreement.tsv"
    conda:
        "../envs/judge.yaml"
    resources:
        gpu=0,
    params:
        test_sets=TEST_SETS,
        judges=list(JUDGES),
        settings=SETTINGS,
        replicates=config["replicates"],
        statistics=statistics_of("n_bootstrap", "seed"),
    script:
        "../scripts/human_agreement.py"
