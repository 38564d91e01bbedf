"""Stage baseline answers: what each setting is compared with. From the course file (ChatGPT's
answers), from an OpenAI-compatible chat model, or from a local model (e.g. the untuned base)."""

from huatuo_study.model import gpu_slots

if "snakemake" in globals():  # this job's own GPU(s), taken before torch initialises CUDA
    gpu_slots.take_for_job(snakemake)  # noqa: F821

from huatuo_study.common import PipelineError, chat_prompt, log, read_jsonl, run_stage, write_jsonl


def answers_from_file(test: list[dict]) -> list[str]:
    missing = [t["id"] for t in test if not t.get("baseline_answer")]
    if missing:
        raise PipelineError(f"baseline source 'file', but test questions {missing[:5]} carry no baseline answer")
    return [t["baseline_answer"] for t in test]


def answers_from_openai(test: list[dict], baseline: dict, cache_dir: str, section: str = "baseline") -> list[str]:
    """One answer per question from an OpenAI-compatible chat model, through the cached client;
    `section` names the baseline's config section in errors."""
    from huatuo_study.chat_api import ChatClient

    client = ChatClient(baseline, cache_dir, desc="baseline", section=section)
    return [reply.content for reply in client.ask([chat_prompt(t["question"]) for t in test])]


def answers_from_model(
    test: list[dict], manifest: str, generation: dict, quantization: dict, device: str, gpu_memory_gib: float
) -> list[str]:
    from huatuo_study.answering.answers import answer_questions, prepare_answering  # torch only where needed

    questions = [t["question"] for t in test]
    tokenizer, model, plan = prepare_answering(
        manifest, quantization, device, None, questions, generation, gpu_memory_gib
    )
    answers = answer_questions(
        model, tokenizer, questions, {**generation, "batch_size": plan.batch_size}, [t["id"] for t in test]
    )
    return [a["answer"] for a in answers]


def main(smk):
    p, test = smk.params, read_jsonl(smk.input.test)
    source = p.baseline["source"]
    if source == "file":
        answers = answers_from_file(test)
    elif source == "openai":
        answers = answers_from_openai(test, p.baseline, p.cache_dir, p.section)
    else:
        answers = answers_from_model(
            test, smk.input.model[0], p.generation, p.quantization, p.device, smk.resources.gpu_memory_gib
        )
    write_jsonl(
        smk.output[0],
        (
            {"id": t["id"], "question": t["question"], "answer": a, "source": source, "model": p.baseline.get("model")}
            for t, a in zip(test, answers)
        ),
    )
    log.info("Wrote %d baseline answers (%s)", len(answers), source)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
