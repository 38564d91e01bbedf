"""Stage augmentation: a seeded `ratio` of the training questions (exactly round(ratio * n),
half up) each get a rewritten copy, the answer kept, by the configured method:
  llm      the study's: an LLM rewrites the question (augment_llm.py; cached, paid once);
  synonym  offline: strict Cilin synonyms of the same part of speech (augment_synonym.py).
A selected question whose rewrite fails (no usable reply, no replaceable word) stays
unaugmented and is counted. Answers are never touched.

Inputs:  smk.input.train (JSONL); smk.input.protected (synonym method: protected terms).
Outputs: smk.output.train (originals unchanged, in order, then one `<id>-aug` copy per rewritten
         question, with `augmented_from`), smk.output.stats (JSON: counts, examples, usage).
Params:  smk.params.augmentation (the validated config section), smk.params.cache_dir (llm).
"""

# No `from __future__` import: Snakemake prepends a preamble to a `script:`, so it would not be first.
import math
import random

from common import PipelineError, log, read_jsonl, run_stage, write_json, write_jsonl

N_EXAMPLES = 10
N_REPLACEMENTS_SAMPLE = 50


def select_positions(n: int, ratio: float, seed: int) -> list[int]:
    """A seeded sample of round(ratio * n) record positions (round half up), sorted."""
    k = min(n, int(ratio * n + 0.5))
    return sorted(random.Random(seed).sample(range(n), k))


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


def synonym_rewrites(selected: list[dict], synonym_cfg: dict, protected_path: str, seed: int) -> tuple[list, dict]:
    """(new question or None per record, method stats)."""
    from augment_synonym import SynonymRewriter

    rewriter = SynonymRewriter(synonym_cfg, protected_path)
    questions, replacements = [], []
    for record in selected:
        new_q, replaced = rewriter.rewrite(str(record["id"]), record["question"], seed)
        questions.append(new_q if replaced and new_q != record["question"] else None)
        replacements.extend({"id": record["id"], **r} for r in replaced)
    stats = {
        "words_replaced": len(replacements),
        "unaugmented_reasons": {"no replaceable word": questions.count(None)},
        "replacements_sample": replacements[:N_REPLACEMENTS_SAMPLE],
    }
    return questions, stats


def llm_rewrites(selected: list[dict], llm_cfg: dict, cache_dir: str) -> tuple[list, dict]:
    from augment_llm import LLMRewriter
    from chat_api import cost_usd

    results = LLMRewriter(llm_cfg, cache_dir).rewrite_all([r["question"] for r in selected])
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
    return [r.question for r in results], {"unaugmented_reasons": reasons, "usage": usage}


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
    positions = select_positions(len(records), cfg["ratio"], cfg["seed"])
    selected = [records[pos] for pos in positions]
    if cfg["method"] == "llm":
        rewrites, method_stats = llm_rewrites(selected, cfg["llm"], smk.params.cache_dir)
    else:
        rewrites, method_stats = synonym_rewrites(selected, cfg["synonym"], smk.input.protected[0], cfg["seed"])
    out, examples = augment(records, positions, rewrites)
    n_augmented = len(out) - len(records)
    stats = {
        "method": cfg["method"],
        "ratio": cfg["ratio"],
        "seed": cfg["seed"],
        "n_train": len(records),
        "n_selected": len(selected),
        "n_augmented": n_augmented,
        "n_unaugmented": len(selected) - n_augmented,
        "augmented_share": n_augmented / len(records) if records else math.nan,
        **method_stats,
        "examples": examples,
    }
    write_jsonl(smk.output.train, out)
    from versions import AUGMENT, versions

    # For the paper's provenance: the packages this method ran with.
    write_json(smk.output.stats, {**stats, "versions": versions(AUGMENT[cfg["method"]])})
    log.info("augmentation (%s): %d of %d training questions selected (ratio %s, seed %s); %d rewritten, "
             "%d left unaugmented %s", cfg["method"], len(selected), len(records), cfg["ratio"], cfg["seed"],
             n_augmented, len(selected) - n_augmented, method_stats["unaugmented_reasons"])


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
