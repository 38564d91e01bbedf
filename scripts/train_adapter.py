"""Stage train: one QLoRA adapter per setting. The base model in 4-bit NF4 (bitsandbytes), a LoRA
adapter (peft), TRL's SFTTrainer with the loss on the answer only and the chat template rendered
with thinking off. Checkpoints every `save_steps`; a re-run after a killed job resumes from the
last one. Writes the adapter folder and the per-step train / per-eval validation loss CSV."""


import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import bitsandbytes as bnb
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from common import CHAT_TEMPLATE_KWARGS, atomic_dir, chat_prompt, log, read_jsonl, run_stage, write_json, write_text
from qlora import load_quantized_model, load_tokenizer


def sft_dataset(records: list[dict]) -> Dataset:
    """Conversational prompt-completion rows: TRL masks the prompt, so only the answer is learned."""
    return Dataset.from_list([
        {
            "prompt": chat_prompt(r["question"]),
            "completion": [{"role": "assistant", "content": r["answer"]}],
            "chat_template_kwargs": CHAT_TEMPLATE_KWARGS,
        }
        for r in records
    ])


def lora_config(lora: dict) -> LoraConfig:
    return LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
        target_modules=list(lora["target_modules"]), bias="none", task_type="CAUSAL_LM",
    )


# The largest micro-batch the CUDA path makes of an effective batch (the study's is 16 or 10).
MAX_MICRO_BATCH = 16


def speedups(training: dict, device: str) -> dict:
    """SFTConfig changes that make CUDA training faster without changing what is learned: fewer,
    larger micro-batches. The length-grouped sampler draws groups of batch_size x grad_accum
    examples however they are split, and the loss is normalised by the answer tokens of the whole
    effective batch, so each optimiser step sees the same examples and loss."""
    if device != "cuda":
        return {}
    effective = training["batch_size"] * training["grad_accum"]
    micro = max(d for d in range(1, min(effective, MAX_MICRO_BATCH) + 1) if effective % d == 0)
    micro = max(micro, training["batch_size"])
    return {"per_device_train_batch_size": micro, "gradient_accumulation_steps": effective // micro}


def four_bit(model) -> bool:
    return any(isinstance(p, bnb.nn.Params4bit) for p in model.parameters())


def compiles_layers(args: SFTConfig, model) -> bool:
    """Decoder layers are compiled on CUDA where activations are kept (no gradient checkpointing:
    setting 4) over the dequantised base, where the step is launch-bound: 7,505 instead of 4,450
    tokens/s with Liger's kernels (bench/RESULTS.md). Not over 4-bit matmuls (a compiled 4-bit
    model was slower), not with gradient checkpointing (compiled layers failed at the first step
    on the H100; those settings already run 6-11x stock), not with Liger's kernels (inductor fails
    on Liger's RMSNorm) or a whole-model compile."""
    return not (args.use_cpu or args.gradient_checkpointing or args.use_liger_kernel or args.torch_compile
                or four_bit(model))


def bf16_gib(model) -> float:
    """The model's weights at 2 bytes each (a 4-bit Params4bit packs two weights per byte)."""
    weights = sum(p.numel() * (2 if isinstance(p, bnb.nn.Params4bit) else 1) for p in model.parameters())
    return 2 * weights / 2**30


def dequantise_if_fits(model, memory_gib: float):
    """The frozen NF4 base dequantised once when its bf16 copy takes at most a quarter of the GPU
    memory, the rest left for activations. Each weight is then exactly the tensor bitsandbytes
    dequantises in every forward and backward matmul, so the adapter sees the same function and
    learns the same thing (bench/RESULTS.md: identical losses), without two dequantisation kernels
    and their Python per layer per step. 4B fits a 32 GB card this way; 14B stays 4-bit."""
    size = bf16_gib(model)
    if size > memory_gib / 4:
        return model
    log.info("Dequantising the 4-bit base once for training: %.1f GiB in bf16, within a quarter of %s GiB",
             size, memory_gib)
    return model.dequantize()


def load_base(model_manifest, quantization, device, gpu_memory_gib):
    """The frozen base for training, on CUDA made as fast as its memory budget allows."""
    model = load_quantized_model(model_manifest, quantization, device)
    if device != "cuda":
        return model
    # cuDNN's attention builds an execution plan for every new padded length (~2 ms a call, more
    # than the attention itself on these rows); the flash / memory-efficient kernels need none.
    torch.backends.cuda.enable_cudnn_sdp(False)
    return dequantise_if_fits(model, gpu_memory_gib)


def compile_decoder_layers(model):
    """Each decoder layer compiled by inductor, forward and backward, in place (the adapter's
    state-dict keys stay the same). One compilation serves every layer (same code, the weights are
    inputs) and, with dynamic shapes, every padded length. It fuses the norms, RoPE, SwiGLU and
    LoRA's small ops, whose launches, not the matmuls, bound a step of ~1,600 tokens."""
    for layer in model.get_base_model().model.layers:
        layer.compile(dynamic=True)


def sft_config(training: dict, output_dir: str, device: str, fast: bool = True, **overrides) -> SFTConfig:
    """The study's hyperparameters under current names: transformers 4's warmup_ratio is a
    float warmup_steps below 1, group_by_length is train_sampling_strategy='group_by_length'."""
    args = dict(
        output_dir=output_dir,
        num_train_epochs=training["epochs"],
        per_device_train_batch_size=training["batch_size"],
        per_device_eval_batch_size=training["batch_size"],
        gradient_accumulation_steps=training["grad_accum"],
        learning_rate=training["lr"],
        weight_decay=training["weight_decay"],
        warmup_steps=training["warmup_ratio"],
        lr_scheduler_type=training["scheduler"],
        optim=training["optimizer"],
        bf16=training["bf16"],
        train_sampling_strategy="group_by_length" if training["group_by_length"] else "random",
        gradient_checkpointing=training["gradient_checkpointing"],
        gradient_checkpointing_kwargs={"use_reentrant": False} if training["gradient_checkpointing"] else None,
        eval_strategy="steps",
        eval_steps=training["eval_steps"],
        logging_steps=1,
        save_strategy="steps",
        save_steps=training["save_steps"],
        save_total_limit=2,
        seed=training["seed"],
        max_length=training["max_length"],
        completion_only_loss=True,
        use_cpu=device == "cpu",
        report_to="none",
        dataloader_num_workers=0,
    )
    return SFTConfig(**{**args, **(speedups(training, device) if fast else {}), **overrides})


def build_trainer(model, tokenizer, train_dataset, eval_dataset, setting, device, output_dir, callbacks=(),
                  fast=True, **overrides) -> SFTTrainer:
    trainer = SFTTrainer(
        model=model,
        args=sft_config(setting["training"], output_dir, device, fast, **overrides),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(setting["lora"]),
        callbacks=list(callbacks),
    )
    if fast and compiles_layers(trainer.args, trainer.model):
        compile_decoder_layers(trainer.model)
    return trainer


def execution(trainer) -> dict:
    """How the recipe ran (CUDA changes the split and the kernels, not what is learned), for the record."""
    return {
        "micro_batch": trainer.args.per_device_train_batch_size,
        "grad_accum": trainer.args.gradient_accumulation_steps,
        "compiled_layers": compiles_layers(trainer.args, trainer.model),
        "frozen_base": "4-bit" if four_bit(trainer.model) else "dequantised once from 4-bit",
    }


def run_fingerprint(*parts) -> str:
    """Checkpoints are only resumed by a run with the same setting, data and base model."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, (str, Path)) and Path(part).is_file():
            digest.update(Path(part).read_bytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def loss_rows(log_history: list[dict]) -> list[dict]:
    rows = []
    for entry in log_history:
        for key, split in (("loss", "train"), ("eval_loss", "val")):
            if key in entry:
                rows.append({"step": entry["step"], "epoch": round(entry.get("epoch", 0.0), 4),
                             "split": split, "loss": entry[key]})
    return rows


def loss_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["step", "epoch", "split", "loss"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def train_adapter(model_manifest, train_path, val_path, setting, quantization, device, gpu_memory_gib, checkpoint_dir,
                  callbacks=()):
    """Train (or resume) and return the trainer; checkpoints under checkpoint_dir/<fingerprint>."""
    fingerprint = run_fingerprint(setting, quantization, model_manifest, train_path, val_path)
    output_dir = Path(checkpoint_dir) / fingerprint
    trainer = build_trainer(
        load_base(model_manifest, quantization, device, gpu_memory_gib), load_tokenizer(model_manifest),
        sft_dataset(read_jsonl(train_path)), sft_dataset(read_jsonl(val_path)), setting, device, str(output_dir),
        callbacks,
    )
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last:
        log.info("Resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)
    return trainer


def main(smk):
    trainer = train_adapter(
        smk.input.model, smk.input.train, smk.input.val, smk.params.setting,
        smk.params.quantization, smk.params.device, smk.resources.gpu_memory_gib, smk.params.checkpoints,
    )
    with atomic_dir(smk.output.adapter) as tmp:
        trainer.model.save_pretrained(tmp)
    state = trainer.state
    write_json(smk.output.stats, {
        "global_step": state.global_step,
        "epochs": state.epoch,
        "train_runtime_s": next((e["train_runtime"] for e in reversed(state.log_history) if "train_runtime" in e), None),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        # For the paper's provenance; the model sits on GPU 0 when device is cuda (qlora.py).
        "device": torch.cuda.get_device_name(0) if smk.params.device == "cuda" else "cpu",
        "execution": execution(trainer),
    })
    write_text(smk.output.loss, loss_csv(loss_rows(trainer.state.log_history)))
    shutil.rmtree(smk.params.checkpoints, ignore_errors=True)  # done: nothing left to resume
    log.info("Adapter saved to %s after %d steps", smk.output.adapter, trainer.state.global_step)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
