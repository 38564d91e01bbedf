"""Where a training step's and a decoding step's time goes, on a GPU: torch.profiler over a few
steps of one recipe (after warm-up), GPU busy time against wall time, and the top operators by
GPU and by CPU time. The table that decides what to speed up next (bench/RESULTS.md).

    python bench/profile_step.py --model 4b --recipe setting4 --steps 3
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))

import train_adapter  # noqa: E402
from huatuo_study.common import setup_logging  # noqa: E402
from huatuo_study.model import qlora  # noqa: E402
from train_bench import (  # noqa: E402
    bench_args,
    demo_rows,
    greedy_ids,
    prompt_ids,
    random_model,
    study_config,
    synthetic_examples,
)


def summarise(prof, label: str, wall_s: float, steps: int) -> None:
    events = prof.key_averages()
    kernels = [e for e in events if e.device_type.name == "CUDA"]  # operators' device time would count twice
    gpu_us = sum(e.self_device_time_total for e in kernels)
    print(
        f"\n== {label}: wall {1000 * wall_s / steps:.1f} ms/step, GPU busy {gpu_us / 1000 / steps:.1f} ms/step "
        f"({100 * gpu_us / 1e6 / wall_s:.0f}%), kernels {sum(e.count for e in kernels) // steps}/step"
    )
    print(events.table(sort_by="self_device_time_total", row_limit=18, max_name_column_width=60))
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))


def profile_training(manifest, tokenizer, name, setting, quantization, memory_gib, steps, work, path="pipeline"):
    """A few steps of the setting's recipe through one path of train_bench: stock or pipeline."""
    t = setting["training"]
    data = synthetic_examples((steps + 3) * t["per_device_train_batch_size"] * t["gradient_accumulation_steps"], seed=0)
    torch.backends.cuda.enable_cudnn_sdp(True)  # torch's default, for the stock path
    model = (
        train_adapter.load_base(manifest, quantization, "cuda", memory_gib)
        if path == "pipeline"
        else qlora.load_quantized_model(manifest, quantization, "cuda")
    )

    class Profiled(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                torch.cuda.synchronize()
                self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
                self.prof.__enter__()
                self.start = time.perf_counter()
            elif state.global_step == 3 + steps:
                torch.cuda.synchronize()
                self.wall = time.perf_counter() - self.start
                self.prof.__exit__(None, None, None)

    prof = Profiled()
    args = bench_args(setting, name, path, str(work / "out-profile"), 3 + steps)
    trainer = train_adapter.build_trainer(model, tokenizer, data, None, args, setting["lora"], callbacks=[prof])
    trainer.train()
    summarise(prof.prof, f"train {path}", prof.wall, steps)
    del trainer, model
    torch.cuda.empty_cache()


def profile_generation(manifest, quantization, questions, new_tokens, cache):
    """The pipeline's generation model decoding all questions in one batch with the given KV cache
    (qlora.answer_questions would choose the cache by size): three timed calls, then one profiled."""
    tokenizer = qlora.load_tokenizer(manifest)
    model = qlora.load_generation_model(manifest, quantization, "cuda")
    model.generation_config.min_new_tokens = new_tokens  # random weights may emit EOS at any step
    prompts = prompt_ids(tokenizer, questions)
    for call in range(3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        greedy_ids(model, tokenizer, prompts, new_tokens, cache)
        torch.cuda.synchronize()
        print(
            f"generate cache={cache} call {call}: {time.perf_counter() - t:.2f} s "
            f"({len(questions) * new_tokens / (time.perf_counter() - t):.0f} tokens/s)",
            flush=True,
        )
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        greedy_ids(model, tokenizer, prompts, new_tokens, cache)
        torch.cuda.synchronize()
    summarise(prof, f"generate cache={cache}", time.perf_counter() - t, new_tokens)
    del model
    torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="4b")
    parser.add_argument("--recipe", default="setting4")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--work", default="/tmp/profile")
    parser.add_argument("--parts", default="stock,pipeline,generate")
    args = parser.parse_args()
    setup_logging()
    config = study_config()
    work = Path(args.work)
    rows = demo_rows()
    manifest, _ = random_model(args.model, work, rows)
    tokenizer = qlora.load_tokenizer(manifest)
    setting, quantization, parts = config["settings"][args.recipe], config["quantization"], args.parts.split(",")
    if "generate" in parts:
        questions = [r["question"] for r in rows[:20]]
        for cache in (None, "static"):
            profile_generation(manifest, quantization, questions, 64, cache)
    for path in ("stock", "pipeline"):
        if path in parts:
            profile_training(
                manifest,
                tokenizer,
                args.recipe,
                setting,
                quantization,
                config["gpu_memory_gib"],
                args.steps,
                work,
                path,
            )


if __name__ == "__main__":
    main()
