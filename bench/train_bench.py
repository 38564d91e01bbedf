"""Training and generation speed of the pipeline's paths against the stock ones, on a GPU.

Builds a Qwen3-4B- or Qwen3-14B-shaped model from the published config with random weights
(the same compute as the real weights), then for each recipe of the study config trains the
QLoRA adapter for --steps optimiser steps after --warmup steps through each path, every one in a
fresh process: "stock" (SFTTrainer as the course notebook configures it) and "pipeline" (what
train_adapter runs on CUDA, scripts/huatuo_study/model/cuda_speed.py: the base dequantised when it fits, one
micro-batch, compiled decoder layers without gradient checkpointing), optionally with variants that undo or add one thing ("pipeline+nf4",
"pipeline+liger", which needs `pip install liger-kernel==0.8.5`, ...), on the same synthetic examples with
Huatuo26M-Lite-like lengths (or, with RECIPE:longest, all at the longest length).
Prints tokens/s (real, unpadded tokens), model FLOPs utilisation, peak GPU memory and the losses;
with --generation also batched greedy decoding, stock (NF4 + unmerged LoRA) against dequantised +
merged, with and without a compiled static cache, and how well their greedy tokens agree.

    python bench/train_bench.py --model 4b --recipes setting1,setting4,setting4:longest --paths stock,pipeline --generation
"""

import argparse
import dataclasses
import json
import math
import multiprocessing
import shutil
import sys
import time
import traceback
from pathlib import Path

import torch
import yaml
from datasets import Dataset
from transformers import Qwen3Config, Qwen3ForCausalLM, TrainerCallback
from trl import SFTConfig

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import base_model  # noqa: E402
import train_adapter  # noqa: E402
from huatuo_study.common import CHAT_TEMPLATE_KWARGS, chat_prompt, read_jsonl, setup_logging, write_json  # noqa: E402
from huatuo_study.model import cuda_speed, qlora, sft_recipe  # noqa: E402

# The published config.json of Qwen/Qwen3-4B and Qwen/Qwen3-14B (hub, 2025).
SHAPES = {
    "4b": dict(
        hidden_size=2560,
        intermediate_size=9728,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        tie_word_embeddings=True,
    ),
    "14b": dict(
        hidden_size=5120,
        intermediate_size=17408,
        num_hidden_layers=40,
        num_attention_heads=40,
        num_key_value_heads=8,
        tie_word_embeddings=False,
    ),
}
COMMON = dict(vocab_size=151936, head_dim=128, max_position_embeddings=40960, rope_theta=1_000_000, rms_norm_eps=1e-6)
H100_BF16_DENSE_TFLOPS = 989.4  # NVIDIA H100 SXM datasheet, dense (no sparsity)


def build_model(size: str, out: Path, tokenizer) -> tuple[str, int]:
    config = Qwen3Config(
        **SHAPES[size], **COMMON, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen3ForCausalLM._from_config(config, dtype=torch.bfloat16)
    non_embedding = sum(
        p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    write_json(out / "manifest.json", {"source": f"random Qwen3-{size} shape", "path": str(out), "revision": None})
    return str(out / "manifest.json"), non_embedding


def study_config() -> dict:
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def demo_rows() -> list[dict]:
    """The project's demo rows with a question and an answer: prompts for generation and the
    corpus of the benchmarks' tokenizer."""
    return [
        r
        for r in read_jsonl(REPO / "data/demo/huatuo_lite_demo.jsonl")
        if isinstance(r.get("question"), str) and r.get("answer", "").strip()
    ]


def random_model(size: str, work: Path, rows: list[dict]) -> tuple[str, int]:
    """A tokenizer trained on the rows and a random model of the published shape, saved under work."""
    tokenizer = base_model.train_tokenizer([t for r in rows for t in (r["question"], r["answer"])], 3000)
    return build_model(size, work / f"qwen3-{size}", tokenizer)


def package_versions() -> dict:
    return {m: __import__(m).__version__ for m in ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets")}


def synthetic_examples(n: int, seed: int, longest: bool = False) -> Dataset:
    """Prompt 30-90 tokens (chat markup included), answer log-normal (median ~80) capped at 480:
    about 165 tokens per example, as Huatuo26M-Lite's questions and answers under Qwen's tokenizer.
    With longest, every example is 90 + 480 tokens: the memory of the longest batch."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        prompt = int(torch.randint(30, 91, (1,), generator=g))
        answer = int(min(480, max(8, math.exp(4.4 + 0.6 * float(torch.randn(1, generator=g))))))
        if longest:
            prompt, answer = 90, 480
        ids = torch.randint(1000, 150000, (prompt + answer,), generator=g).tolist()
        rows.append({"input_ids": ids, "completion_mask": [0] * prompt + [1] * answer})
    return Dataset.from_list(rows)


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self.tokens, self.losses = [], [], []

    def on_step_end(self, args, state, control, **kwargs):
        torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.tokens.append(logs["num_tokens"])
            self.losses.append(float(logs["loss"]))


# Variants a path name may add to "pipeline", joined by "+", e.g. "pipeline+nf4+cudnn": each undoes
# or adds one thing, to measure what it is worth. SFTConfig changes of the variants that make them.
VARIANTS = {
    "compile": "torch_compile=True: the whole model compiled, instead of its decoder layers",
    "cudnn": "SDPA's cuDNN backend left on (torch's default; the pipeline turns it off)",
    "nf4": "the frozen base kept in 4-bit (the pipeline dequantises it once when it fits)",
    "liger": "use_liger_kernel=True, instead of compiled decoder layers (the two do not combine)",
    "paddingfree": "padding_free=True (one packed row per micro-batch, block-diagonal mask from position_ids)",
}
VARIANT_ARGS = {
    "compile": {"torch_compile": True},
    "liger": {"use_liger_kernel": True},
    "paddingfree": {"padding_free": True, "max_length": None},  # the synthetic rows are shorter than max_length
}


def bench_args(setting: dict, name: str, path: str, output_dir: str, max_steps: int) -> SFTConfig:
    """The SFTConfig a path trains with, cut to max_steps without evaluation or checkpoints: stock
    trains the recipe as written (sft_recipe.recipe_args), pipeline as train_adapter does on
    CUDA (train_adapter.sft_config), with its variants' changes."""
    base, *variants = path.split("+")
    if path != "stock" and (base != "pipeline" or set(variants) - set(VARIANTS)):
        raise SystemExit(f"unknown path {path!r}: stock, or pipeline followed by any of {sorted(VARIANTS)}")
    training = setting["training"]
    args = (
        train_adapter.sft_config(training, output_dir, "cuda", name)
        if base == "pipeline"
        else SFTConfig(**sft_recipe.recipe_args(training, output_dir, "cuda", name))
    )
    changes = {key: value for v in variants for key, value in VARIANT_ARGS.get(v, {}).items()}
    return dataclasses.replace(
        args, max_steps=max_steps, eval_strategy="no", save_strategy="no", num_train_epochs=1, **changes
    )


def traceback_as_text(function, *args):
    """The child's exception as text: a traceback holding modules or cells cannot be pickled back."""
    try:
        return function(*args)
    except Exception:  # noqa: BLE001 - reported in the result, the other paths still run
        return {"error": traceback.format_exc(limit=-8)}


def in_fresh_process(function, *args):
    """Each measurement in its own process, as each Snakemake job is: Liger patches Qwen3's classes
    process-wide, and cuDNN / cuBLAS keep plans per shape; either would leak into the next path's
    numbers (seen: a stock run after a Liger run measured 2.5x its own speed in a fresh process).
    A path that fails returns {"error": traceback} and the run goes on."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(traceback_as_text, (function, *args))


def train_run(manifest, recipe, path, steps, warmup, non_embedding, work):
    setup_logging()
    config = study_config()
    name, _, lengths = recipe.partition(":")
    setting, quantization = config["settings"][name], config["quantization"]
    t = setting["training"]
    data = synthetic_examples(
        (steps + warmup) * t["per_device_train_batch_size"] * t["gradient_accumulation_steps"], 0, lengths == "longest"
    )
    tokenizer = qlora.load_tokenizer(manifest)
    args = bench_args(setting, name, path, str(work / f"out-{path}"), warmup + steps)
    base, *variants = path.split("+")
    if base == "pipeline":
        model = train_adapter.load_base(
            manifest, quantization, "cuda", 0 if "nf4" in variants else config["gpu_memory_gib"]
        )
        torch.backends.cuda.enable_cudnn_sdp("cudnn" in variants)
    else:  # a fresh process: torch's default SDPA backends, cuDNN included
        model = qlora.load_quantized_model(manifest, quantization, "cuda")
    timer = StepTimer()
    trainer = train_adapter.build_trainer(model, tokenizer, data, None, args, setting["lora"], callbacks=[timer])
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    seconds = timer.times[-1] - timer.times[warmup - 1]
    tokens = timer.tokens[-1] - timer.tokens[warmup - 1]
    tps = tokens / seconds
    result = {
        "recipe": name,
        "lengths": lengths or "huatuo",
        "path": path,
        "micro_batch": trainer.args.per_device_train_batch_size,
        "grad_accum": trainer.args.gradient_accumulation_steps,
        "liger": trainer.args.use_liger_kernel,
        "compiled_layers": cuda_speed.compiles_layers(trainer),
        "tokens_per_s": round(tps, 1),
        # 4 x non-embedding parameters per token: forward 2N, backward to the activations 2N
        # (the frozen base gets no weight gradients); recomputation is not counted as useful.
        "mfu": round(4 * non_embedding * tps / (H100_BF16_DENSE_TFLOPS * 1e12), 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "losses": [round(x, 4) for x in timer.losses],
        "step_s": [round(b - a, 3) for a, b in zip(timer.times[warmup - 1 :], timer.times[warmup:])],
        "wall_s": round(time.perf_counter() - start, 1),
    }
    return result


def random_adapter(manifest, quantization, lora: dict, out: Path) -> str:
    """A LoRA adapter with random, non-zero B (peft's init_lora_weights=False), so that merging it
    changes every targeted weight, as a trained adapter does."""
    from peft import get_peft_model

    config = train_adapter.lora_config(lora)
    config.init_lora_weights = False
    model = get_peft_model(qlora.load_quantized_model(manifest, quantization, "cuda"), config)
    model.save_pretrained(out)
    del model
    torch.cuda.empty_cache()
    return str(out)


def prompt_ids(tokenizer, questions):
    return [
        tokenizer.apply_chat_template(
            chat_prompt(q), tokenize=True, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
        )["input_ids"]
        for q in questions
    ]


@torch.inference_mode()
def greedy_ids(model, tokenizer, prompts: list[list[int]], new_tokens: int, cache: str | None) -> list[list[int]]:
    """The new tokens of all prompts decoded in one left-padded batch, greedy, with the given KV
    cache ("static" makes generate compile the decoding step)."""
    tokenizer.padding_side = "left"
    batch = tokenizer.pad({"input_ids": prompts}, return_tensors="pt").to(model.device)
    out = model.generate(
        **batch,
        max_new_tokens=new_tokens,
        do_sample=False,
        cache_implementation=cache,
        pad_token_id=tokenizer.pad_token_id,
    )
    return out[:, batch["input_ids"].shape[1] :].tolist()


@torch.inference_mode()
def teacher_forced_agreement(model, prompts, answers) -> float:
    """Share of answer positions where the model's top-1 token, given the reference's own prefix,
    is the reference's token: unlike the first divergence, one flip does not end the count."""
    agree = total = 0
    for p, a in zip(prompts, answers):
        logits = model(torch.tensor([p + a], device=model.device)).logits[0, len(p) - 1 : -1]
        agree += int((logits.argmax(-1).cpu() == torch.tensor(a)).sum())
        total += len(a)
    return round(agree / total, 4)


def generation_runs(manifest, quantization, lora, questions, new_tokens, work):
    setup_logging()
    tokenizer = qlora.load_tokenizer(manifest)
    from peft import PeftModel

    adapter = random_adapter(manifest, quantization, lora, work / "random-adapter")
    prompts = prompt_ids(tokenizer, questions)

    def stock():
        return PeftModel.from_pretrained(qlora.load_quantized_model(manifest, quantization, "cuda"), adapter).eval()

    def merged():
        return qlora.load_generation_model(manifest, quantization, "cuda", adapter)

    variants = {
        "stock: NF4 + unmerged LoRA, generate": (stock, None),
        "dequantised + merged, generate": (merged, None),
        "dequantised + merged, generate, static cache (auto-compiled)": (merged, "static"),
    }
    results, reference = [], None
    for name, (load, cache) in variants.items():
        model = load()
        # Random weights may emit EOS at any step: every path generates the full length.
        model.generation_config.min_new_tokens = new_tokens
        model.generation_config.eos_token_id = None
        t = time.perf_counter()
        greedy_ids(
            model, tokenizer, prompts, new_tokens, cache
        )  # first call: warm-up, compilation or graph capture on the same shapes
        first_s = time.perf_counter() - t
        torch.cuda.synchronize()
        t = time.perf_counter()
        ids = greedy_ids(model, tokenizer, prompts, new_tokens, cache)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        row = {
            "path": name,
            "prompts": len(questions),
            "first_call_s": round(first_s, 1),
            "tokens_per_s": round(sum(map(len, ids)) / seconds, 1),
            "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        }
        if reference is None:
            reference = ids
        row["greedy_prefix_match_tokens"] = [
            next((i for i, (a, b) in enumerate(zip(x, y)) if a != b), min(len(x), len(y)))
            for x, y in zip(ids, reference)
        ]
        row["teacher_forced_top1_agreement"] = teacher_forced_agreement(model, prompts, reference)
        results.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        del model
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return results


def summary_table(report: dict) -> str:
    """The short table printed last: each path's tokens/s against its recipe's stock path."""
    lines = [
        "| recipe | lengths | path | tokens/s | vs stock | MFU | peak GiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines = lines if report["training"] else []
    stock = {
        (r["recipe"], r["lengths"]): r["tokens_per_s"]
        for r in report["training"]
        if r["path"] == "stock" and "error" not in r
    }
    for r in report["training"]:
        if "error" in r:
            lines.append(f"| {r['recipe']} | | {r['path']} | failed: {r['error'].splitlines()[-1]} | | | |")
            continue
        base = stock.get((r["recipe"], r["lengths"]))
        ratio = f"{r['tokens_per_s'] / base:.1f}x" if base else "-"
        lines.append(
            f"| {r['recipe']} | {r['lengths']} | {r['path']} | {r['tokens_per_s']:,.0f} | {ratio} | "
            f"{100 * r['mfu']:.1f}% | {r['peak_gib']} |"
        )
    if report["generation"]:
        lines += [
            "",
            "| generation path | first call s | tokens/s | vs stock | teacher-forced agreement |",
            "| --- | --- | --- | --- | --- |",
        ]
        base = report["generation"][0]["tokens_per_s"]
        for g in report["generation"]:
            lines.append(
                f"| {g['path']} | {g['first_call_s']} | {g['tokens_per_s']:,.0f} | "
                f"{g['tokens_per_s'] / base:.1f}x | {100 * g['teacher_forced_top1_agreement']:.1f}% |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=list(SHAPES), default="4b")
    parser.add_argument(
        "--recipes",
        default="setting1,setting4",
        help="recipes of config/config.yaml; NAME:longest puts every example at the longest length",
    )
    parser.add_argument("--paths", default="stock,pipeline")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--generation", action="store_true")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--work", default="/tmp/bench")
    parser.add_argument("--out", default="bench/result.json")
    args = parser.parse_args()
    setup_logging()
    config = study_config()
    work = Path(args.work)
    rows = demo_rows()
    manifest, non_embedding = random_model(args.model, work, rows)
    report = {
        "gpu": torch.cuda.get_device_name(0),
        "model": f"Qwen3-{args.model} shape, random weights",
        "non_embedding_parameters": non_embedding,
        "steps": args.steps,
        "warmup": args.warmup,
        "versions": package_versions(),
        "training": [],
        "generation": [],
    }
    if args.generation:
        questions = [r["question"] for r in rows[:20]]
        report["generation"] = in_fresh_process(
            generation_runs,
            manifest,
            config["quantization"],
            config["settings"]["setting4"]["lora"],
            questions,
            args.new_tokens,
            work,
        )
    for recipe in [r for r in args.recipes.split(",") if r]:
        for path in args.paths.split(","):
            result = {
                "recipe": recipe,
                "path": path,
                **in_fresh_process(train_run, manifest, recipe, path, args.steps, args.warmup, non_embedding, work),
            }
            report["training"].append(result)
            print(json.dumps(result), flush=True)
    write_json(args.out, report)
    print(summary_table(report))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
