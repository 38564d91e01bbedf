"""One GPU of its own for each GPU job of a local run. Snakemake's `--resources gpu=N` only counts:
it lets N GPU jobs run at once but tells none of them which card to use, so each would take
cuda:0. A job here claims free GPUs at its start by locking one file per GPU (fcntl.flock), keeps
the locks for its lifetime, and sees only its own GPUs (CUDA_VISIBLE_DEVICES, set before torch
initialises CUDA). The kernel drops a process's locks when it exits in any way, SIGKILL included,
so a killed job's GPU comes back without any cleanup. A job that finds too few free GPUs waits
for them: `--resources gpu=N` above the GPUs present runs no more jobs at once than there are GPUs.
Under SLURM the scheduler has already given the job its GPUs (CUDA_VISIBLE_DEVICES): nothing is
claimed. No torch here: this module runs before it is imported."""

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from huatuo_study.common import PipelineError

# The GPUs a run's jobs share, as CUDA device ids separated by commas: a stand-in list for tests,
# or a user's choice of this machine's GPUs. Unset: CUDA_VISIBLE_DEVICES, else every GPU here.
GPUS_ENV = "PIPELINE_GPUS"
# Where the lock files live. Unset: one folder per user in the system's temporary folder, so that
# every run on this machine (two clones, the demo beside the study) shares the same GPUs.
LOCKS_ENV = "PIPELINE_GPU_LOCKS"
# [ours] How often a waiting job looks for a free GPU again, in seconds.
POLL_S = 1.0

# The locks this process holds: open files, closed (and so released) only when the process ends.
_held: list = []


def scheduler_assigned(env=os.environ) -> bool:
    """A SLURM job's GPUs are the scheduler's (gres/--gpus); it sets CUDA_VISIBLE_DEVICES itself."""
    return "SLURM_JOB_ID" in env


def device_list(text: str) -> list[str]:
    return [d.strip() for d in text.split(",") if d.strip()]


def counted_gpus() -> int:
    """The NVIDIA GPUs of this machine: nvidia-smi's list, else torch's count in a child process
    (so that this process's CUDA is not initialised before it is told which GPU to use)."""
    if shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        if listed.returncode == 0:
            return sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU "))
    counted = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"], capture_output=True, text=True
    )
    return int(counted.stdout.strip()) if counted.returncode == 0 and counted.stdout.strip().isdigit() else 0


def visible_gpus(env=os.environ) -> list[str]:
    """The CUDA device ids a local run's jobs share: PIPELINE_GPUS, else CUDA_VISIBLE_DEVICES as
    the user set it (only those GPUs), else every GPU of the machine."""
    for name in (GPUS_ENV, "CUDA_VISIBLE_DEVICES"):
        if name in env:
            return device_list(env[name])
    return [str(i) for i in range(counted_gpus())]


def lock_dir(env=os.environ) -> Path:
    return Path(env.get(LOCKS_ENV) or Path(tempfile.gettempdir()) / f"pipeline-gpu-slots-{os.getuid()}")


def _lock_file(folder: Path, gpu: str) -> Path:
    return folder / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', gpu)}.lock"


def _try_lock(path: Path):
    """The open, locked file; None where another process holds it."""
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def try_claim(count: int, gpus: list[str], folder: Path) -> tuple[list[str], list] | None:
    """`count` free GPUs of `gpus`, all or none: (their ids, their locked files), else None.
    Claims are made one at a time (claims.lock), so that two jobs that each need two GPUs of two
    cannot take one each and wait for each other forever."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "claims.lock", "a+") as claims:
        fcntl.flock(claims, fcntl.LOCK_EX)  # released on close, or when a killed claimant exits
        taken = []
        for gpu in gpus:
            f = _try_lock(_lock_file(folder, gpu))
            if f is not None:
                taken.append((gpu, f))
            if len(taken) == count:
                for _, f in taken:  # for whoever looks at the lock files: which process holds them
                    f.truncate(0)
                    f.write(f"{os.getpid()}\n")
                    f.flush()
                return [gpu for gpu, _ in taken], [f for _, f in taken]
        for _, f in taken:
            f.close()
    return None


def claim(count: int, gpus: list[str], folder: Path, poll_s: float = POLL_S) -> tuple[list[str], list]:
    """Wait until `count` of `gpus` are free, then hold them: (their ids, their locked files)."""
    if count > len(gpus):
        raise PipelineError(
            f"this job needs {count} GPU(s) but {len(gpus)} are here "
            f"({','.join(gpus) or 'none'}): lower its rule's gpu resource or run where there are more"
        )
    waiting = False
    while (claimed := try_claim(count, gpus, folder)) is None:
        if not waiting:
            print(
                f"gpu_slots: all of GPUs {','.join(gpus)} are held by other jobs; waiting for {count}",
                file=sys.stderr,
                flush=True,
            )
            waiting = True
        time.sleep(poll_s)
    return claimed


def take_gpus(count: int, device: str, env=os.environ) -> list[str] | None:
    """Give this process `count` GPUs of its own for its lifetime and make them its only visible
    devices (env's CUDA_VISIBLE_DEVICES). None where nothing is claimed: a CPU job, a job that needs
    no GPU, a SLURM job (the scheduler's GPUs), or a machine with no GPU (the job's device check
    then says so)."""
    if device != "cuda" or count < 1 or scheduler_assigned(env):
        return None
    gpus = visible_gpus(env)
    if not gpus:
        return None
    ids, files = claim(count, gpus, lock_dir(env))
    _held.extend(files)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    return ids


def take_for_job(smk) -> list[str] | None:
    """A Snakemake job's GPUs: as many as its rule's `gpu` resource, where its device is cuda. It
    runs before the stage's logging is set up: what it says goes to stderr."""
    try:
        ids = take_gpus(int(getattr(smk.resources, "gpu", 0)), smk.params.device)
    except PipelineError as e:
        print(f"{smk.rule}: {e}", file=sys.stderr)
        sys.exit(1)
    if ids:
        print(f"gpu_slots: {smk.rule} runs on GPU {','.join(ids)}", file=sys.stderr, flush=True)
    return ids


def held_files() -> list[int]:
    """The descriptors of this process's GPU locks: a child given them (Popen's pass_fds) keeps
    the GPUs claimed while it lives, should this process die first."""
    return [f.fileno() for f in _held]


def job_gpus(device: str, env=os.environ) -> str | None:
    """The GPUs a job ran on, as CUDA_VISIBLE_DEVICES gave them ("all" where nothing restricted
    it; under SLURM, the scheduler's numbering); None on the CPU."""
    return env.get("CUDA_VISIBLE_DEVICES", "all") if device == "cuda" else None
