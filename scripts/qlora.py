"""Loading a base model the QLoRA way (4-bit NF4, double quantisation, bf16/fp32 compute) and
answering questions with it: shared by training, generation and the model baseline."""


import os

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from common import CHAT_TEMPLATE_KWARGS, PipelineError, chat_prompt, log, read_json


def check_device(device: str) -> None:
    """Stop before loading anything when a CUDA config runs where no GPU is visible."""
    if device == "cuda" and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        raise PipelineError(
            f"device: 'cuda' but no CUDA GPU is visible here (CUDA_VISIBLE_DEVICES={visible}, "
            f"torch {torch.__version__}); run on a GPU node or set device: cpu"
        )


def bnb_config(quantization: dict) -> BitsAndBytesConfig:
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization["quant_type"],
        bnb_4bit_use_double_quant=quantization["double_quant"],
        bnb_4bit_compute_dtype=getattr(torch, quantization["compute_dtype"]),
    )


def load_tokenizer(manifest_path: str):
    manifest = read_json(manifest_path)
    tokenizer = AutoTokenizer.from_pretrained(manifest["path"], revision=manifest.get("revision"))
    tokenizer.padding_side = "right"  # training pads on the right; answer_questions switches to left
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_quantized_model(manifest_path: str, quantization: dict, device: str):
    """The base model in 4-bit NF4 on `device`, as the study loads it for training and answering."""
    check_device(device)
    manifest = read_json(manifest_path)
    log.info("Loading %s (revision %s) in 4-bit %s on %s", manifest["path"], manifest.get("revision"),
             quantization["quant_type"], device)
    return AutoModelForCausalLM.from_pretrained(
        manifest["path"],
        revision=manifest.get("revision"),
        quantization_config=bnb_config(quantization),
        dtype=getattr(torch, quantization["compute_dtype"]),
        device_map={"": 0 if device == "cuda" else "cpu"},
    )


def load_generation_model(manifest_path: str, quantization: dict, device: str, adapter_dir: str | None = None):
    """The model that answers: the NF4 base dequantised once to the compute dtype, with the
    adapter (if any) merged into it. Each weight is then exactly what the 4-bit path dequantises
    in every matmul, but decoding runs as a plain dense model: several times faster than NF4 with
    an unmerged adapter (bench/RESULTS.md), at the memory of the unquantised model."""
    from peft import PeftModel

    model = load_quantized_model(manifest_path, quantization, device).dequantize()
    if adapter_dir:
        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    return model.eval()


# A static KV cache makes generate() compile the decoding step into CUDA graphs: 2,036 against 638
# tokens/s for 20 answers x 256 tokens of a 4B model on an H100, but the compilation costs ~45 s,
# so it pays only from about this many tokens to generate (bench/RESULTS.md).
STATIC_CACHE_FROM_TOKENS = 40_000


def decoding_cache(device_type: str, n_questions: int, max_new_tokens: int) -> str | None:
    if device_type == "cuda" and n_questions * max_new_tokens >= STATIC_CACHE_FROM_TOKENS:
        return "static"
    return None


@torch.inference_mode()
def answer_questions(model, tokenizer, questions: list[str], generation: dict) -> list[dict]:
    """Batched answers (thinking off), with prompt and answer token counts."""
    tokenizer.padding_side = "left"  # decoder-only batches must end on the prompt's last token
    sampling = (
        {"do_sample": True, "temperature": generation.get("temperature", 1.0), "top_p": generation.get("top_p", 1.0)}
        if generation["do_sample"]
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    torch.manual_seed(generation.get("seed", 0))
    model.eval()
    model.generation_config.cache_implementation = decoding_cache(
        model.device.type, len(questions), generation["max_new_tokens"])
    results, batch_size = [], generation.get("batch_size", 8)
    for start in tqdm(range(0, len(questions), batch_size), desc="generating", unit="batch"):
        batch = questions[start : start + batch_size]
        prompts = [
            tokenizer.apply_chat_template(chat_prompt(q), tokenize=False, add_generation_prompt=True,
                                          **CHAT_TEMPLATE_KWARGS)
            for q in batch
        ]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        out = model.generate(
            **enc,
            max_new_tokens=generation["max_new_tokens"],
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        for q, prompt_mask, tokens in zip(batch, enc["attention_mask"], new_tokens):
            n_answer = int((tokens != tokenizer.pad_token_id).sum())
            results.append({
                "question": q,
                "answer": tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                "prompt_tokens": int(prompt_mask.sum()),
                "answer_tokens": n_answer,
            })
    return results
