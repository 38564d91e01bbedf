"""Stage train: one QLoRA adapter per setting. The base model in 4-bit NF4 (bitsandbytes), a LoRA
adapter (peft), TRL's SFTTrainer with the loss on the answer only and the chat template rendered
with thinking off. A setting's `training:` block is SFTConfig's keywords, passed through; on CUDA
the recipe runs faster as cuda_speed.py says. Checkpoints every `save_steps`; a re-run after a
killed job resumes from the last one. With several processes (the rule's `gpu` resource,
`training_processes` in the config) the job trains data-parallel through torchrun, one process per
GPU, each a share of the recipe's effective batch; the first writes the outputs. Writes the adapter
folder and the per-step train / per-eval validation loss CSV."""

from huatuo_study.model import gpu_slots

if "snakemake" in globals():  # this job's own GPU(s), taken before torch initialises CUDA
    gpu_slots.take_for_job(snakemake)  # noqa: F821

import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
import transformers
from datasets import Dataset
from peft import LoraConfig
from transformers.integrations import TensorBoardCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from trl import SFTConfig, SFTTrainer

from huatuo_study.common import (
    CHAT_TEMPLATE_KWARGS,
    PipelineError,
    atomic_dir,
    chat_prompt,
    log,
    read_json,
    read_jsonl,
    run_stage,
    write_json,
    write_text,
)
from huatuo_study.model import cuda_speed
from huatuo_study.model.memory_budget import cap_gpu_memory
from huatuo_study.model.qlora import device_name, load_quantized_model, load_tokenizer, peak_gpu_gib
from huatuo_study.model.sft_recipe import per_process, recipe_args


def sft_dataset(records: list[dict]) -> Dataset:
    """Conversational prompt-completion rows: TRL masks the prompt, so only the answer is learned."""
    return Dataset.from_list(
        [
            {
                "prompt": chat_prompt(r["question"]),
                "completion": [{"role": "assistant", "content": r["answer"]}],
                "chat_template_kwargs": CHAT_TEMPLATE_KWARGS,
            }
            for r in records
        ]
    )


def lora_config(lora: dict) -> LoraConfig:
    return LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=list(lora["target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_base(model_manifest, quantization, device, gpu_memory_gib):
    """The frozen base for training, on CUDA made as fast as its memory budget allows (cuda_speed),
    the process's GPU memory capped at the budget first, as on a card of that size."""
    cap_gpu_memory(device, gpu_memory_gib)
    model = load_quantized_model(model_manifest, quantization, device)
    return cuda_speed.fast_base(model, gpu_memory_gib) if device == "cuda" else model


def sft_config(training: Mapping, output_dir: str, device: str, name: str, processes: int = 1) -> SFTConfig:
    """The SFTConfig a setting trains with in each of `processes` processes: its recipe's share, on
    CUDA split into fewer, larger micro-batches."""
    share = per_process(training, processes, name)
    return SFTConfig(**{**recipe_args(share, output_dir, device, name), **cuda_speed.speedups(share, device)})


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from (seed, epoch) alone: the same in every process of a
    data-parallel job (accelerate shares its batches out in turn) and in a job resumed mid-run."""

    def __init__(self, group_size: int, lengths: list[int], seed: int):
        super().__init__(group_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


class RecipeSFTTrainer(SFTTrainer):
    """SFTTrainer whose length grouping spans the whole effective batch, every process's share
    included: one process and several put the same examples in each optimiser step."""

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if not isinstance(sampler, LengthGroupedSampler):
            return sampler
        args = self.args
        seed = args.data_seed if args.data_seed is not None else args.seed
        group = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
        return EpochSeededLengthGroupedSampler(group, sampler.lengths, seed)


def build_trainer(
    model, tokenizer, train_dataset, eval_dataset, args: SFTConfig, lora: dict, callbacks=()
) -> SFTTrainer:
    trainer = RecipeSFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(lora),
        callbacks=list(callbacks),
    )
    cuda_speed.compile_where_it_pays(trainer)
    return trainer


def execution(trainer) -> dict:
    """How the recipe ran (CUDA changes the split and the kernels, not what is learned), for the record."""
    return {
        "processes": trainer.args.world_size,  # data-parallel, each with micro_batch x grad_accum
        "micro_batch": trainer.args.per_device_train_batch_size,
        "grad_accum": trainer.args.gradient_accumulation_steps,
        "compiled_layers": cuda_speed.compiles_layers(trainer),
        "frozen_base": "4-bit" if cuda_speed.four_bit(trainer.model) else "dequantised once from 4-bit",
    }


def log_tensorboard_to(trainer, folder) -> None:
    """The Trainer's TensorBoard callback writes under output_dir (our checkpoints, deleted after
    training) by default: point it at the run's own folder."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(folder)


def train_runtime_s(trainer) -> float | None:
    return next((e["train_runtime"] for e in reversed(trainer.state.log_history) if "train_runtime" in e), None)


def train_tokens(trainer) -> int:
    """Tokens trained on (prompt and answer, no padding), every epoch counted."""
    return round(sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * trainer.state.epoch)


def train_tokens_per_s(trainer) -> float | None:
    """train_tokens per second of the trainer's own runtime, evaluations included."""
    runtime = train_runtime_s(trainer)
    return round(train_tokens(trainer) / runtime, 1) if runtime else None


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
                rows.append(
                    {
                        "step": entry["step"],
                        "epoch": round(entry.get("epoch", 0.0), 4),
                        "split": split,
                        "loss": entry[key],
                    }
                )
    return rows


def loss_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["step", "epoch", "split", "loss"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def keep_adapter_dtypes(trainer) -> None:
    """Resuming reloads the adapter through peft's load_adapter, which upcasts it to float32 where
    TRL had cast it to the compute dtype: cast it back right after the reload, before the
    optimizer is built, so that a resumed run trains (and saves) as an uninterrupted one."""
    dtypes = {name: p.dtype for name, p in trainer.model.named_parameters() if p.requires_grad}
    load = trainer._load_from_checkpoint

    def load_then_cast(*args, **kwargs):
        load(*args, **kwargs)
        for name, p in trainer.model.named_parameters():
            if name in dtypes and p.dtype != dtypes[name]:
                p.data = p.data.to(dtypes[name])

    trainer._load_from_checkpoint = load_then_cast


def last_complete_checkpoint(output_dir: Path) -> str | None:
    """The newest checkpoint-N that was written to the end. The Trainer writes a checkpoint in
    place, trainer_state.json last, and reads that file when resuming: a job killed while saving
    leaves a newer, half-written folder that transformers' get_last_checkpoint would pick, and
    every rerun would crash on it."""
    steps = sorted(
        ((int(m[1]), p) for p in output_dir.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))),
        reverse=True,
    )
    for _, folder in steps:
        if (folder / "trainer_state.json").is_file() and any(folder.glob("adapter_model.*")):
            return str(folder)
        log.warning("Skipping %s: written only in part (its job was killed while saving)", folder)
    return None


def train_adapter(
    model_manifest,
    train_path,
    val_path,
    setting,
    quantization,
    device,
    gpu_memory_gib,
    checkpoint_dir,
    *,
    name: str,
    callbacks=(),
    tensorboard_dir=None,
    processes: int = 1,
):
    """Train (or resume) setting `name` in this process, one of `processes` data-parallel ones, and
    return the trainer; checkpoints under checkpoint_dir/<fingerprint>, TensorBoard events (where the
    setting reports to it) under tensorboard_dir."""
    fingerprint = run_fingerprint(setting, quantization, model_manifest, train_path, val_path)
    output_dir = Path(checkpoint_dir) / fingerprint
    args = sft_config(setting["training"], str(output_dir), device, name, processes)  # a wrong key stops before loading
    # TRL wraps the model in its LoRA adapter before the Trainer seeds: seed first, so that the
    # adapter's initialisation follows the recipe's seed (a replicate's seed + r) too.
    transformers.set_seed(args.seed)
    trainer = build_trainer(
        load_base(model_manifest, quantization, device, gpu_memory_gib),
        load_tokenizer(model_manifest),
        sft_dataset(read_jsonl(train_path)),
        sft_dataset(read_jsonl(val_path)),
        args,
        setting["lora"],
        callbacks,
    )
    if tensorboard_dir:
        log_tensorboard_to(trainer, tensorboard_dir)
    last = last_complete_checkpoint(output_dir)
    if last:
        keep_adapter_dtypes(trainer)
        log.info("Resuming from %s", last)
    trainer.train(resume_from_checkpoint=last)
    return trainer


def training_job(smk) -> dict:
    """Everything a training process needs, as JSON: its inputs, recipe, outputs and process count
    (the rule's `gpu` resource: one process per GPU)."""
    return {
        "model": smk.input.model,
        "train": smk.input.train,
        "val": smk.input.val,
        "setting": smk.params.setting,
        "quantization": smk.params.quantization,
        "device": smk.params.device,
        "gpu_memory_gib": smk.resources.gpu_memory_gib,
        "checkpoints": smk.params.checkpoints,
        "name": smk.wildcards.setting,
        "processes": max(1, int(getattr(smk.resources, "gpu", 1))),
        # declared where any setting reports to TensorBoard
        "tensorboard": getattr(smk.output, "tensorboard", None),
        "adapter": smk.output.adapter,
        "loss": smk.output.loss,
        "stats": smk.output.stats,
    }


def write_outputs(trainer, job: dict) -> None:
    from huatuo_study.versions import TRAIN as TRAIN_PACKAGES
    from huatuo_study.versions import versions

    with atomic_dir(job["adapter"]) as tmp:
        trainer.model.save_pretrained(tmp)
    state, device = trainer.state, job["device"]
    write_json(
        job["stats"],
        {
            "global_step": state.global_step,
            "epochs": state.epoch,
            "train_runtime_s": train_runtime_s(trainer),
            "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
            "device": device_name(device),  # for the paper's provenance and compute table
            "gpu": gpu_slots.job_gpus(device),  # which of the machine's GPUs (gpu_slots)
            "peak_gpu_gib": peak_gpu_gib(device),  # the first process's
            "memory_budget_gib": job["gpu_memory_gib"],
            "train_tokens": train_tokens(trainer),
            "train_tokens_per_s": train_tokens_per_s(trainer),  # of all processes together
            "execution": execution(trainer),
            "versions": versions(TRAIN_PACKAGES),  # for the paper's provenance: what this job ran with
        },
    )
    write_text(job["loss"], loss_csv(loss_rows(trainer.state.log_history)))
    if job["tensorboard"]:  # declared for every setting, left empty where one reports to none
        Path(job["tensorboard"]).mkdir(parents=True, exist_ok=True)
    log.info("Adapter saved to %s after %d steps", job["adapter"], state.global_step)


def run_process(job: dict) -> None:
    """One training process: train (with the others, if any), and where it is the first, write the
    adapter, the stats and the loss curves, once."""
    trainer = train_adapter(
        job["model"],
        job["train"],
        job["val"],
        job["setting"],
        job["quantization"],
        job["device"],
        job["gpu_memory_gib"],
        job["checkpoints"],
        name=job["name"],
        tensorboard_dir=job["tensorboard"],
        processes=job["processes"],
    )
    if trainer.is_world_process_zero():
        write_outputs(trainer, job)


def launch(job: dict) -> None:
    """Train in job["processes"] data-parallel processes on this node through torchrun (a free
    port of its own, so that jobs side by side do not meet), relaying their output to this job's
    log; each sees the job's GPUs and takes the one of its LOCAL_RANK. torchrun holds the job's GPU
    locks too, so that they outlive this process for as long as it runs."""
    with tempfile.TemporaryDirectory(prefix="train_adapter.") as folder:
        spec = Path(folder) / "job.json"
        write_json(spec, job)
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={job['processes']}",
            __file__,
            str(spec),
        ]
        log.info("Training across %d processes: %s", job["processes"], " ".join(command))
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, pass_fds=gpu_slots.held_files()
        ) as proc:
            for line in proc.stdout:
                log.info("| %s", line.rstrip("\n"))
        if proc.returncode:
            raise PipelineError(
                f"settings.{job['name']}: {job['processes']} training processes ended with exit "
                f"status {proc.returncode}; their output is above"
            )


def main(smk):
    job = training_job(smk)
    if job["processes"] > 1:
        launch(job)
    else:
        run_process(job)
    shutil.rmtree(job["checkpoints"], ignore_errors=True)  # done: nothing left to resume


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
elif __name__ == "__main__":  # one of the processes launch() starts, given its job's file
    from huatuo_study.common import setup_logging

    setup_logging()
    try:
        run_process(read_json(sys.argv[1]))
    except PipelineError as e:
        log.error("%s", e)
        sys.exit(1)
