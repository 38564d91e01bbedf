"""On a GPU: answering throughput of the pipeline's decoding loop at the study's settings (sampled,
T 0.7, top-k 20, top-p 0.9, repetition penalty 1.2, each row its own seed, 800 new tokens) on a
random-weight bf16 model of Qwen3-4B's published shape, by batch, with attention over the whole
static cache (one window) and over the filled slots (windows of decoding.WINDOW_SLOTS), in the same
process; beside each, the bound the weights alone set (one read of them a step at the card's
memory bandwidth) and the KV cache's share. Prints a Markdown table and one JSON line.

    python bench/decode_speed.py --batches 20,100 --bandwidth-tbs 4.8
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from huatuo_study.answering import decoding  # noqa: E402
from huatuo_study.answering.answers import GumbelSampler  # noqa: E402
from huatuo_study.model.memory_budget import kv_bytes_per_token  # noqa: E402

# Qwen3-4B's config.json on the hub
QWEN3_4B = dict(
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
    tie_word_embeddings=True,
)
NEW = 800


def prompts(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts of 60-100 random ids (the course's chat prompts' range)."""
    lengths = torch.randint(60, 101, (batch,), generator=generator)
    longest = int(lengths.max())
    ids = torch.randint(10, 150_000, (batch, longest), generator=generator)
    mask = (torch.arange(longest) >= longest - lengths[:, None]).long()
    return (ids * mask).cuda(), mask.cuda()


def run(model, batch: int, window_slots: int) -> dict:
    ids, mask = prompts(batch, torch.Generator().manual_seed(batch))
    sampler = GumbelSampler(list(range(batch)), 0.7, 0.9, 20, "cuda")
    eos = torch.tensor([151_645], device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.inference_mode():
        out = decoding.decode(
            model, ids, mask, NEW, decoding.processors(1.2, [sampler]), eos, 0, True, window_slots=window_slots
        )
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = int((out != 0).sum())
    return {
        "batch": batch,
        "window_slots": window_slots,
        "steps": out.shape[1],
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "ms_per_step": round(1000 * seconds / out.shape[1], 2),
        "tokens_per_s": round(tokens / seconds),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="20,100")
    parser.add_argument("--bandwidth-tbs", type=float, default=4.8, help="the card's memory bandwidth (H200: 4.8)")
    a = parser.parse_args()
    torch.manual_seed(0)
    config = Qwen3Config(**QWEN3_4B)
    with torch.device("cuda"):
        model = Qwen3ForCausalLM._from_config(config, dtype=torch.bfloat16).eval()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    rows = []
    for batch in map(int, a.batches.split(",")):
        for window in (10_000, decoding.WINDOW_SLOTS):  # one window of the whole cache, then ours
            row = run(model, batch, window)
            # one read of the weights a step, and of the KV cache filled on average half way
            kv = kv_bytes_per_token(config) * batch * (80 + NEW / 2)
            row["weights_bound_tokens_per_s"] = round(batch / (weights / (a.bandwidth_tbs * 1e12)))
            row["weights_and_kv_bound_tokens_per_s"] = round(batch / ((weights + kv) / (a.bandwidth_tbs * 1e12)))
            rows.append(row)
    print("| batch | attention reads | ms/step | tokens/s | bound: weights | bound: weights + KV | peak GiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        reads = "whole cache" if r["window_slots"] > NEW + 100 else f"filled slots ({r['window_slots']}-slot windows)"
        print(
            f"| {r['batch']} | {reads} | {r['ms_per_step']} | {r['tokens_per_s']:,} | "
            f"{r['weights_bound_tokens_per_s']:,} | {r['weights_and_kv_bound_tokens_per_s']:,} | {r['peak_gib']} |"
        )
    print(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
