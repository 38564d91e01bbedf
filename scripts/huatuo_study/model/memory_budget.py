"""The GPU memory budget a job holds to (config `gpu_memory_gib`, the study's 32 GB card) and the
form and batch size answering takes within it. Pure arithmetic over the model's shape, apart from
cap_gpu_memory, which tells torch's allocator the budget."""

import math
from dataclasses import dataclass

import torch

GIB = 2**30
# [ours] Held back from the budget for what the estimate below leaves out: the allocator's
# fragmentation, the CUDA graph's pool, cuBLAS workspaces, the prefill's activations.
RESERVE_SHARE = 0.10
# [ours] Per answer in a batch besides its KV cache: the float32 logits and the sampler's
# vocabulary-sized float64 noise and scores (Qwen3's 151,936 ids: about 1.2 MB each), a few at a time.
ROW_WORKSPACE_BYTES = 32 * 2**20
# The forms the NF4 base answers in: dequantised once to the compute dtype, or left in 4-bit.
MERGED, FOUR_BIT = "dequantised", "4-bit"


def form_label(form: str, adapter: bool) -> str:
    """What a job answered with, as the compute table reports it: the base's form and, where the
    setting has an adapter, whether it was merged into that base or ran beside it."""
    if not adapter:
        return f"{form}, no adapter"
    return f"{form}, adapter merged" if form == MERGED else f"{form}, adapter beside"


def cap_gpu_memory(device: str, gpu_memory_gib: float) -> float | None:
    """Caps this process's CUDA allocations at `gpu_memory_gib` (an allocation past it fails as out
    of memory, as it would on a card of that size); the cap in GiB, or None on the CPU."""
    if device != "cuda":
        return None
    total = torch.cuda.get_device_properties(0).total_memory
    cap = min(gpu_memory_gib * GIB, total)
    torch.cuda.set_per_process_memory_fraction(cap / total, 0)
    return round(cap / GIB, 2)


def kv_bytes_per_token(config, dtype_bytes: int = 2) -> int:
    """Bytes of KV cache one token takes across all layers: keys and values of every KV head."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * dtype_bytes


@dataclass(frozen=True)
class AnsweringPlan:
    form: str  # MERGED: the NF4 base dequantised, an adapter merged into it; FOUR_BIT: the study's own form
    batch_size: int
    weights_gib: float
    kv_gib_per_answer: float


def batch_within(free_bytes: float, row_bytes: float, questions: int, most: int | None) -> int:
    """The batch size that answers `questions` in the fewest batches the free memory allows (at most
    `most` a batch where given), spread evenly over those batches; 0 when not one answer fits."""
    fits = int(free_bytes // row_bytes)
    if most is not None:
        fits = min(fits, most)
    if fits < 1:
        return 0
    batches = math.ceil(questions / fits)
    return math.ceil(questions / batches)


def plan_answering(
    dense_bytes: int,
    four_bit_bytes: int,
    kv_per_token: int,
    tokens_per_answer: int,
    questions: int,
    budget_gib: float,
    batch_size: int | str,
) -> AnsweringPlan:
    """The merged dense model where it answers in as few batches as the 4-bit base with the adapter
    would (its weights and the KV cache of its batch within the budget), else the 4-bit form.
    batch_size "auto": as many answers a batch as the memory left allows; a number: at most that."""
    budget = budget_gib * GIB * (1 - RESERVE_SHARE)
    row = kv_per_token * tokens_per_answer + ROW_WORKSPACE_BYTES
    most = None if batch_size == "auto" else int(batch_size)
    merged = batch_within(budget - dense_bytes, row, questions, most)
    four_bit = batch_within(budget - four_bit_bytes, row, questions, most)
    if not four_bit:
        raise MemoryError(
            f"not one answer fits gpu_memory_gib {budget_gib}: the 4-bit weights take "
            f"{four_bit_bytes / GIB:.1f} GiB and an answer of {tokens_per_answer} tokens "
            f"{row / GIB:.2f} GiB, within {budget / GIB:.1f} GiB after the reserve"
        )
    if merged and math.ceil(questions / merged) <= math.ceil(questions / four_bit):
        return AnsweringPlan(MERGED, merged, round(dense_bytes / GIB, 2), round(row / GIB, 3))
    return AnsweringPlan(FOUR_BIT, four_bit, round(four_bit_bytes / GIB, 2), round(row / GIB, 3))
