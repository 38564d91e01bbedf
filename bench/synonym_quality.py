"""How much, and how well, the offline synonym method (scripts/huatuo_study/data/augment_synonym.py) rewrites real
Huatuo26M-Lite questions.

Two tables. First, every question of the file is tried, with the record id its position (0-based,
among the rows whose question is a string) and the given seed: questions, share changed, words
replaced, mean per changed question. Second, the augmentation stage's own selection
(augment_train.synonym_selection) on the training rows as the study draws them (split_data's
functions with --splits-config's `splits:`, by default config/gpu-proof.yaml's 400 rows, seed 42):
training rows, target, pool of rewritable questions, augmented, share reached.

Then a seeded sample of --sample replacements (word, synonym, POS, ~12 characters of context on
each side of the word's first occurrence) is written as TSV to --out, for checking by hand: by
default among the replacements of the questions the stage augments (--sample-from stage), with
--sample-seed. The context holds data text: keep that file out of the repository (the TSVs in
bench/ carry only the word pairs and the verdicts).

    python bench/synonym_quality.py            # ../shared/data/huatuo26m_lite_sample500.jsonl
    python bench/synonym_quality.py --sample-from all --sample-seed 42   # bench/synonym_check.tsv's sample
    python bench/synonym_quality.py --data data/demo/huatuo_lite_demo.jsonl --splits-config config/demo.yaml \
        --out /tmp/demo.tsv
"""

import argparse
import random
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

CONTEXT = 12  # characters of context on each side of a sampled replacement
# Our choice: any seed other than 42, the one that drew bench/synonym_check.tsv's sample.
SAMPLE_SEED = 2026


def context(question: str, word: str, synonym: str, width: int = CONTEXT) -> str:
    """~width characters either side of the word's first occurrence, the word marked [word→synonym]."""
    i = question.find(word)
    left = question[max(0, i - width) : i]
    right = question[i + len(word) : i + len(word) + width]
    return " ".join(f"{left}[{word}→{synonym}]{right}".split())  # one line: no tabs or newlines


def study_train_rows(data: str, splits: dict) -> list[dict]:
    """The training rows the pipeline's split stage draws from `data` with the config's `splits:`."""
    from split_data import clean_rows, split_rows

    rows, _ = clean_rows(data, splits["filters"], splits["skip_bad_rows"])
    return split_rows(
        rows, splits["seed"], splits.get("val_fraction"), splits.get("heldout_fraction"), splits.get("sizes")
    )[0]


def print_table(title: str, table: list[tuple[str, str]]) -> None:
    print(f"{title}\n| measure | value |\n| --- | --- |")
    for name, value in table:
        print(f"| {name} | {value} |")


def main() -> None:
    from augment_train import synonym_selection, target_count
    from huatuo_study.common import read_jsonl
    from huatuo_study.data import augment_synonym as S

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "huatuo26m_lite_sample500.jsonl"))
    ap.add_argument("--protected", default=str(REPO / "data" / "protected_terms.txt"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-words", type=int, default=S.DEFAULT_MAX_WORDS)
    ap.add_argument("--min-word-freq", type=int, default=S.DEFAULT_MIN_WORD_FREQ)
    ap.add_argument("--ratio", type=float, default=0.3)  # the study's share (report §3.3)
    ap.add_argument("--splits-config", default=str(REPO / "config" / "gpu-proof.yaml"))
    ap.add_argument("--sample", type=int, default=50)
    ap.add_argument("--sample-from", choices=["stage", "all"], default="stage")
    ap.add_argument("--sample-seed", type=int, default=SAMPLE_SEED)
    ap.add_argument("--out", default="/tmp/synonym_sample.tsv")
    args = ap.parse_args()

    rows = [row for row in read_jsonl(args.data) if isinstance(row.get("question"), str)]
    rewriter = S.SynonymRewriter(
        {"max_words_per_question": args.max_words, "min_word_freq": args.min_word_freq}, args.protected
    )
    changed, replacements = 0, []  # (row, question, replacement dict), row order then question order
    for i, row in enumerate(rows):
        new_q, replaced = rewriter.rewrite(str(i), row["question"], args.seed)
        changed += new_q != row["question"]
        replacements.extend((i, row["question"], r) for r in replaced)

    n = len(rows)
    print_table(
        f"synonym method on {args.data}, every question tried (seed {args.seed}, max {args.max_words} "
        f"words, min freq {args.min_word_freq})",
        [
            ("questions", f"{n}"),
            ("changed (every question tried)", f"{changed} ({changed / n:.1%})" if n else "0"),
            ("words replaced", f"{len(replacements)}"),
            ("mean words per changed question", f"{len(replacements) / changed:.2f}" if changed else "-"),
            ("distinct (word, synonym) pairs", f"{len({(r['word'], r['synonym']) for *_, r in replacements})}"),
        ],
    )

    splits = yaml.safe_load(Path(args.splits_config).read_text(encoding="utf-8"))["splits"]
    train = study_train_rows(args.data, splits)
    cfg = {"ratio": args.ratio, "seed": args.seed}
    positions, _, stats = synonym_selection(train, cfg, rewriter)
    share = len(positions) / len(train)
    print_table(
        f"\nthe stage's selection on the training rows ({args.splits_config}'s splits, ratio {args.ratio})",
        [
            ("training rows", f"{len(train)}"),
            ("target (ratio x rows)", f"{target_count(len(train), args.ratio)}"),
            ("rewritable (pool)", f"{stats['n_pool']} ({stats['n_pool'] / len(train):.1%})"),
            ("augmented", f"{len(positions)}"),
            ("share reached", f"{share:.3f}"),
            ("words replaced", f"{stats['words_replaced']}"),
        ],
    )
    if args.sample_from == "stage":
        # The same calls as the stage's: the replacements of the questions it augments, by record id.
        replacements = [
            (train[p]["id"], train[p]["question"], r)
            for p in positions
            for r in rewriter.rewrite(str(train[p]["id"]), train[p]["question"], args.seed)[1]
        ]

    k = min(args.sample, len(replacements))
    sample = [replacements[j] for j in sorted(random.Random(args.sample_seed).sample(range(len(replacements)), k))]
    lines = ["row\tword\tsynonym\tpos\tcontext"]  # row: the record id (stage) or the position (all)
    for row, question, r in sample:
        lines.append(f"{row}\t{r['word']}\t{r['synonym']}\t{r['pos']}\t{context(question, r['word'], r['synonym'])}")
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{k} replacements sampled from {args.sample_from} with seed {args.sample_seed}, with context: {args.out}")


if __name__ == "__main__":
    main()
