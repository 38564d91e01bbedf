"""How much, and how well, the offline synonym method (scripts/augment_synonym.py) rewrites real
Huatuo26M-Lite questions.

Every question of the file is tried (not only the stage's seeded 30%), with the record id its
position (0-based, among the rows whose question is a string) and the given seed. Prints a table
(questions, share changed, words replaced, mean per changed question), then writes a
deterministic sample of --sample replacements (word, synonym, POS, ~12 characters of context on
each side of the word's first occurrence) as TSV to --out, for checking by hand. The context
holds data text: keep that file out of the repository (bench/synonym_check.tsv carries only the
word pairs and the verdicts).

    python bench/synonym_quality.py            # ../shared/data/huatuo26m_lite_sample500.jsonl
    python bench/synonym_quality.py --data data/demo/huatuo_lite_demo.jsonl --out /tmp/demo.tsv
"""

import argparse
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

CONTEXT = 12  # characters of context on each side of a sampled replacement


def context(question: str, word: str, synonym: str, width: int = CONTEXT) -> str:
    """~width characters either side of the word's first occurrence, the word marked [word→synonym]."""
    i = question.find(word)
    left = question[max(0, i - width):i]
    right = question[i + len(word):i + len(word) + width]
    return " ".join(f"{left}[{word}→{synonym}]{right}".split())  # one line: no tabs or newlines


def main() -> None:
    import augment_synonym as S
    from common import read_jsonl

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "huatuo26m_lite_sample500.jsonl"))
    ap.add_argument("--protected", default=str(REPO / "data" / "protected_terms.txt"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-words", type=int, default=S.DEFAULT_MAX_WORDS)
    ap.add_argument("--min-word-freq", type=int, default=S.DEFAULT_MIN_WORD_FREQ)
    ap.add_argument("--sample", type=int, default=50)
    ap.add_argument("--out", default="/tmp/synonym_sample.tsv")
    args = ap.parse_args()

    rows = [row for row in read_jsonl(args.data) if isinstance(row.get("question"), str)]
    rewriter = S.SynonymRewriter(
        {"max_words_per_question": args.max_words, "min_word_freq": args.min_word_freq}, args.protected
    )
    changed, replacements = 0, []  # (row, replacement dict), row order then question order
    for i, row in enumerate(rows):
        new_q, replaced = rewriter.rewrite(str(i), row["question"], args.seed)
        changed += new_q != row["question"]
        replacements.extend((i, r) for r in replaced)

    n = len(rows)
    table = [
        ("questions", f"{n}"),
        ("changed (every question tried)", f"{changed} ({changed / n:.1%})" if n else "0"),
        ("words replaced", f"{len(replacements)}"),
        ("mean words per changed question", f"{len(replacements) / changed:.2f}" if changed else "-"),
        ("distinct (word, synonym) pairs", f"{len({(r['word'], r['synonym']) for _, r in replacements})}"),
    ]
    print(f"synonym method on {args.data} (seed {args.seed}, max {args.max_words} words, "
          f"min freq {args.min_word_freq})")
    print("| measure | value |\n| --- | --- |")
    for name, value in table:
        print(f"| {name} | {value} |")

    k = min(args.sample, len(replacements))
    sample = [replacements[j] for j in sorted(random.Random(args.seed).sample(range(len(replacements)), k))]
    lines = ["row\tword\tsynonym\tpos\tcontext"]
    for i, r in sample:
        lines.append(f"{i}\t{r['word']}\t{r['synonym']}\t{r['pos']}\t"
                     f"{context(rows[i]['question'], r['word'], r['synonym'])}")
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{k} sampled replacements with context: {args.out}")


if __name__ == "__main__":
    main()
