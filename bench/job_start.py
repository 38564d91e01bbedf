"""Where a GPU job's first seconds go, before its stage logs anything: each step a GPU stage takes
at its start, timed in a fresh process (--runs of them; the first meets a cold file cache).
Prints a table of seconds per step and run.

    python3 bench/job_start.py --runs 3
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

SCRIPTS = str(Path(__file__).resolve().parents[1] / "scripts")

# One fresh process: what a GPU stage does before its first log line, the imports of
# generate_answers.py and train_adapter.py (trl: training only) one step each.
CHILD = r"""
import sys, time, json
sys.path.insert(0, SCRIPTS)
t = [("start", time.perf_counter())]
def mark(name): t.append((name, time.perf_counter()))
from snakemake import script; mark("import snakemake (the script's preamble)")
from huatuo_study.model import gpu_slots; mark("import gpu_slots")
gpu_slots.counted_gpus(); mark("count GPUs (nvidia-smi -L)")
import torch; mark("import torch")
import transformers; mark("import transformers")
import bitsandbytes; mark("import bitsandbytes")
import peft; mark("import peft")
from huatuo_study.answering import answers; mark("import the answering library (rest)")
import trl; mark("import trl")
if torch.cuda.is_available():
    torch.zeros(1, device="cuda"); mark("CUDA context")
print(json.dumps([(name, round(b - a, 2)) for (_, a), (name, b) in zip(t, t[1:])]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = []
    for _ in range(parser.parse_args().runs):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD.replace("SCRIPTS", repr(SCRIPTS))], capture_output=True, text=True, check=True
        )
        steps = dict(json.loads(out.stdout.strip().splitlines()[-1]))
        steps["interpreter start and exit"] = round(time.perf_counter() - started - sum(steps.values()), 2)
        runs.append(steps)
    print("| step | " + " | ".join(f"run {i + 1} s" for i in range(len(runs))) + " |")
    print("| --- |" + " --- |" * len(runs))
    for step in runs[0]:
        print(f"| {step} | " + " | ".join(f"{r[step]:.2f}" for r in runs) + " |")
    print("| total | " + " | ".join(f"{sum(r.values()):.2f}" for r in runs) + " |")


if __name__ == "__main__":
    main()
