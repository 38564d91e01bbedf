"""Stage generate: each setting's answers to the test questions, batched, thinking off: the NF4
base with the setting's LoRA adapter (a control: with none), dequantised and merged where that fits
the GPU memory budget with its batch, else as the study ran it, 4-bit with the adapter beside it
(memory_budget.plan_answering); sampled as the study did (each question from its own seed, so
batching changes speed only) or greedy. Each record says whether its answer was cut at
max_new_tokens (hit_token_limit). A stats file gives the job's form, batch size, memory cap, load
and answering times, tokens/s and peak GPU memory for the paper's compute table."""

from huatuo_study.model import gpu_slots

if "snakemake" in globals():  # this job's own GPU(s), taken before torch initialises CUDA
    gpu_slots.take_for_job(snakemake)  # noqa: F821

import time

from huatuo_study.answering.answers import answer_questions, prepare_answering
from huatuo_study.common import log, read_jsonl, run_stage, write_json, write_jsonl
from huatuo_study.model.memory_budget import form_label
from huatuo_study.model.qlora import device_name, peak_gpu_gib


def generate_answers(
    model_manifest, adapter_dir, test, generation, quantization, device, gpu_memory_gib
) -> tuple[list[dict], dict]:
    """The answer records and the job's compute stats."""
    started = time.perf_counter()
    questions = [t["question"] for t in test]
    tokenizer, model, plan = prepare_answering(
        model_manifest, quantization, device, adapter_dir, questions, generation, gpu_memory_gib
    )
    loaded = time.perf_counter()
    answers = answer_questions(
        model, tokenizer, questions, {**generation, "batch_size": plan.batch_size}, [t["id"] for t in test]
    )
    answered = time.perf_counter()
    tokens = sum(a["answer_tokens"] for a in answers)
    stats = {
        "device": device_name(device),
        "form": form_label(plan.form, adapter_dir is not None),
        "batch_size": plan.batch_size,
        "memory_budget_gib": gpu_memory_gib,
        "gpu": gpu_slots.job_gpus(device),  # which of the machine's GPUs (gpu_slots)
        "questions": len(answers),
        "answer_tokens": tokens,
        "load_s": round(loaded - started, 3),
        "generate_s": round(answered - loaded, 3),  # the first call's warm-up (graph capture) included
        "tokens_per_s": round(tokens / (answered - loaded), 1),
        "peak_gpu_gib": peak_gpu_gib(device),
    }
    return [{"id": t["id"], **a, "generation": generation} for t, a in zip(test, answers)], stats


def main(smk):
    p = smk.params
    adapter = smk.input.adapter[0] if smk.input.adapter else None  # none: an untuned control
    records, stats = generate_answers(
        smk.input.model,
        adapter,
        read_jsonl(smk.input.test),
        p.generation,
        p.quantization,
        p.device,
        smk.resources.gpu_memory_gib,
    )
    write_jsonl(smk.output.answers, records)
    write_json(smk.output.stats, stats)
    log.info(
        "Wrote %d answers to %s as %s in batches of %d (%.0f tokens/s)",
        len(records),
        smk.output.answers,
        stats["form"],
        stats["batch_size"],
        stats["tokens_per_s"],
    )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
