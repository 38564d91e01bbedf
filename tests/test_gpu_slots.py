"""One GPU per local GPU job (scripts/huatuo_study/model/gpu_slots.py), on the CPU with a stand-in device list
(PIPELINE_GPUS): concurrent processes never share a GPU, a job that finds none free waits, a
SIGKILLed job's GPU comes back, the job sees only its own GPUs; SLURM jobs and CPU jobs claim
nothing; nvidia-smi's list counts the GPUs where no list is given."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from huatuo_study.common import PipelineError
from huatuo_study.model import gpu_slots

# A GPU job as far as its slot goes: claim `count` GPUs, say which, hold them until killed.
HOLDER = """
import sys, time
sys.path.insert(0, {scripts!r})
import os
from huatuo_study.model import gpu_slots
ids = gpu_slots.take_gpus(int(sys.argv[1]), "cuda")
print(os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
time.sleep(600)
"""


@pytest.fixture
def slots(tmp_path, monkeypatch):
    """A stand-in machine with GPUs 0 and 1, its lock folder under tmp_path; holder processes
    started by start(count), each killed at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "CUDA_VISIBLE_DEVICES"}
    env.update({gpu_slots.GPUS_ENV: "0,1", gpu_slots.LOCKS_ENV: str(tmp_path / "locks")})
    script = tmp_path / "holder.py"
    script.write_text(HOLDER.format(scripts=str(REPO / "scripts")), encoding="utf-8")
    started = []

    def start(count=1):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(count)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def gpus_of(proc, timeout=30.0) -> str:
    """The CUDA_VISIBLE_DEVICES a holder printed once it held its GPUs."""
    os.set_blocking(proc.stdout.fileno(), True)
    deadline = time.monotonic() + timeout
    line = ""
    while not line and time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        assert line or proc.poll() is None, proc.stderr.read()
    assert line, "the holder claimed nothing in time"
    return line


def still_waiting(proc, seconds=3.0) -> bool:
    """True when the holder printed nothing for `seconds` (it waits for a GPU) and still runs."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        return not selector.select(timeout=seconds) and proc.poll() is None


@pytest.mark.slow
def test_concurrent_jobs_never_share_a_gpu_and_a_killed_jobs_gpu_comes_back(slots):
    first, second = slots(), slots()
    first_gpu, second_gpu = gpus_of(first), gpus_of(second)
    assert {first_gpu, second_gpu} == {"0", "1"}
    third = slots()  # more jobs than GPUs (--resources gpu=3 on two): the third waits
    assert still_waiting(third)
    os.kill(first.pid, signal.SIGKILL)  # no cleanup runs: the kernel drops its lock
    first.wait()
    assert gpus_of(third) == first_gpu
    assert still_waiting(slots())  # the second and the third hold both GPUs


@pytest.mark.slow
def test_a_job_of_two_gpus_takes_both_or_waits(slots):
    one = slots(1)
    assert gpus_of(one) in {"0", "1"}
    both = slots(2)
    assert still_waiting(both)  # it holds no GPU while it waits: a one-GPU job still gets the other
    os.kill(one.pid, signal.SIGKILL)
    one.wait()
    assert sorted(gpus_of(both).split(",")) == ["0", "1"]


def test_the_claimed_gpus_are_the_only_visible_ones(tmp_path):
    env = {gpu_slots.GPUS_ENV: "3,5", gpu_slots.LOCKS_ENV: str(tmp_path), "CUDA_VISIBLE_DEVICES": "3,5"}
    ids = gpu_slots.take_gpus(1, "cuda", env)
    assert ids == ["3"] and env["CUDA_VISIBLE_DEVICES"] == "3"
    assert gpu_slots.job_gpus("cuda", env) == "3"
    # flock locks belong to open files: a second claim in this process sees GPU 3 taken too
    ids, files = gpu_slots.try_claim(1, ["3", "5"], tmp_path)
    assert ids == ["5"]
    assert gpu_slots.try_claim(1, ["3", "5"], tmp_path) is None  # both held now
    for f in files:
        f.close()
    assert gpu_slots.try_claim(1, ["3", "5"], tmp_path)[0] == ["5"]  # closing releases


def test_slurm_and_cpu_jobs_claim_nothing(tmp_path):
    slurm = {"SLURM_JOB_ID": "42", "CUDA_VISIBLE_DEVICES": "0", gpu_slots.LOCKS_ENV: str(tmp_path)}
    assert gpu_slots.take_gpus(1, "cuda", slurm) is None
    assert slurm["CUDA_VISIBLE_DEVICES"] == "0" and not any(tmp_path.iterdir())
    cpu = {gpu_slots.GPUS_ENV: "0", gpu_slots.LOCKS_ENV: str(tmp_path)}
    assert gpu_slots.take_gpus(1, "cpu", cpu) is None and "CUDA_VISIBLE_DEVICES" not in cpu
    assert gpu_slots.take_gpus(0, "cuda", cpu) is None and "CUDA_VISIBLE_DEVICES" not in cpu
    assert gpu_slots.job_gpus("cpu", cpu) is None


def test_more_gpus_than_the_machine_has_is_an_error(tmp_path):
    env = {gpu_slots.GPUS_ENV: "0", gpu_slots.LOCKS_ENV: str(tmp_path)}
    with pytest.raises(PipelineError, match=r"needs 2 GPU\(s\) but 1 are here \(0\)"):
        gpu_slots.take_gpus(2, "cuda", env)


def test_the_gpus_come_from_the_list_the_visible_devices_or_nvidia_smi(tmp_path, monkeypatch):
    assert gpu_slots.visible_gpus({gpu_slots.GPUS_ENV: "0, 2", "CUDA_VISIBLE_DEVICES": "1"}) == ["0", "2"]
    assert gpu_slots.visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-a1,GPU-b2"}) == ["GPU-a1", "GPU-b2"]
    assert gpu_slots.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []  # the user hid every GPU
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-1)'\necho 'GPU 1: NVIDIA H200 (UUID: GPU-2)'\n"
        "echo '  MIG 1g.18gb Device 0: (UUID: MIG-3)'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert gpu_slots.visible_gpus({}) == ["0", "1"]


def test_the_default_lock_folder_is_the_machines_not_the_runs(monkeypatch):
    assert gpu_slots.lock_dir({gpu_slots.LOCKS_ENV: "/x/locks"}) == Path("/x/locks")
    folder = gpu_slots.lock_dir({})
    assert folder.parent == Path(__import__("tempfile").gettempdir()) and str(os.getuid()) in folder.name


# A job that starts a child with its locks (train_adapter's torchrun), prints the child's pid, dies.
PARENT = """
import subprocess, sys
sys.path.insert(0, {scripts!r})
from huatuo_study.model import gpu_slots
gpu_slots.take_gpus(1, "cuda")
child = subprocess.Popen(["sleep", "600"], pass_fds=gpu_slots.held_files(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
"""


@pytest.mark.slow
def test_a_child_given_the_locks_keeps_the_gpu_after_its_parent_died(tmp_path):
    env = {**os.environ, gpu_slots.GPUS_ENV: "0", gpu_slots.LOCKS_ENV: str(tmp_path / "locks")}
    env.pop("SLURM_JOB_ID", None)
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(scripts=str(REPO / "scripts")), encoding="utf-8")
    parent = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert parent.returncode == 0, parent.stderr
    child = int(parent.stdout.strip())
    try:
        assert gpu_slots.try_claim(1, ["0"], tmp_path / "locks") is None  # the parent is gone, the child holds it
    finally:
        os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (claimed := gpu_slots.try_claim(1, ["0"], tmp_path / "locks")) is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the killed child is reaped by init before its files close
    assert claimed and claimed[0] == ["0"]
