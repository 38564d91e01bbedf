"""Running the demo DAG in tests: a copy of the repo, Snakemake in a subprocess, its planned jobs,
config overlays, and the shape of the demo's DAG (tests/conftest.py's demo_run fixture, test_*.py)."""

import csv
import os
import re
import shutil
import subprocess
import sys

import yaml

from conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DEMO = ["--configfile", "config/demo.yaml"]
# The demo's DAG: 4 trained settings and 2 controls, 2 replicates each, 2 test sets, 2 judges.
SETTINGS = ["setting1", "setting2", "setting3", "setting4", "control-s", "control-m"]
TRAINED = SETTINGS[:4]
REPLICATES, TEST_SETS, JUDGES = 2, ["small", "large"], ["primary", "chrf"]
HEADLINE = "results/demo/tables/small/primary"
# What reruns after the tables: the paper's context, .tex, report tables and PDF.
PAPER_JOBS = {"paper_context": 1, "render_tex": 1, "report_tables": 1, "paper_pdf": 1, "all": 1}


def table_jobs(tables: int, cards: int = len(TRAINED) * REPLICATES) -> dict[str, int]:
    """What reruns after `tables` (test set, judge) pairs' verdicts change: their win-rate, claims
    and ranking tables, the judges' agreement, the headline figures, the paper, every adapter's
    model card (`cards`: each reports every table), every test set's interchange files and the
    answer browser."""
    return {
        "winrate_table": tables,
        "claims_table": tables,
        "ranking_table": tables,
        "judge_agreement": 1,
        "figure_win_rates": 1,
        "figure_answer_lengths": 1,
        "figure_ranking": 1,
        "model_card": cards,
        "interchange": len(TEST_SETS),
        "answer_browser": 1,
        **PAPER_JOBS,
    }


# Every replicate of one setting, answered on every test set, judged by every judge and merged
# (export.merged); its new benchmarks and stats rerun the compute table, its answers the label sheet.
ONE_SETTING = {
    "train_adapter": REPLICATES,
    "merged_model": REPLICATES,
    "generate_answers": REPLICATES * 2,
    "judge_pairwise": REPLICATES * 2 * 2,
    "human_label_sheet": 1,
    "figure_loss_curves": 1,
    "compute_table": 1,
    **table_jobs(4),
}
COPIED = ["Snakefile", "rules", "scripts", "config", "envs", "paper", "data/demo", "data/protected_terms.txt"]


def copy_repo(dest):
    for name in COPIED:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def snakemake(cwd, *args, env=None, check=True):
    run_env = {**os.environ, **(env or {})}
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, env=run_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(cwd, *args, env=None) -> dict[str, int]:
    """Rule -> job count of a dry run (its 'Job stats' table); {} when nothing is to be done."""
    proc = snakemake(cwd, "-n", "--cores", "1", *args, env=env)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    return job_stats(out)


def job_stats(output: str) -> dict[str, int]:
    """Rule -> job count from a run's or a dry run's 'Job stats' table."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def overlay(cwd, name, data):
    (cwd / name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return name


def read_csv(path):
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))
