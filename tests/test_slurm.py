"""The SLURM profile on a real SLURM: tests/slurm/start.sh starts Debian's slurmctld + slurmd (22.05)
and munge on 127.0.0.1 (one node, 2 CPUs, one GPU GRES backed by /dev/null), the demo DAG runs
through `--profile profiles/slurm` (plus an overlay for the test partition and node size) and must
give the same win-rate table as a local run of the same code; the GPU rules' jobs must have asked
for a GPU and been given one, the others not. The cluster is stopped (by PID) and /etc/slurm put
back as it was. Skipped where it cannot run: not root, no apt-get to install SLURM, a SLURM already
running here, or PIPELINE_SKIP_SLURM set. Without a cluster: a dry run of the study through the
profile shows each setting's jobs sized by its base model. And one training job cancelled (scancel)
or requeued (scontrol requeue) once it has a checkpoint: run again, it resumes from it."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from dag import DEMO, SETTINGS, SNAKEMAKE, copy_repo, job_stats, overlay, read_csv

# The profile is under test, not the study's design: one replicate keeps the DAG small.
ONE_REPLICATE = "one_replicate.yaml"
RUN = [*DEMO, ONE_REPLICATE]

SLURM_DIR = REPO / "tests" / "slurm"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
CANNOT_RUN = 77  # start.sh's exit status for "not here", with the reason on its last stderr line
GPU_RULES = {
    "train_adapter",
    "generate_answers",
    "baseline_answers",
    "merged_model",
}  # the demo's baseline is a model; it exports merged models
TIMINGS = {}


def cannot_run_reason():
    if os.environ.get("PIPELINE_SKIP_SLURM"):
        return "PIPELINE_SKIP_SLURM is set"
    if not sys.platform.startswith("linux"):
        return "the test SLURM needs Linux"
    if os.geteuid() != 0:
        return "the test SLURM needs root (it installs Debian's slurm packages and runs slurmd)"
    if not shutil.which("apt-get") and not Path("/usr/sbin/slurmctld").exists():
        return "SLURM is not installed and apt-get is not there to install it"
    return None


def planned_resources(cwd, *args) -> dict[tuple[str, str], dict[str, str]]:
    """(rule, wildcards) -> resources of each job of a dry run."""
    proc = subprocess.run(
        [*SNAKEMAKE, "-n", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": ""},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", proc.stdout):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        res = re.search(r"^    resources: (.*)$", block, re.M)
        if head and res:
            wildcards = re.search(r"^    wildcards: (.*)$", block, re.M)
            jobs[(head[1], wildcards[1] if wildcards else "")] = dict(
                kv.split("=", 1) for kv in res[1].split(", ") if "=" in kv
            )
    return jobs


def test_profile_sizes_the_studys_jobs_by_setting(tmp_path):
    """No cluster needed: the study's DAG through the profile, as a dry run."""
    root = copy_repo(tmp_path)
    shutil.copytree(PROFILE.parent, root / "profiles" / "slurm")
    jobs = planned_resources(root, "--profile", "profiles/slurm", "--workflow-profile", "none")
    # One size per setting: its replicates and test sets are the same job to SLURM.
    sizes = {"train_adapter": {}, "generate_answers": {}}
    for (rule, wc), res in jobs.items():
        if rule in sizes:
            assert res["gpu"] == "1" and res["cpus_per_task"] == "4", (rule, wc, res)
            sizes[rule].setdefault(re.search(r"setting=([^,]+)", wc)[1], []).append(res)
    for rule, by_setting in sizes.items():
        for setting, each in by_setting.items():
            assert all(res == each[0] for res in each), (rule, setting, each)
    train = {setting: each[0] for setting, each in sizes["train_adapter"].items()}
    generate = {setting: each[0] for setting, each in sizes["generate_answers"].items()}
    assert set(train) == {"setting1", "setting2", "setting3", "setting4"}  # the controls train nothing
    assert set(generate) == {*train, "control-4b", "control-14b"}
    big, small = train["setting2"], train["setting1"]  # Qwen3-14B, Qwen3-4B
    assert int(big["mem_mb"]) > int(small["mem_mb"]) and int(big["runtime"]) > int(small["runtime"])
    assert int(generate["setting2"]["mem_mb"]) > int(generate["setting1"]["mem_mb"])
    assert generate["control-14b"] == generate["setting2"] and generate["control-4b"] == generate["setting1"]
    for setting in ("setting1", "setting3", "setting4"):  # the three Qwen3-4B settings
        assert train[setting] == small
    for (rule, _), res in jobs.items():
        if rule not in GPU_RULES and rule != "all":
            assert res.get("gpu", "0") == "0" and res["cpus_per_task"] == "1", (rule, res)


# Both runs compute with one thread per job: the same arithmetic, and two cores shared by the local
# run and the SLURM node without oversubscription.
RUN_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def stop_process(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The demo DAG run locally (one core) in its own copy of the tree, started before the cluster
    so that it overlaps the cluster's start (and package install) and the SLURM run."""
    reason = cannot_run_reason()
    if reason:
        pytest.skip(reason)
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.fail("snakemake-executor-plugin-slurm is not installed: pip install -r requirements.txt")
    # One snapshot of the tree for both runs: the local copy, then the cluster copy made from it.
    root = copy_repo(tmp_path_factory.mktemp("local"))
    overlay(root, ONE_REPLICATE, {"replicates": 1})
    cluster = tmp_path_factory.mktemp("cluster")
    shutil.copytree(root, cluster, dirs_exist_ok=True)
    shutil.copytree(PROFILE.parent, cluster / "profiles" / "slurm")
    log = open(root / "snakemake-local.log", "w", encoding="utf-8")
    proc = subprocess.Popen(
        [*SNAKEMAKE, "--cores", "1", "--workflow-profile", "none", *RUN],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=RUN_ENV,
        start_new_session=True,
    )
    try:
        yield {"root": root, "cluster": cluster, "proc": proc, "started": time.monotonic()}
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running single-node SLURM for this module; its facts (partition, CPUs, memory, logs)."""
    reason = cannot_run_reason()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(SLURM_DIR / "start.sh"), str(state)],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode == CANNOT_RUN:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, f"tests/slurm/start.sh failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    TIMINGS["slurm start"] = time.monotonic() - started
    facts = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    try:
        yield facts
    finally:
        stop = subprocess.run(
            ["bash", str(SLURM_DIR / "stop.sh"), str(state)],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        assert stop.returncode == 0, f"tests/slurm/stop.sh failed:\n{stop.stderr[-4000:]}"


def write_overlay(root, slurm) -> str:
    """The profile as it is, but for the test cluster: its partition, no account, and no request
    larger than its one node (the profile's GPU jobs ask for 4 CPUs, the node has 2)."""
    profile = yaml.safe_load(PROFILE.read_text(encoding="utf-8"))
    cpus, mem_mb = int(slurm["SLURM_TEST_CPUS"]), int(slurm["SLURM_TEST_MEM_MB"])

    def fit(resources):
        fitted = {k: v for k, v in resources.items() if k not in ("slurm_account", "slurm_partition", "gpu_model")}
        if "cpus_per_task" in fitted:
            fitted["cpus_per_task"] = min(fitted["cpus_per_task"], cpus)
        if "mem_mb" in fitted:
            fitted["mem_mb"] = min(fitted["mem_mb"], mem_mb)
        return fitted

    overlay = {
        "default-resources": {**fit(profile["default-resources"]), "slurm_partition": slurm["SLURM_TEST_PARTITION"]},
        "set-resources": {rule: fit(res) for rule, res in (profile.get("set-resources") or {}).items()},
    }
    (root / "slurm-test-profile").mkdir()
    (root / "slurm-test-profile" / "config.yaml").write_text(yaml.safe_dump(overlay), encoding="utf-8")
    return "slurm-test-profile"


@pytest.fixture(scope="module")
def runs(local_run, slurm):
    """The demo DAG through SLURM (`--profile profiles/slurm` + the test overlay), and the local run."""
    cluster = local_run["cluster"]
    overlay = write_overlay(cluster, slurm)
    started = time.monotonic()
    log_path = cluster / "snakemake-slurm.log"
    with open(log_path, "w", encoding="utf-8") as log:
        # --verbose: the plugin logs each sbatch call, i.e. what every job asked SLURM for.
        proc = subprocess.Popen(
            [*SNAKEMAKE, "--profile", "profiles/slurm", "--workflow-profile", overlay, "--verbose", *RUN],
            cwd=cluster,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=RUN_ENV,
            start_new_session=True,
        )
        try:
            local_returncode = local_run["proc"].wait(timeout=900)
            TIMINGS["local run"] = time.monotonic() - local_run["started"]
            returncode = proc.wait(timeout=900)
        finally:
            stop_process(proc)
    TIMINGS["slurm run"] = time.monotonic() - started
    output = log_path.read_text(encoding="utf-8")
    local_output = (local_run["root"] / "snakemake-local.log").read_text(encoding="utf-8")
    assert local_returncode == 0, f"the local run failed:\n{local_output[-6000:]}"
    assert returncode == 0, f"the SLURM run failed ({returncode}):\n{output[-8000:]}"
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in TIMINGS.items()))
    return {"cluster": cluster, "local": local_run["root"], "output": output}


def test_slurm_run_gives_the_local_win_rate_table(runs):
    table = "results/demo/tables/small/primary/winrate.csv"
    via_slurm = (runs["cluster"] / table).read_text(encoding="utf-8")
    local = (runs["local"] / table).read_text(encoding="utf-8")
    assert via_slurm == local, f"SLURM:\n{via_slurm}\nlocal:\n{local}"
    assert len(via_slurm.splitlines()) == 1 + len(SETTINGS)  # header + the settings
    assert (runs["cluster"] / "results/demo/paper/paper.tex").exists()
    # Snakemake's own view of the SLURM run's outputs and metadata: nothing is left to do locally.
    dry = subprocess.run(
        [*SNAKEMAKE, "-n", "--cores", "1", "--workflow-profile", "none", *RUN],
        cwd=runs["cluster"],
        capture_output=True,
        text=True,
    )
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]


def local_job_sizes(output: str, rule: str) -> set[tuple[str, str]]:
    """(runtime, mem_mb) of the rule's jobs as the local run shows them: the rule's own sizing."""
    blocks = re.findall(rf"^localrule {rule}:\n(?:    .*\n)*?    resources: (.*)$", output, re.M)
    return {(re.search(r"runtime=(\d+)", b)[1], re.search(r"mem_mb=(\d+)", b)[1]) for b in blocks}


def slurm_jobs(output: str) -> dict[str, dict]:
    """SLURM job id -> {rule, call}: the plugin's 'submitted with SLURM jobid N (log: ...)' lines,
    joined through the job's log folder (rule_<name>/<wildcards>/) with its 'sbatch call' (--verbose)."""
    calls = {
        re.search(r"--output (\S+)/%j\.log", call)[1]: call for call in re.findall(r"sbatch call: (sbatch .*)", output)
    }
    jobs = {}
    for job, folder in re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)/\d+\.log\)", output):
        jobs[job] = {"rule": re.search(r"/slurm_logs/rule_(\w+)", folder)[1], "call": calls[folder]}
    return jobs


def test_every_job_went_through_slurm_and_exactly_the_gpu_rules_asked_for_a_gpu(runs, slurm):
    jobs = slurm_jobs(runs["output"])
    local = (runs["local"] / "snakemake-local.log").read_text(encoding="utf-8")
    expected = {rule: n for rule, n in job_stats(local).items() if rule != "all"}
    submitted = {}
    for job in jobs.values():
        submitted[job["rule"]] = submitted.get(job["rule"], 0) + 1
    assert submitted == expected  # every job of the DAG was a SLURM job
    assert GPU_RULES <= set(submitted)

    given = dict(re.findall(r"JobId=(\d+) Gpus=(\S+)", Path(slurm["SLURM_TEST_EPILOG"]).read_text()))
    records = {
        m[1]: m[0] for m in re.finditer(r"^JobId=(\d+) .*$", Path(slurm["SLURM_TEST_JOBCOMP"]).read_text(), re.M)
    }
    for job_id, job in jobs.items():
        rule, call = job["rule"], job["call"]
        # What the job asked for (the sbatch call) ...
        assert f"-p {slurm['SLURM_TEST_PARTITION']} " in call, call
        assert ("--gpus=1" in call) == (rule in GPU_RULES), f"{rule} (SLURM job {job_id}): {call}"
        # ... what slurmd gave it (the epilog's SLURM_JOB_GPUS; no sacct without slurmdbd) ...
        assert job_id in given, f"SLURM job {job_id} ({rule}) has no epilog record"
        assert (given[job_id] != "none") == (rule in GPU_RULES), f"{rule} (SLURM job {job_id}) got GPUs {given[job_id]}"
        # ... and how it ended, with the time and memory it asked for (jobcomp/filetxt).
        record = records[job_id]
        runtime, mem_mb = re.search(r" -t (\d+)", call)[1], re.search(r" --mem (\d+)", call)[1]
        assert "JobState=COMPLETED" in record and f"TimeLimit={runtime} " in record and f"mem={mem_mb}M" in record, (
            record
        )
        # Training and generation are sized per setting by their rules (rules/common.smk), not by
        # the profile's defaults.
        if rule in ("train_adapter", "generate_answers"):
            assert (runtime, mem_mb) in local_job_sizes(local, rule), f"{rule}: -t {runtime} --mem {mem_mb}"


# Issue 15, "a SLURM training job killed mid-run (scancel) or requeued": one training job of the demo
# through the profile, its SLURM job killed (scancel) or requeued (scontrol requeue) once it has
# written a checkpoint. A cancelled job is a failed job to the plugin (CANCELLED is in its fail
# states), so the profile's `retries: 1` resubmits it as a new SLURM job; a requeued job keeps its
# SLURM id and is only PENDING again to the plugin, which waits for it. Either way the training
# that runs again finds the checkpoint (results/<run>/checkpoints, beside the outputs on the shared
# file system) and resumes from it instead of starting over.
TRAIN_TARGET = "results/demo/adapters/setting1/rep0"
# 4 epochs instead of 2 (48 optimizer steps, a checkpoint every 10): a few seconds between the first
# checkpoint and the end of training on a busy 2-core machine are too few to cancel in reliably.
LONGER_TRAINING = "longer_training.yaml"
TRAIN_STEPS = 48


def squeue_state(job_id: str) -> str:
    """The job's state as the profile's status command sees it ('' once SLURM forgot it)."""
    proc = subprocess.run(["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return proc.stdout.strip()


def wait_for(condition, proc, log_path, what, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(
                f"snakemake exited ({proc.returncode}) before {what}:\n"
                f"{log_path.read_text(encoding='utf-8', errors='replace')[-6000:]}"
            )
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:\n{log_path.read_text(encoding='utf-8', errors='replace')[-6000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["scancel", "requeue"])
def test_a_training_job_killed_in_slurm_resumes_from_its_checkpoint(slurm, tmp_path, fault):
    started = time.monotonic()
    root = copy_repo(tmp_path)
    shutil.copytree(PROFILE.parent, root / "profiles" / "slurm")
    overlay(root, LONGER_TRAINING, {"settings": {"setting1": {"training": {"num_train_epochs": 4}}}})
    run = [*DEMO, LONGER_TRAINING]
    test_profile = write_overlay(root, slurm)
    checkpoints = root / "results/demo/checkpoints/setting1/rep0"
    log_path = root / "snakemake-slurm.log"

    def training_job():
        jobs = slurm_jobs(log_path.read_text(encoding="utf-8", errors="replace"))
        return next((job for job, info in jobs.items() if info["rule"] == "train_adapter"), None)

    def saved_checkpoints():  # complete ones: the Trainer writes trainer_state.json last
        return sorted(
            (p.parent for p in checkpoints.glob("*/checkpoint-*/trainer_state.json")),
            key=lambda p: int(p.name.split("-")[1]),
        )

    with open(log_path, "w", encoding="utf-8") as log:
        # The target first: --configfile takes every path after it (run ends with it). --verbose: the sbatch calls;
        # --slurm-keep-successful-logs: the retried job's own SLURM log is kept to be read.
        proc = subprocess.Popen(
            [
                *SNAKEMAKE,
                TRAIN_TARGET,
                "--profile",
                "profiles/slurm",
                "--workflow-profile",
                test_profile,
                "--verbose",
                "--slurm-keep-successful-logs",
                *run,
            ],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=RUN_ENV,
            start_new_session=True,
        )
        try:
            first = wait_for(training_job, proc, log_path, "the training job's submission")
            wait_for(
                lambda: squeue_state(first) == "RUNNING" and saved_checkpoints(),
                proc,
                log_path,
                f"SLURM job {first} RUNNING with a checkpoint written",
            )
            before = saved_checkpoints()
            if fault == "scancel":
                subprocess.run(["scancel", first], check=True)
                wait_for(lambda: squeue_state(first) == "CANCELLED", proc, log_path, f"job {first} CANCELLED")
            else:
                subprocess.run(["scontrol", "requeue", first], check=True)
            to_fault = time.monotonic() - started
            returncode = proc.wait(timeout=900)
        finally:
            stop_process(proc)
    output = log_path.read_text(encoding="utf-8", errors="replace")
    print(f"timings (s): {fault} after {to_fault:.0f}, whole run {time.monotonic() - started:.0f}")
    print(f"checkpoints at the fault: {[p.name for p in before]}")
    assert returncode == 0, f"the SLURM run failed ({returncode}):\n{output[-8000:]}"

    trainings = [job for job, info in slurm_jobs(output).items() if info["rule"] == "train_adapter"]
    records = Path(slurm["SLURM_TEST_JOBCOMP"]).read_text(encoding="utf-8")
    states = {job: re.findall(rf"^JobId={job} .*?JobState=(\w+)", records, re.M) for job in trainings}
    print(f"training SLURM jobs and their jobcomp states: {states}")
    slurm_log = root / ".snakemake/slurm_logs/rule_train_adapter/setting1_0"
    if fault == "scancel":
        # Snakemake's retry: a second sbatch for the same job, which completed.
        assert "Trying to restart job" in output, output[-6000:]
        assert len(trainings) == 2 and trainings[0] == first, trainings
        retry = trainings[1]
        assert states[first][-1] == "CANCELLED" and states[retry][-1] == "COMPLETED", states
        assert "CANCELLED" in (slurm_log / f"{first}.log").read_text(encoding="utf-8", errors="replace")
    else:
        # SLURM's own requeue: the same job ran again; Snakemake saw it pending and waited.
        assert "Trying to restart job" not in output, output[-6000:]
        assert trainings == [first], trainings
        retry = first
        # Two jobcomp records (22.05 logs the requeue as PENDING), and slurmctld counts the restart.
        # SLURM holds a requeued job back for AuthInfo's cred_expire (120 s by default, Reason=
        # BeginTime) before it starts it again: most of this case's time.
        assert len(states[first]) == 2 and states[first][-1] == "COMPLETED", states
        shown = subprocess.run(["scontrol", "show", "job", first], capture_output=True, text=True).stdout
        assert "Restarts=1 " in shown, shown
    # A SLURM log holds tqdm's bars as they were flushed, a character sometimes cut in two.
    retried_log = (slurm_log / f"{retry}.log").read_text(encoding="utf-8", errors="replace")
    train_log = (root / "results/demo/logs/train_adapter/setting1/rep0.log").read_text(encoding="utf-8")
    # The training that ran again resumed from a checkpoint (it logs this before training a step, so
    # the checkpoint is the first attempt's), at least as late as the one seen before the fault.
    resumed = re.findall(r"Resuming from (\S+)", train_log)
    assert len(resumed) == 1, train_log
    assert re.search(rf"Resuming from {re.escape(resumed[0])}", retried_log), retried_log[-4000:]
    resumed_at = root / resumed[0]
    assert resumed_at.parent == before[-1].parent, (resumed_at, before)  # the same fingerprint folder
    assert int(before[-1].name.split("-")[1]) <= int(resumed_at.name.split("-")[1]) < TRAIN_STEPS
    # It finished the recipe: every step once, the adapter and its loss curve, no checkpoint left.
    results = root / "results/demo"
    assert (results / "adapters/setting1/rep0/adapter_config.json").exists()
    stats = yaml.safe_load((results / "train_stats/setting1/rep0.json").read_text(encoding="utf-8"))
    assert stats["global_step"] == TRAIN_STEPS, stats
    steps = [int(r["step"]) for r in read_csv(results / "losses/setting1/rep0.csv") if r["split"] == "train"]
    assert steps == list(range(1, TRAIN_STEPS + 1)), steps
    assert not checkpoints.exists()
    dry = subprocess.run(
        [*SNAKEMAKE, TRAIN_TARGET, "-n", "--cores", "1", "--workflow-profile", "none", *run],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:] + dry.stderr[-3000:]
