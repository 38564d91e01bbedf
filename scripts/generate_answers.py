"""Stage generate: each setting's answers to the test questions: the 4-bit base model with the
setting's LoRA adapter (a control: with none), batched, thinking off; sampled as the study did (each question from its own
seed, so batching changes speed only) or greedy. Each record says whether its answer was cut at
max_new_tokens (hit_token_limit)."""


from common import log, read_jsonl, run_stage, write_jsonl
from qlora import answer_questions, load_generation_model, load_tokenizer


def generate_answers(model_manifest, adapter_dir, test, generation, quantization, device) -> list[dict]:
    tokenizer = load_tokenizer(model_manifest)
    model = load_generation_model(model_manifest, quantization, device, adapter_dir)
    answers = answer_questions(model, tokenizer, [t["question"] for t in test], generation, [t["id"] for t in test])
    return [{"id": t["id"], **a, "generation": generation} for t, a in zip(test, answers)]


def main(smk):
    p = smk.params
    adapter = smk.input.adapter[0] if smk.input.adapter else None  # none: an untuned control
    records = generate_answers(smk.input.model, adapter, read_jsonl(smk.input.test),
                               p.generation, p.quantization, p.device)
    write_jsonl(smk.output[0], records)
    log.info("Wrote %d answers to %s", len(records), smk.output[0])


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
