"""`kill -9` of the job, in every stage (a row of the fault table, docs/faults.md).

In a copy of the finished demo run, one job of the stage is forced to run again under
`snakemake --cores 1`; its own process (the stage's Python script, or paper_pdf's xelatex), never
Snakemake, gets a real SIGKILL; Snakemake notices and stops non-zero. Then:

- no output of the killed job that looks complete is left: each is absent, or Snakemake holds it
  as incomplete so that a plain run refuses (IncompleteFilesException);
- nothing else under results/ changed but hidden temporary files of the atomic writes
  (scripts/huatuo_study/common.py) and, for training, its checkpoints;
- `--rerun-incomplete` plans exactly the killed job (and, after the paper's context, the .tex
  rendered from it), finishes, and its outputs equal the uninterrupted run's byte for byte (the
  paper's context and .tex up to the "paper rendered" minute they are stamped with; the PDF, whose
  bytes carry its build time, by its text). Training resumes from its checkpoint and ends near,
  not at, the uninterrupted adapter: see its test for how near and why.

The moment of the kill is the worst one for "looks complete": right after the job has moved its
first output into place (a job with more outputs has the rest still to write; a job with one is
between its write and its exit). The job runs in short slices between SIGSTOPs while the test
looks, so that however fast it is the SIGKILL lands at that moment. Training is killed after its
first checkpoint; paper_pdf's xelatex while it compiles (the rule's shell then fails, and its trap
removes the build folder).

The strict xfails are bugs these kills found (their reasons say where); each fails at the one
check its bug breaks (raises=BugShows), so any other failure still fails the suite.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from dag import DEMO, SNAKEMAKE, planned_jobs, read_csv, snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds and stops the job through /proc (Linux)"),
]

RESULTS = Path("results") / "demo"
TABLES = "tables/small/primary"
KILL_TIMEOUT_S = 600


class BugShows(AssertionError):
    """The check that a strict xfail test exists for failed: the bug its reason names shows."""


def expect(condition, message: str) -> None:
    if not condition:
        raise BugShows(message)


@dataclass(frozen=True)
class Stage:
    rule: str
    outputs: tuple[str, ...]  # the killed job's outputs, relative to results/demo
    process: str  # its process: the script's name as Snakemake runs it (tmpXXXX.<name>.py), or a command
    targets: tuple[str, ...] = ()  # what the rerun asks for (default: the outputs)
    rerun_jobs: dict = field(default_factory=dict)  # jobs the rerun plans besides the killed one
    compared: tuple[str, ...] = ()  # compared with the uninterrupted run (default: the outputs)
    kill_at_once: bool = False  # killed as soon as it runs, not after its first output


STAGES = {
    "data": Stage(
        "split_data",
        ("data/train.jsonl", "data/val.jsonl", "data/heldout.jsonl", "data/split_stats.json"),
        ".split_data.py",
    ),
    "augmentation": Stage(
        "augment_train", ("data/train_augmented.jsonl", "data/augment_stats.json"), ".augment_train.py"
    ),
    # Its stats file holds timings: only the answers are compared.
    "generation": Stage(
        "generate_answers",
        ("generations/small/setting1/rep0.jsonl", "generation_stats/small/setting1/rep0.json"),
        ".generate_answers.py",
        compared=("generations/small/setting1/rep0.jsonl",),
    ),
    "judge": Stage("judge_pairwise", ("verdicts/small/primary/setting1/rep0.jsonl",), ".judge_pairwise.py"),
    "tables-winrate": Stage(
        "winrate_table",
        tuple(f"{TABLES}/{name}" for name in ("winrate.csv", "winrate.json", "pairwise.csv", "replicates.csv")),
        ".winrate_table.py",
    ),
    "tables-claims": Stage("claims_table", (f"{TABLES}/claims.csv", f"{TABLES}/claims.json"), ".claims_table.py"),
    # A missing context.json alone reruns nothing while the .tex made from it is there (Snakemake
    # does not remake intermediate files): the rerun asks for both.
    "paper-context": Stage(
        "paper_context",
        ("paper/context.json",),
        ".paper_context.py",
        targets=("paper/context.json", "paper/paper.tex"),
        rerun_jobs={"render_tex": 1},
        compared=("paper/context.json", "paper/paper.tex"),
    ),
    "paper-pdf": Stage("paper_pdf", ("paper/paper.pdf",), "xelatex", kill_at_once=True),
}

# The training job killed: setting1's first replicate (24 steps, a checkpoint every 10).
TRAIN_SETTING, TRAIN_REP = "setting1", 0
# The demo's recipes report to TensorBoard: its event folder is an output of the job too.
TRAIN_OUTPUTS = (
    f"adapters/{TRAIN_SETTING}/rep{TRAIN_REP}",
    f"losses/{TRAIN_SETTING}/rep{TRAIN_REP}.csv",
    f"train_stats/{TRAIN_SETTING}/rep{TRAIN_REP}.json",
    f"tensorboard/{TRAIN_SETTING}/rep{TRAIN_REP}",
)
TRAIN_CHECKPOINTS = f"checkpoints/{TRAIN_SETTING}/rep{TRAIN_REP}"
TRAIN_LOG = f"logs/train_adapter/{TRAIN_SETTING}/rep{TRAIN_REP}.log"


# --- the job's process, through /proc ------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:  # a process may end while it is looked at
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in Path(f"/proc/{parent}/task/{task}/children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def state(pid: int) -> str | None:
    """The process's state letter (R, S, T stopped, Z zombie...), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def is_job(cmd: list[str], process: str) -> bool:
    """A Python running the stage's script (Snakemake's temporary copy, tmpXXXX.<name>.py), or the
    named command itself (not the shell or latexmk that only mention it)."""
    if not cmd:
        return False
    program = os.path.basename(cmd[0])
    if process.endswith(".py"):
        return program.startswith("python") and any(arg.endswith(process) for arg in cmd[1:])
    return program == process


def find_job(run: subprocess.Popen, process: str, deadline: float) -> int:
    """The job's process among the run's descendants (never another run's on this machine)."""
    while time.time() < deadline:
        for pid in descendants(run.pid):
            if is_job(cmdline(pid), process):
                return pid
        if run.poll() is not None:
            raise AssertionError(f"Snakemake ended (rc {run.returncode}) before {process} was seen running")
        time.sleep(0.002)
    raise AssertionError(f"{process} not seen running")


def kill_when(pid: int, moment: Callable[[], bool], deadline: float, slice_s: float = 0.0005) -> None:
    """Let the job run in slices of slice_s, stopped (SIGSTOP) between them while `moment()` is
    checked; SIGKILL it, still stopped, at the first check where its moment has come."""
    try:
        while time.time() < deadline:
            os.kill(pid, signal.SIGSTOP)
            while (now := state(pid)) not in ("T", "t", "Z", "X", None):
                time.sleep(0.00005)
            if now in ("Z", "X", None):
                break
            if moment():
                os.kill(pid, signal.SIGKILL)
                return
            os.kill(pid, signal.SIGCONT)
            time.sleep(slice_s)
        else:
            raise AssertionError("timed out waiting for the moment to kill the job")
    except ProcessLookupError:
        pass
    raise AssertionError(f"the job (pid {pid}) ended before the moment to kill it came")


class Run:
    """`snakemake --cores 1` in the background, its output in a file; nothing of it outlives the
    `with` block (a failing test kills what it started)."""

    def __init__(self, root: Path, log: Path, *args: str, env: dict | None = None):
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [*SNAKEMAKE, *args, "--cores", "1", *DEMO],
                cwd=root,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            for pid in descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
        self.proc.wait()

    def finish(self) -> str:
        """Snakemake's output once it has noticed the kill and stopped, non-zero."""
        rc = self.proc.wait(timeout=300)
        out = self.log.read_text(errors="replace")
        assert rc != 0, out[-3000:]
        return out


def kill_job(
    root: Path,
    tmp_path: Path,
    outputs: list[str],
    process: str,
    moment: Callable[[], bool],
    slice_s: float = 0.0005,
    env: dict | None = None,
) -> str:
    """Force the job of `outputs` to run, SIGKILL its process at `moment`; Snakemake's output."""
    with Run(root, tmp_path / "killed.log", "--force", *outputs, env=env) as run:
        deadline = time.time() + KILL_TIMEOUT_S
        pid = find_job(run.proc, process, deadline)
        kill_when(pid, moment, deadline, slice_s)
        return run.finish()


# --- the files ------------------------------------------------------------------------------------


def tree(results: Path) -> dict[str, tuple]:
    """Every file and folder under results/ (but the logs), with what identifies its content."""
    found = {}
    for path in results.rglob("*"):
        rel = path.relative_to(results).as_posix()
        if rel.startswith("logs/") or path.name == ".snakemake_timestamp":
            continue
        st = path.lstat()
        found[rel] = ("dir",) if path.is_dir() else (st.st_size, st.st_mtime_ns, st.st_ino)
    return found


def hidden_temporaries(paths) -> list[str]:
    """What scripts/huatuo_study/common.py's atomic_path/atomic_dir leave beside an output, .<name>.<random>
    (a file, or a folder and what is in it)."""
    return sorted(p for p in paths if any(part.startswith(".") for part in Path(p).parts))


def fresh(results: Path, rel: str, before: dict[str, tuple]) -> bool:
    """The output is in place and is not the one from before the run: the job moved it there."""
    path = results / rel
    if not path.exists():
        return False
    st = path.lstat()
    old = before.get(rel)
    return old is None or old == ("dir",) or old[1:] != (st.st_mtime_ns, st.st_ino)


def first_output_in_place(results: Path, outputs, before: dict[str, tuple]) -> Callable[[], bool]:
    return lambda: any(fresh(results, o, before) for o in outputs)


def assert_killed_cleanly(
    root: Path,
    outputs,
    targets: list[str],
    before: dict[str, tuple],
    allowed: Callable[[str], bool] = lambda rel: False,
) -> list[str]:
    """No output that looks complete; nothing else changed under results/ but hidden temporaries
    (returned) and what `allowed` lets through."""
    results = root / RESULTS
    present = [o for o in outputs if (results / o).exists()]
    if present:  # then Snakemake must hold them as incomplete: a plain run refuses
        proc = snakemake(root, *targets, "-n", "--cores", "1", *DEMO, check=False)
        assert proc.returncode != 0 and "IncompleteFilesException" in proc.stderr, (present, proc.stderr[-3000:])
    after = tree(results)
    changed = {rel for rel in set(before) | set(after) if before.get(rel) != after.get(rel)}
    outputs_and_inside = {rel for rel in changed if any(rel == o or rel.startswith(o + "/") for o in outputs)}
    temporaries = hidden_temporaries(changed - outputs_and_inside)
    unexpected = sorted(rel for rel in changed - outputs_and_inside - set(temporaries) if not allowed(rel))
    assert not unexpected, unexpected
    for rel in temporaries:  # never under an output's own name
        assert not any(Path(rel).name == Path(o).name for o in outputs), rel
    return temporaries


def paper_rendered_masked(text: str) -> str:
    """The context and the .tex carry the minute the paper was rendered (provenance.py's run_dates,
    "paper rendered": now); every other date in them is an input file's, unchanged."""
    at = text.index("paper rendered")
    date = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC").search(text, at)
    assert date and date.start() - at < 200, text[at : at + 300]
    return text[: date.start()] + "<rendered>" + text[date.end() :]


def pdf_text(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def copy_demo(demo_run: Path, dest: Path) -> Path:
    shutil.copytree(demo_run, dest, symlinks=True)
    return dest


# --- one test per stage ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", list(STAGES), ids=list(STAGES))
def test_kill_9_of_the_job_leaves_nothing_that_looks_complete_and_the_rerun_equals_the_run(demo_run, tmp_path, stage):
    """SIGKILL of the stage's job right after it moved its first output into place (paper_pdf: of
    xelatex while it compiles): Snakemake reports the rule's error and exits non-zero; no output is
    left that looks complete and nothing else changed but hidden temporaries; paper_pdf's build
    folder is gone; `--rerun-incomplete` plans the killed job alone (the context: and the .tex),
    after it nothing is left to do, and its outputs equal the uninterrupted run's."""
    spec = STAGES[stage]
    if spec.rule == "paper_pdf" and not (shutil.which("latexmk") and shutil.which("xelatex")):
        pytest.skip("latexmk/xelatex not installed")
    root = copy_demo(demo_run, tmp_path / "run")
    results = root / RESULTS
    outputs = [str(RESULTS / o) for o in spec.outputs]
    targets = [str(RESULTS / t) for t in spec.targets] or outputs
    before = tree(results)
    # The jobs' TMPDIR (Snakemake's tmpdir resource): paper_pdf's mktemp -d builds there (jieba and
    # torch keep their caches there too).
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()

    moment = (lambda: True) if spec.kill_at_once else first_output_in_place(results, spec.outputs, before)
    out = kill_job(root, tmp_path, outputs, spec.process, moment, env={"TMPDIR": str(tmpdir)})
    assert f"Error in rule {spec.rule}" in out, out[-3000:]
    # a script's job died of the signal; paper_pdf's shell saw xelatex die and failed
    assert ("xelatex failed on paper.tex" if spec.rule == "paper_pdf" else "SIGKILL") in out, out[-3000:]
    assert_killed_cleanly(root, spec.outputs, targets, before)
    assert not list(tmpdir.glob("tmp.*"))

    assert planned_jobs(root, *targets, "--rerun-incomplete", *DEMO) == {spec.rule: 1, **spec.rerun_jobs}
    snakemake(root, *targets, "--cores", "2", "--rerun-incomplete", *DEMO)
    assert planned_jobs(root, *targets, *DEMO) == {}
    for rel in spec.compared or spec.outputs:
        new, old = results / rel, demo_run / RESULTS / rel
        if rel.endswith(".pdf"):
            assert new.read_bytes().startswith(b"%PDF")
            if shutil.which("pdftotext"):
                assert pdf_text(new) == pdf_text(old)
        elif rel.startswith("paper/"):
            assert paper_rendered_masked(new.read_text(encoding="utf-8")) == paper_rendered_masked(
                old.read_text(encoding="utf-8")
            ), rel
        else:
            assert new.read_bytes() == old.read_bytes(), rel


# --- training: killed after its first checkpoint, resumed from it ----------------------------------


def complete_checkpoints(results: Path) -> list[Path]:
    """The training job's checkpoints that the Trainer finished saving (it writes trainer_state.json last)."""
    return sorted(p.parent for p in (results / TRAIN_CHECKPOINTS).glob("*/checkpoint-*/trainer_state.json"))


def adapter_tensors(adapter: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(adapter / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def resumed_training(demo_run, tmp_path_factory):
    """setting1 rep0's training, forced, killed once its first checkpoint is saved, then rerun with
    --rerun-incomplete: what each step left, for the tests below to check."""
    tmp_path = tmp_path_factory.mktemp("kill-training")
    root = copy_demo(demo_run, tmp_path / "run")
    results = root / RESULTS
    outputs = [str(RESULTS / o) for o in TRAIN_OUTPUTS]
    before = tree(results)
    killed = kill_job(
        root, tmp_path, outputs, ".train_adapter.py", lambda: bool(complete_checkpoints(results)), slice_s=0.05
    )
    seen = SimpleNamespace(root=root, results=results, killed=killed, checkpoints=complete_checkpoints(results))
    seen.temporaries = assert_killed_cleanly(
        root, TRAIN_OUTPUTS, outputs, before, allowed=lambda rel: (rel + "/").startswith(TRAIN_CHECKPOINTS + "/")
    )
    seen.planned = planned_jobs(root, *outputs, "--rerun-incomplete", *DEMO)
    snakemake(root, *outputs, "--cores", "2", "--rerun-incomplete", *DEMO)
    seen.log = (results / TRAIN_LOG).read_text(encoding="utf-8")
    return seen


def test_kill_9_of_training_resumes_from_its_checkpoint_and_ends_near_the_uninterrupted_adapter(
    demo_run, resumed_training
):
    """SIGKILL of the training job once checkpoint-10 (of 24 steps) is saved: no adapter, loss
    curve or stats is left, the checkpoint is kept; the rerun trains that job alone, says
    "Resuming from" that checkpoint, removes the checkpoints when done, and ends with the
    uninterrupted run's steps, epochs and parameter count.

    How far the seeds allow equality (measured on the demo, CPU, torch 2.13 / transformers 5.23 /
    peft 0.21 / trl 1.16): an uninterrupted rerun of this job is bit-identical to the first run, and
    the resume is deterministic (every resumed run gives the same numbers), and it restores the
    data order and RNG exactly (hashes of each micro-batch match the uninterrupted run's). What
    differed is the precision: TRL casts the QLoRA adapter to bfloat16, and the Trainer's resume
    reloads it through peft's load_adapter, which upcasts it to float32, so the 14 resumed steps
    trained in float32 and the saved adapter was float32 (now cast back: the test below). Measured
    before that cast:
    - the loss curve: the same rows (step, epoch, split); steps 1-10 and the step-10 validation
      loss byte-identical (restored from the checkpoint's trainer_state.json); from step 11 on the
      losses differ by at most 1.4e-4 (2.3e-5 relative), the final validation loss by 1.0e-5;
    - the final adapter: the same tensors (names, shapes); max |difference| 3.0e-3 against
      weights up to 0.14 (every one of the 7168 values differs a little; median 7e-5), relative
      Frobenius difference 0.6%.
    Casting back to bfloat16 after the reload does not make them equal either: the first resumed
    step's losses then still differ by ~1e-6 relative with identical weights and inputs.
    Asserted with margins: losses within 1e-3, weights within 1e-2 (relative Frobenius 2%)."""
    seen, results = resumed_training, resumed_training.results
    old_results = demo_run / RESULTS
    assert "Error in rule train_adapter" in seen.killed and "SIGKILL" in seen.killed, seen.killed[-3000:]
    assert [c.name for c in seen.checkpoints] == ["checkpoint-10"]
    assert seen.planned == {"train_adapter": 1}
    checkpoint = seen.checkpoints[0].relative_to(seen.root)
    assert f"Resuming from {checkpoint}" in seen.log, seen.log[-3000:]
    assert not (results / TRAIN_CHECKPOINTS).exists()  # done: nothing left to resume

    new_loss, old_loss = read_csv(results / TRAIN_OUTPUTS[1]), read_csv(old_results / TRAIN_OUTPUTS[1])
    assert [(r["step"], r["epoch"], r["split"]) for r in new_loss] == [
        (r["step"], r["epoch"], r["split"]) for r in old_loss
    ]
    for new, old in zip(new_loss, old_loss):
        if int(old["step"]) <= 10:
            assert new == old
        else:
            assert abs(float(new["loss"]) - float(old["loss"])) < 1e-3, (new, old)

    new_t, old_t = adapter_tensors(results / TRAIN_OUTPUTS[0]), adapter_tensors(old_results / TRAIN_OUTPUTS[0])
    assert {k: v.shape for k, v in new_t.items()} == {k: v.shape for k, v in old_t.items()}
    diff = max((new_t[k].float() - old_t[k].float()).abs().max().item() for k in old_t)
    norm = sum(old_t[k].float().pow(2).sum().item() for k in old_t) ** 0.5
    relative = sum((new_t[k].float() - old_t[k].float()).pow(2).sum().item() for k in old_t) ** 0.5 / norm
    assert diff < 1e-2 and relative < 2e-2, (diff, relative)

    new_config = json.loads((results / TRAIN_OUTPUTS[0] / "adapter_config.json").read_text())
    old_config = json.loads((old_results / TRAIN_OUTPUTS[0] / "adapter_config.json").read_text())
    for config in (new_config, old_config):  # peft writes a set: its order follows string hashing
        config["target_modules"] = sorted(config["target_modules"])
    assert new_config == old_config
    new_stats = json.loads((results / TRAIN_OUTPUTS[2]).read_text())
    old_stats = json.loads((old_results / TRAIN_OUTPUTS[2]).read_text())
    for timing in ("train_runtime_s", "train_tokens_per_s"):
        assert new_stats.pop(timing) > 0
        old_stats.pop(timing)
    assert new_stats == old_stats


def test_a_resumed_training_keeps_the_adapter_precision_of_an_uninterrupted_one(demo_run, resumed_training):
    """The Trainer's resume reloads the adapter through peft's load_adapter, which upcasts TRL's
    bfloat16 QLoRA adapter to float32; train_adapter.keep_adapter_dtypes casts it back, so a
    resumed job trains its remaining steps and saves its adapter as an uninterrupted one does."""
    new_t = adapter_tensors(resumed_training.results / TRAIN_OUTPUTS[0])
    old_t = adapter_tensors(demo_run / RESULTS / TRAIN_OUTPUTS[0])
    expect(
        {v.dtype for v in new_t.values()} == {v.dtype for v in old_t.values()},
        f"resumed adapter {sorted({str(v.dtype) for v in new_t.values()})}, "
        f"uninterrupted {sorted({str(v.dtype) for v in old_t.values()})}",
    )


def test_kill_9_while_a_checkpoint_is_written_then_the_rerun_starts_over(demo_run, tmp_path):
    """SIGKILL of the training job while it writes its first checkpoint (the folder is there, its
    trainer_state.json not yet): the rerun skips the half-written checkpoint (and says so) instead
    of resuming from it, and, with no complete one to resume from, trains from the start, ending
    bit-identical to the uninterrupted run (training from scratch is). Before
    train_adapter.last_complete_checkpoint, transformers' get_last_checkpoint picked the torn
    folder and every rerun failed on it ("Can't find a valid checkpoint")."""
    root = copy_demo(demo_run, tmp_path / "run")
    results = root / RESULTS
    outputs = [str(RESULTS / o) for o in TRAIN_OUTPUTS]
    before = tree(results)

    def torn():
        folders = list((results / TRAIN_CHECKPOINTS).glob("*/checkpoint-*"))
        return bool(folders) and not all((f / "trainer_state.json").exists() for f in folders)

    kill_job(root, tmp_path, outputs, ".train_adapter.py", torn, slice_s=0.005)
    assert torn() and not complete_checkpoints(results)
    assert_killed_cleanly(
        root, TRAIN_OUTPUTS, outputs, before, allowed=lambda rel: (rel + "/").startswith(TRAIN_CHECKPOINTS + "/")
    )
    snakemake(root, *outputs, "--cores", "2", "--rerun-incomplete", *DEMO)
    log = (results / TRAIN_LOG).read_text(encoding="utf-8")
    assert "written only in part" in log and "Resuming from" not in log, log[-3000:]
    loss = TRAIN_OUTPUTS[1]
    assert (results / loss).read_bytes() == (demo_run / RESULTS / loss).read_bytes()
    new_t, old_t = adapter_tensors(results / TRAIN_OUTPUTS[0]), adapter_tensors(demo_run / RESULTS / TRAIN_OUTPUTS[0])
    assert new_t.keys() == old_t.keys()
    assert all(new_t[k].dtype == old_t[k].dtype and bool((new_t[k] == old_t[k]).all()) for k in old_t)


# --- a killed write's temporary file --------------------------------------------------------------


def test_a_temporary_file_of_a_killed_write_does_not_outlive_the_rerun(demo_run, tmp_path):
    """SIGKILL of split_data while one of its outputs is being written (its .<name>.<random>.tmp
    is there): SIGKILL runs no cleanup, so the temporary stays until the next write of the same
    output, which removes it (common.atomic_path / atomic_dir): the rerun leaves none behind."""
    root = copy_demo(demo_run, tmp_path / "run")
    results = root / RESULTS
    spec = STAGES["data"]
    outputs = [str(RESULTS / o) for o in spec.outputs]
    before = tree(results)

    def writing():
        return bool(hidden_temporaries(set(tree(results)) - set(before)))

    kill_job(root, tmp_path, outputs, spec.process, writing)
    temporaries = assert_killed_cleanly(root, spec.outputs, outputs, before)
    assert temporaries, "the kill was to land while a temporary file was there"
    snakemake(root, *outputs, "--cores", "2", "--rerun-incomplete", *DEMO)
    for rel in spec.outputs:
        assert (results / rel).read_bytes() == (demo_run / RESULTS / rel).read_bytes(), rel
    left = [rel for rel in temporaries if (results / rel).exists()]
    expect(not left, f"left behind after the rerun: {left}")
