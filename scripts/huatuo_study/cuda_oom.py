"""A CUDA out-of-memory error as one message (common.run_stage prints it): the job, the GPU memory
it had and this job's peaks, and the config keys that make that rule's job use less memory, with
their values. A real one from the device is in bench/OOM_MESSAGE.md."""

import sys


def is_cuda_oom(error: BaseException) -> bool:
    """Whether `error` is torch's CUDA out-of-memory error. Torch is never imported here: a stage
    that did not load it cannot have raised it."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    return oom is not None and isinstance(error, oom)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _gpu_memory() -> str:
    """The card, its memory and this process's peaks, as torch sees them (CUDA only)."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_available():
            return "(GPU memory unknown: torch sees no CUDA device)"
        free, total = torch.cuda.mem_get_info()
        allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
        return (
            f"on {torch.cuda.get_device_name()} with {_gib(total)} ({_gib(free)} free now; "
            f"this job's peak {_gib(allocated)} allocated, {_gib(reserved)} reserved)"
        )
    except Exception as e:  # the report must never hide the error it reports
        return f"(GPU memory unreadable: {type(e).__name__})"


def _memory_knobs(smk) -> str:
    """The config keys that make this rule's job use less GPU memory, with their values."""
    params, wildcards = getattr(smk, "params", None), _wildcards(smk)

    def now(section: dict, key: str) -> str:
        return f" (now {section[key]})" if key in section else ""

    if smk.rule == "train_adapter":
        training = (getattr(params, "setting", None) or {}).get("training") or {}
        key = f"settings.{wildcards.get('setting', '<setting>')}.training"
        batch, accum = training.get("per_device_train_batch_size"), training.get("gradient_accumulation_steps")
        effective = f" of {batch * accum}" if isinstance(batch, int) and isinstance(accum, int) else ""
        knobs = [
            f"lower {key}.per_device_train_batch_size{now(training, 'per_device_train_batch_size')} and raise "
            f"gradient_accumulation_steps{now(training, 'gradient_accumulation_steps')} by the same factor "
            f"(keeps the effective batch{effective})",
            f"lower {key}.max_length{now(training, 'max_length')}",
        ]
        if training.get("activation_checkpointing") is not True:
            knobs.append(f"set {key}.activation_checkpointing: true")
        return "to use less: " + "; ".join(knobs)
    if smk.rule in ("generate_answers", "baseline_answers"):
        generation = getattr(params, "generation", None) or {}
        return (
            f"to use less: lower generation.batch_size{now(generation, 'batch_size')} "
            f"or generation.max_new_tokens{now(generation, 'max_new_tokens')}"
        )
    return f"rule {smk.rule} has no setting that reduces its GPU memory: run it on a larger GPU"


def _wildcards(smk) -> dict:
    wildcards = getattr(smk, "wildcards", None)
    if wildcards is None:
        return {}
    return dict(wildcards.items() if hasattr(wildcards, "items") else vars(wildcards).items())


def cuda_oom_message(smk, error: BaseException) -> str:
    """One line naming the job, the GPU memory it had and the knobs that reduce it, then the
    original error's first line."""
    wildcards = ", ".join(f"{k}={v}" for k, v in _wildcards(smk).items())
    job = f"{smk.rule} ({wildcards})" if wildcards else smk.rule
    first = (str(error).strip().splitlines() or [""])[0]
    return (
        f"{job}: CUDA out of memory {_gpu_memory()}; {_memory_knobs(smk)}\n"
        f"  {type(error).__module__}.{type(error).__qualname__}: {first}"
    )
