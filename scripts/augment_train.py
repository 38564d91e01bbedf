"""Stage augmentation: `ratio` of the training questions (exactly round(ratio * n), half up) each
get a rewritten copy, the answer kept, by the configured method:
  llm      the study's: the questions are a seeded sample of all training questions, and an LLM
           rewrites each (augment_llm.py; cached, paid once); a selected question whose rewrite
           fails (no usable reply) stays unaugmented and is counted;
  synonym  offline: every question is tried with strict Cilin synonyms of the same part of speech
           (augment_synonym.py), and the seeded sample is drawn among the questions that have a
           safe replacement (the pool), so that the augmented share is the ratio. Most questions
           have none, so drawing among all (as the study does) would add a fraction of the ratio.
           When the pool is smaller than the target, all of it is augmented and the stats say so.
Answers are never touched.

Inputs:  smk.input.train (JSONL); smk.input.protected (synonym method: protected terms).
Outputs: smk.output.train (originals unchanged, in order, then one `<id>-aug` copy per rewritten
         question, with `augmented_from`), smk.output.stats (JSON: counts, pool, share, examples, usage).
Params:  smk.params.augmentation (the validated config section), smk.params.cache_dir (llm).
"""

# No `from __future__` import: Snakemake prepends a preamble to a `script:`, so it would not be first.
import math
import random

from huatuo_study.common import PipelineError, log, read_jsonl, run_stage, write_json, write_jsonl

N_EXAMPLES = 10
N_REPLACEMENTS_SAMPLE = 50


def target_count(n: int, ratio: float) -> int:
    """round(ratio * n), half up: the number of questions to augment."""
    return min(n, int(ratio * n + 0.5))


def select_positions(n: int, ratio: float, seed: int, pool: list[int] | None = None) -> list[int]:
    """A seeded sample of target_count(n, ratio) positions among `pool` (default: all n), sorted;
    the whole pool when it is smaller than that."""
    pool = range(n) if pool is None else pool
    return sorted(random.Random(seed).sample(pool, min(target_count(n, ratio), len(pool))))


def check_records(records: list[dict]) -> None:
    ids = set()
    for i, record in enumerate(records, 1):
        for field in ("id", "question", "answer"):
            if field not in record:
                raise PipelineError(f"training record {i} has no '{field}' field")
        if not isinstance(record["question"], str):
            raise PipelineError(f"training record {i} (id {record['id']!r}): 'question' is not a string")
        key = str(record["id"])
        if key in ids:
            raise PipelineError(f"training record {i}: duplicate id {record['id']!r}")
        ids.add(key)
    for record in records:
        if f"{record['id']}-aug" in ids:
            raise PipelineError(f"id {record['id']!r}-aug already exists: cannot name the augmented copy")


def synonym_selection(records: list[dict], cfg: dict, rewriter) -> tuple[list[int], list, dict]:
    """(selected positions, their new questions, method stats): every question is tried with the
    rewriter (augment_synonym.SynonymRewriter), and the seeded sample is drawn among those with a
    safe replacement."""
    tried = [rewriter.rewrite(str(r["id"]), r["question"], cfg["seed"]) for r in records]
    pool = [i for i, ((new_q, replaced), r) in enumerate(zip(tried, records)) if replaced and new_q != r["question"]]
    positions = select_positions(len(records), cfg["ratio"], cfg["seed"], pool)
    replacements = [{"id": records[p]["id"], **r} for p in positions for r in tried[p][1]]
    stats = {
        "selection": "among the questions with a safe replacement",
        "n_pool": len(pool),
        "words_replaced": len(replacements),
        "unaugmented_reasons": {},
        "replacements_sample": replacements[:N_REPLACEMENTS_SAMPLE],
    }
    return positions, [tried[p][0] for p in positions], stats


def llm_selection(records: list[dict], cfg: dict, cache_dir: str) -> tuple[list[int], list, dict]:
    """(selected positions, their new questions or None, method stats): the study's seeded sample
    of all questions, each rewritten by the LLM."""
    from huatuo_study.chat_api import cost_usd
    from huatuo_study.data.augment_llm import LLMRewriter

    llm_cfg = cfg["llm"]
    positions = select_positions(len(records), cfg["ratio"], cfg["seed"])
    results = LLMRewriter(llm_cfg, cache_dir).rewrite_all([records[p]["question"] for p in positions])
    calls = [call for result in results for call in result.calls]
    usage = {
        "model": llm_cfg["model"],
        "calls": len(calls),
        "prompt_tokens": sum(c.prompt_tokens for c in calls),
        "completion_tokens": sum(c.completion_tokens for c in calls),
    }
    usage["cost_usd"] = cost_usd(usage["prompt_tokens"], usage["completion_tokens"], llm_cfg.get("price_per_million"))
    reasons: dict[str, int] = {}
    for result in results:
        if result.question is None:
            reasons[result.reason] = reasons.get(result.reason, 0) + 1
    stats = {"selection": "among all questions", "n_pool": len(records), "unaugmented_reasons": reasons, "usage": usage}
    return positions, [r.question for r in results], stats


def augment(records: list[dict], positions: list[int], rewrites: list[str | None]) -> tuple[list[dict], list[dict]]:
    """(originals followed by one copy per rewritten question, examples)."""
    copies, examples = [], []
    for pos, new_q in zip(positions, rewrites):
        if new_q is None:
            continue
        record = records[pos]
        copies.append({**record, "id": f"{record['id']}-aug", "question": new_q, "augmented_from": record["id"]})
        if len(examples) < N_EXAMPLES:
            examples.append({"id": record["id"], "before": record["question"], "after": new_q})
    return list(records) + copies, examples


def main(smk) -> None:
    cfg = smk.params.augmentation
    records = read_jsonl(smk.input.train)
    check_records(records)
    if cfg["method"] == "llm":
        positions, rewrites, method_stats = llm_selection(records, cfg, smk.params.cache_dir)
    else:
        from huatuo_study.data.augment_synonym import SynonymRewriter

        rewriter = SynonymRewriter(cfg["synonym"], smk.input.protected[0])
        positions, rewrites, method_stats = synonym_selection(records, cfg, rewriter)
    out, examples = augment(records, positions, rewrites)
    n_augmented = len(out) - len(records)
    n_target = target_count(len(records), cfg["ratio"])
    stats = {
        "method": cfg["method"],
        "ratio": cfg["ratio"],
        "seed": cfg["seed"],
        "n_train": len(records),
        "n_target": n_target,
        "n_selected": len(positions),
        "n_augmented": n_augmented,
        "n_unaugmented": len(positions) - n_augmented,
        "augmented_share": n_augmented / len(records) if records else math.nan,
        "pool_short": method_stats["n_pool"] < n_target,
        **method_stats,
        "examples": examples,
    }
    write_jsonl(smk.output.train, out)
    from huatuo_study.versions import AUGMENT, versions

    # For the paper's provenance: the packages this method ran with.
    write_json(smk.output.stats, {**stats, "versions": versions(AUGMENT[cfg["method"]])})
    log.info(
        "augmentation (%s): %d of %d training questions selected %s (pool %d, ratio %s, seed %s); "
        "%d rewritten (share %.3f), %d left unaugmented %s",
        cfg["method"],
        len(positions),
        len(records),
        method_stats["selection"],
        method_stats["n_pool"],
        cfg["ratio"],
        cfg["seed"],
        n_augmented,
        stats["augmented_share"],
        len(positions) - n_augmented,
        method_stats["unaugmented_reasons"],
    )
    if stats["pool_short"]:
        log.warning(
            "augmentation: only %d training questions can be rewritten, fewer than the %d the ratio %s asks "
            "for: all of them were augmented",
            method_stats["n_pool"],
            n_target,
            cfg["ratio"],
        )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
