"""Stage leakage: near-duplicate test questions in the training data. The exact check (test_set.py)
misses a question that was reworded a little; here MinHash signatures over character n-grams
(datasketch's LSH) find the candidate pairs among the train and validation rows, and their exact
Jaccard similarity decides. Pairs at or above `threshold` are reported (data/near_duplicates.json:
counts and the closest pairs); one at or above `stop_threshold` stops the run, naming the pair.

Inputs:  smk.input.test, smk.input.train, smk.input.val (JSONL).
Outputs: smk.output[0] (JSON).
Params:  smk.params.leakage = {ngram, num_perm, threshold, stop_threshold, top_k}.
"""

from datasketch import MinHash, MinHashLSH

from huatuo_study.common import PipelineError, log, normalize_text, read_jsonl, run_stage, write_json

MINHASH_SEED = 1  # fixed: the same signatures, so the same candidates, on every run


def shingles(text: str, n: int) -> set[str]:
    """Character n-grams of the normalised text (no punctuation or spaces); a shorter text is one."""
    text = normalize_text(text)
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


def signature(grams: set[str], num_perm: int) -> MinHash:
    sig = MinHash(num_perm=num_perm, seed=MINHASH_SEED)
    for gram in sorted(grams):
        sig.update(gram.encode("utf-8"))
    return sig


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def near_duplicates(test: list[dict], rows_by_split: dict[str, list[dict]], cfg: dict) -> list[dict]:
    """Every (test question, training row) pair whose exact n-gram Jaccard is >= threshold among
    the LSH's candidates, closest first."""
    n, num_perm = cfg["ngram"], cfg["num_perm"]
    lsh = MinHashLSH(threshold=cfg["threshold"], num_perm=num_perm)
    rows, grams = {}, {}
    for split, split_rows in rows_by_split.items():
        for row in split_rows:
            key = f"{split}:{row['id']}"
            rows[key], grams[key] = (split, row), shingles(row["question"], n)
            lsh.insert(key, signature(grams[key], num_perm))
    pairs = []
    for t in test:
        test_grams = shingles(t["question"], n)
        for key in lsh.query(signature(test_grams, num_perm)):
            similarity = jaccard(test_grams, grams[key])
            if similarity >= cfg["threshold"]:
                split, row = rows[key]
                pairs.append(
                    {
                        "test_id": t["id"],
                        "split": split,
                        "id": row["id"],
                        "jaccard": round(similarity, 4),
                        "test_question": t["question"],
                        "question": row["question"],
                    }
                )
    return sorted(pairs, key=lambda p: (-p["jaccard"], str(p["test_id"]), str(p["id"])))


def leakage_report(pairs: list[dict], test: list[dict], rows_by_split: dict[str, list[dict]], cfg: dict) -> dict:
    return {
        **{k: cfg[k] for k in ("ngram", "num_perm", "threshold", "stop_threshold")},
        "n_test": len(test),
        "n_compared": {split: len(rows) for split, rows in rows_by_split.items()},
        "n_pairs": len(pairs),
        "n_test_with_near_duplicate": len({str(p["test_id"]) for p in pairs}),
        "closest": pairs[: cfg["top_k"]],
    }


def check_stop(pairs: list[dict], stop_threshold: float | None) -> None:
    if stop_threshold is None or not pairs or pairs[0]["jaccard"] < stop_threshold:
        return
    p = pairs[0]
    raise PipelineError(
        f"test question {p['test_id']!r} is a near-duplicate of {p['split']} row {p['id']!r} (character "
        f"n-gram Jaccard {p['jaccard']:.2f} >= leakage.stop_threshold {stop_threshold}): "
        f"{p['test_question']!r} ~ {p['question']!r}"
    )


def main(smk) -> None:
    cfg = smk.params.leakage
    test = read_jsonl(smk.input.test)
    rows_by_split = {"train": read_jsonl(smk.input.train), "val": read_jsonl(smk.input.val)}
    pairs = near_duplicates(test, rows_by_split, cfg)
    check_stop(pairs, cfg["stop_threshold"])
    report = leakage_report(pairs, test, rows_by_split, cfg)
    write_json(smk.output[0], report)
    log.info(
        "leakage: %d of %d test questions have a near-duplicate (Jaccard >= %s) among %s rows",
        report["n_test_with_near_duplicate"],
        len(test),
        cfg["threshold"],
        report["n_compared"],
    )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
