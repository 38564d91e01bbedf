"""The CUDA speed policy of training: how a setting's recipe runs faster on a GPU without changing
what it learns (fewer, larger micro-batches; the frozen NF4 base dequantised once when it fits;
no cuDNN attention; compiled decoder layers where activations are kept and the job is long enough
for the compilation to pay). On the CPU the recipe
runs as written. Measurements: bench/RESULTS.md (bench/train_bench.py, bench/profile_step.py)."""

import math
from collections.abc import Mapping

import bitsandbytes as bnb
import torch

from huatuo_study.common import log

# The largest micro-batch the CUDA path makes of an effective batch (the study's is 16 or 10).
MAX_MICRO_BATCH = 16


def speedups(training: Mapping, device: str) -> dict:
    """SFTConfig changes that make CUDA training faster without changing what is learned: fewer,
    larger micro-batches. The length-grouped sampler draws groups of per_device_train_batch_size x
    gradient_accumulation_steps examples however they are split, and the loss is normalised by the
    answer tokens of the whole effective batch, so each optimiser step sees the same examples and loss."""
    if device != "cuda":
        return {}
    batch = training["per_device_train_batch_size"]
    effective = batch * training["gradient_accumulation_steps"]
    micro = max(d for d in range(1, min(effective, MAX_MICRO_BATCH) + 1) if effective % d == 0)
    micro = max(micro, batch)
    return {"per_device_train_batch_size": micro, "gradient_accumulation_steps": effective // micro}


def four_bit(model) -> bool:
    return any(isinstance(p, bnb.nn.Params4bit) for p in model.parameters())


def can_compile_layers(args, model) -> bool:
    """Decoder layers can be compiled on CUDA where activations are kept (no gradient checkpointing:
    setting 4) over the dequantised base, where the step is launch-bound: 7,505 instead of 4,156
    tokens/s (bench/RESULTS.md). Not over 4-bit matmuls (a compiled 4-bit model was slower), not
    with gradient checkpointing (compiled layers failed at the first step on the H100), and not
    where a config asks for Liger's kernels (inductor fails on Liger's RMSNorm) or a whole-model
    compile (torch_compile)."""
    return not (
        args.use_cpu or args.gradient_checkpointing or args.use_liger_kernel or args.torch_compile or four_bit(model)
    )


# The cost model of compiling, from setting 4's measurements on an H100 (bench/RESULTS.md, second
# and third pass: 4B, dequantised base, Huatuo lengths, fresh processes): eager and compiled
# training throughput, and the compilation the first training step pays (about 90 s); evaluation,
# in eval mode, compiles once more (bench/gpu_smoke_h100.json). [ours] An evaluated token costs a
# third of a trained one (a forward of forward + backward) in either path.
EAGER_TOKENS_PER_S = 4_156
COMPILED_TOKENS_PER_S = 7_505
COMPILE_S = 90.0
EVAL_TOKEN_SHARE = 1 / 3


def compile_saving_s(train_tokens: float, eval_tokens: float) -> float:
    """Seconds compiling the decoder layers saves a job (negative: what it costs)."""
    work = train_tokens + EVAL_TOKEN_SHARE * eval_tokens
    compilations = 2 if eval_tokens else 1
    return work * (1 / EAGER_TOKENS_PER_S - 1 / COMPILED_TOKENS_PER_S) - compilations * COMPILE_S


def job_tokens(trainer) -> tuple[int, int]:
    """Tokens the job trains on (prompt and answer, every epoch) and evaluates (the whole
    validation set at every eval_steps and after the last step)."""
    args = trainer.args
    per_epoch = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    steps_per_epoch = math.ceil(
        len(trainer.train_dataset) / (args.per_device_train_batch_size * args.gradient_accumulation_steps)
    )
    steps = args.max_steps if args.max_steps > 0 else math.ceil(steps_per_epoch * args.num_train_epochs)
    train = per_epoch * steps / steps_per_epoch
    every = args.eval_steps if args.eval_steps >= 1 else math.ceil(args.eval_steps * steps)
    evaluated = sum(len(ids) for ids in trainer.eval_dataset["input_ids"]) * math.ceil(steps / every)
    return round(train), evaluated


def compiles_layers(trainer) -> bool:
    """The decoder layers are compiled where they can be and the job is long enough for the
    compilation to pay for itself: not at the study's size (setting 4: ~60k trained and ~600k
    evaluated tokens save ~30 s against ~180 s of compiling), but for a whole epoch of Huatuo."""
    return can_compile_layers(trainer.args, trainer.model) and compile_saving_s(*job_tokens(trainer)) > 0


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
    log.info(
        "Dequantising the 4-bit base once for training: %.1f GiB in bf16, within a quarter of %s GiB", size, memory_gib
    )
    return model.dequantize()


def fast_base(model, gpu_memory_gib: float):
    """The frozen 4-bit base on CUDA made as fast as its memory budget allows."""
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


def compile_where_it_pays(trainer) -> None:
    """The trainer's decoder layers compiled where compiles_layers says so (never on the CPU)."""
    if compiles_layers(trainer):
        log.info("Compiling the decoder layers: expected to save %.0f s", compile_saving_s(*job_tokens(trainer)))
        compile_decoder_layers(trainer.model)
