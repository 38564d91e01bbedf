"""Loading a base model the QLoRA way (4-bit NF4, double quantisation, bf16/fp32 compute), and the
form it answers in: shared by training, generation, merging and the model baseline."""

import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from huatuo_study.common import PipelineError, log, read_json
from huatuo_study.model.memory_budget import MERGED


def check_device(device: str) -> None:
    """Stop before loading anything when a CUDA config runs where no GPU is visible."""
    if device == "cuda" and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        raise PipelineError(
            f"device: 'cuda' but no CUDA GPU is visible here (CUDA_VISIBLE_DEVICES={visible}, "
            f"torch {torch.__version__}); run on a GPU node or set device: cpu"
        )


def local_rank() -> int:
    """This process's place among the data-parallel processes of a job on one node (torchrun's
    LOCAL_RANK), 0 where it is the only one: the index of its GPU among the job's."""
    return int(os.environ.get("LOCAL_RANK", 0))


def device_name(device: str) -> str:
    """The card a job ran on (the model sits on the process's GPU when device is cuda), or "cpu"."""
    return torch.cuda.get_device_name(local_rank()) if device == "cuda" else "cpu"


def peak_gpu_gib(device: str) -> float | None:
    """The most GPU memory this process's tensors held, in GiB (None on the CPU)."""
    return round(torch.cuda.max_memory_allocated(local_rank()) / 2**30, 2) if device == "cuda" else None


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
    """The base model in 4-bit NF4 on `device`, as the study loads it for training and answering; on
    CUDA one copy per process, on the process's own GPU."""
    check_device(device)
    manifest = read_json(manifest_path)
    log.info(
        "Loading %s (revision %s) in 4-bit %s on %s",
        manifest["path"],
        manifest.get("revision"),
        quantization["quant_type"],
        device,
    )
    return AutoModelForCausalLM.from_pretrained(
        manifest["path"],
        revision=manifest.get("revision"),
        quantization_config=bnb_config(quantization),
        dtype=getattr(torch, quantization["compute_dtype"]),
        device_map={"": local_rank() if device == "cuda" else "cpu"},
    )


def answering_model(base, adapter_dir: str | None, form: str):
    """The model that answers, from the NF4 base: MERGED dequantises it once to the compute dtype
    and merges the adapter (if any) into it, so each weight is exactly what the 4-bit path
    dequantises in every matmul but decoding runs as a plain dense model, several times faster
    (bench/RESULTS.md), at the memory of the unquantised model; FOUR_BIT keeps the study's own form,
    the 4-bit base with the adapter beside it."""
    from peft import PeftModel

    model = base.dequantize() if form == MERGED else base
    if adapter_dir:
        model = PeftModel.from_pretrained(model, adapter_dir)
        model = model.merge_and_unload() if form == MERGED else model
    return model.eval()


def load_generation_model(manifest_path: str, quantization: dict, device: str, adapter_dir: str | None = None):
    """The NF4 base dequantised with the adapter merged: the form a merged export takes."""
    return answering_model(load_quantized_model(manifest_path, quantization, device), adapter_dir, MERGED)
