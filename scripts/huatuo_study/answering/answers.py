"""Answering questions with a loaded model: the chat prompt, the form and batch the memory budget
allows, one seed per question, and the decoding loop over batches."""

import hashlib

import torch
from tqdm.auto import tqdm
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from huatuo_study.answering.decoding import decode, processors
from huatuo_study.common import CHAT_TEMPLATE_KWARGS, PipelineError, chat_prompt, log
from huatuo_study.model.cuda_speed import bf16_gib
from huatuo_study.model.memory_budget import (
    AnsweringPlan,
    cap_gpu_memory,
    form_label,
    kv_bytes_per_token,
    plan_answering,
)
from huatuo_study.model.qlora import answering_model, load_quantized_model, load_tokenizer


def prompt_ids(tokenizer, question: str) -> list[int]:
    """A question's chat prompt as the model reads it (thinking off)."""
    text = tokenizer.apply_chat_template(
        chat_prompt(question), tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
    )
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def plan_for(base, tokenizer, questions: list[str], generation: dict, gpu_memory_gib: float) -> AnsweringPlan:
    """The answering form and batch size for these questions within the memory budget."""
    dense, loaded = round(bf16_gib(base) * 2**30), base.get_memory_footprint()
    longest = max(len(prompt_ids(tokenizer, q)) for q in questions)
    return plan_answering(
        dense,
        loaded,
        kv_bytes_per_token(base.config),
        longest + generation["max_new_tokens"],
        len(questions),
        gpu_memory_gib,
        generation.get("batch_size", "auto"),
    )


def prepare_answering(
    manifest_path: str,
    quantization: dict,
    device: str,
    adapter_dir: str | None,
    questions: list[str],
    generation: dict,
    gpu_memory_gib: float,
):
    """The tokenizer, the answering model and its plan, the process's GPU memory capped at the
    budget first, so that a job that would not fit the configured card fails here as it would there."""
    cap_gpu_memory(device, gpu_memory_gib)
    tokenizer = load_tokenizer(manifest_path)
    base = load_quantized_model(manifest_path, quantization, device)
    plan = plan_for(base, tokenizer, questions, generation, gpu_memory_gib)
    log.info(
        "Answering %d questions as %s in batches of %d (weights %.1f GiB, %.3f GiB an answer)",
        len(questions),
        form_label(plan.form, adapter_dir is not None),
        plan.batch_size,
        plan.weights_gib,
        plan.kv_gib_per_answer,
    )
    return tokenizer, answering_model(base, adapter_dir, plan.form), plan


def question_seed(seed: int, question_id) -> int:
    """The seed a question samples from: SHA-256 of "<seed>:<id>", stable across processes and
    machines (unlike hash()), in the 63 bits a torch.Generator takes."""
    digest = hashlib.sha256(f"{seed}:{question_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def inherited_top_k(model) -> int | None:
    """The top_k that generate(do_sample=True, temperature=…, top_p=…) applies without being asked:
    the model's generation_config.json's (Qwen3 ships top_k 20), else transformers' default (50)."""
    top_k = model.generation_config.top_k
    return top_k if top_k is not None else GenerationConfig._get_default_generation_params()["top_k"]


class GumbelSampler(LogitsProcessor):
    """Sampling as transformers does it (temperature, then top-k, then top-p, after the standard
    processors such as the repetition penalty), but each row draws its noise from its own
    generator: adding Gumbel noise to the warped logits and taking the argmax (generate's greedy
    step) is an exact sample from their softmax (the Gumbel-max trick). Row i's t-th step uses the
    t-th vocabulary-sized block of its own generator's stream, so its answer depends on its seed
    alone, not on the other rows of the batch nor on its place in it. Finished rows keep drawing
    (their tokens are replaced by padding), so every row advances one block per step."""

    def __init__(
        self,
        seeds: list[int],
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int | None = None,
        device: str | torch.device = "cpu",
    ):
        self.warpers = LogitsProcessorList()
        if temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(float(temperature)))
        if top_k:
            self.warpers.append(TopKLogitsWarper(top_k=int(top_k)))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p=float(top_p)))
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"GumbelSampler has {len(self.generators)} seeds for a batch of {scores.shape[0]}")
        scores = self.warpers(input_ids, scores)
        uniform = torch.stack(
            [torch.rand(scores.shape[-1], generator=g, device=g.device, dtype=torch.float64) for g in self.generators]
        ).to(scores.device)
        gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(torch.float64).tiny)))
        return scores.double() + gumbel  # filtered tokens stay -inf


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends an answer: the generation config's (Qwen3 lists two) and the tokenizer's."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    return sorted(set(ids) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()))


@torch.inference_mode()
def answer_questions(model, tokenizer, questions: list[str], generation: dict, ids: list | None = None) -> list[dict]:
    """Batched answers (thinking off), with prompt and answer token counts and whether the answer
    was cut at max_new_tokens. Sampling (do_sample) draws each question's tokens from its own seed,
    question_seed(generation["seed"], its id) (ids default to the positions), so an answer is the
    same whichever questions share its batch; greedy is generate()'s (decoding.decode)."""
    ids = list(range(len(questions))) if ids is None else list(ids)
    if len(ids) != len(questions):
        raise PipelineError(f"{len(questions)} questions but {len(ids)} ids")
    tokenizer.padding_side = "left"  # decoder-only batches must end on the prompt's last token
    model.eval()
    max_new_tokens, seed = generation["max_new_tokens"], generation["seed"]
    top_k = inherited_top_k(model)
    eos = torch.tensor(eos_token_ids(model, tokenizer), device=model.device)
    results, batch_size = [], generation["batch_size"]
    for start in tqdm(range(0, len(questions), batch_size), desc="generating", unit="batch"):
        batch, batch_ids = questions[start : start + batch_size], ids[start : start + batch_size]
        prompts = [
            tokenizer.apply_chat_template(
                chat_prompt(q), tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
            )
            for q in batch
        ]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        sampler = (
            [
                GumbelSampler(
                    [question_seed(seed, i) for i in batch_ids],
                    generation["temperature"],
                    generation["top_p"],
                    top_k,
                    model.device,
                )
            ]
            if generation["do_sample"]
            else []
        )
        new_tokens = decode(
            model,
            enc["input_ids"],
            enc["attention_mask"],
            max_new_tokens,
            # HF's repetition penalty, then the sampler (if any) warps and draws; greedy without one
            processors(float(generation["repetition_penalty"]), sampler),
            eos,
            tokenizer.pad_token_id,
            cuda_graph=model.device.type == "cuda",
        )
        ended = torch.isin(new_tokens, eos)
        for q, prompt_mask, tokens, row_ended in zip(batch, enc["attention_mask"], new_tokens, ended):
            # after its EOS a row holds only padding, up to the batch's longest answer
            n_answer = int(row_ended.int().argmax()) if row_ended.any() else len(tokens)
            results.append(
                {
                    "question": q,
                    "answer": tokenizer.decode(tokens[:n_answer], skip_special_tokens=True).strip(),
                    "prompt_tokens": int(prompt_mask.sum()),
                    "answer_tokens": n_answer,  # the EOS not counted
                    "hit_token_limit": n_answer >= max_new_tokens,  # max_new_tokens tokens, no EOS: cut off
                }
            )
    return results
