"""Stage baseline answers: what each setting is compared with. From the course file (ChatGPT's
answers), from an OpenAI-compatible chat model, or from a local model (e.g. the untuned base)."""


import os

from tqdm.auto import tqdm

from common import PipelineError, chat_prompt, log, read_jsonl, run_stage, write_jsonl


def answers_from_file(test: list[dict]) -> list[str]:
    missing = [t["id"] for t in test if not t.get("baseline_answer")]
    if missing:
        raise PipelineError(f"baseline.source: 'file' but test questions {missing[:5]} carry no baseline answer")
    return [t["baseline_answer"] for t in test]


def answers_from_openai(test: list[dict], baseline: dict) -> list[str]:
    from openai import OpenAI

    env = baseline.get("api_key_env", "OPENAI_API_KEY")
    if not os.environ.get(env):
        raise PipelineError(f"baseline.api_key_env: environment variable {env} is not set")
    client = OpenAI(base_url=baseline.get("base_url"), api_key=os.environ[env])
    answers = []
    for t in tqdm(test, desc="baseline answers", unit="question"):
        reply = client.chat.completions.create(
            model=baseline["model"], messages=chat_prompt(t["question"]),
            temperature=baseline.get("temperature", 0.0), max_tokens=baseline.get("max_tokens", 1024),
        )
        answers.append(reply.choices[0].message.content or "")
    return answers


def answers_from_model(test: list[dict], manifest: str, generation: dict, quantization: dict, device: str) -> list[str]:
    from qlora import answer_questions, load_generation_model, load_tokenizer  # torch only where needed

    model = load_generation_model(manifest, quantization, device)
    return [a["answer"] for a in answer_questions(model, load_tokenizer(manifest), [t["question"] for t in test], generation)]


def main(smk):
    p, test = smk.params, read_jsonl(smk.input.test)
    source = p.baseline["source"]
    if source == "file":
        answers = answers_from_file(test)
    elif source == "openai":
        answers = answers_from_openai(test, p.baseline)
    else:
        answers = answers_from_model(test, smk.input.model[0], p.generation, p.quantization, p.device)
    write_jsonl(smk.output[0], (
        {"id": t["id"], "question": t["question"], "answer": a, "source": source, "model": p.baseline.get("model")}
        for t, a in zip(test, answers)
    ))
    log.info("Wrote %d baseline answers (%s)", len(answers), source)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
