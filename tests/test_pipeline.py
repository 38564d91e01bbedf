"""The whole demo DAG through Snakemake in a copy of the repo, then what reruns after a change,
the study's DAG as a dry run, and the config errors a user can make."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

import fake_openai
from common import read_jsonl
from conftest import REPO, SHARED_DATA

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DEMO = ["--configfile", "config/demo.yaml"]
WINRATE_COLUMNS = [
    "setting", "title", "n", "wins", "ties", "losses", "invalid", "win_rate", "win_rate_ties_half",
    "ci_low", "ci_high", "p_value", "consistency", "win_rate_as_first", "win_rate_as_second",
    "order_flips", "order_flip_share", "published_win_rate", "published_wins", "published_n",
    "published_p_value", "mean_answer_chars", "baseline_mean_answer_chars",
    "prompt_tokens", "completion_tokens", "judge_calls", "cost_usd",
]
# What reruns after the tables: the paper's context, .tex, report tables and PDF, and the figures
# of the win-rate table.
PAPER_JOBS = {"paper_context": 1, "render_tex": 1, "report_tables": 1, "paper_pdf": 1, "all": 1}
WINRATE_JOBS = {"winrate_table": 1, "figure_win_rates": 1, "figure_answer_lengths": 1, **PAPER_JOBS}
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


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One real demo run for the module (a few minutes on two cores)."""
    root = copy_repo(tmp_path_factory.mktemp("demo"))
    snakemake(root, "--cores", "2", *DEMO)
    return root


def test_demo_writes_the_table_and_the_paper(demo_run):
    results = demo_run / "results" / "demo"
    with open(results / "tables" / "winrate.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["setting"] for r in rows] == ["setting1", "setting2", "setting3", "setting4"]
    for r in rows:
        n, wins, ties, losses, invalid = (int(r[k]) for k in ("n", "wins", "ties", "losses", "invalid"))
        assert n == 12 and wins + ties + losses + invalid == n
        assert float(r["win_rate"]) == pytest.approx(wins / n)
    tex = (results / "paper" / "paper.tex").read_text(encoding="utf-8")
    for r in rows:
        assert f"{100 * float(r['win_rate']):.1f}" in tex
    assert "loss_curves.pdf" in tex
    assert (results / "paper" / "loss_curves.pdf").read_bytes().startswith(b"%PDF")
    for setting in ("setting1", "setting4"):
        with open(results / "losses" / f"{setting}.csv", encoding="utf-8") as f:
            losses = list(csv.DictReader(f))
        assert {r["split"] for r in losses} == {"train", "val"}
    stats = yaml.safe_load((results / "data" / "split_stats.json").read_text())
    assert stats["dropped"]["malformed"] >= 1 and stats["dropped"]["duplicate_question"] >= 1
    assert (results / "adapters" / "setting2" / "adapter_config.json").exists()
    assert list(rows[0]) == WINRATE_COLUMNS
    for r in rows:  # the reference judge is asked both ways, and is symmetric
        assert float(r["consistency"]) == 1.0 and int(r["judge_calls"]) == 24 and r["cost_usd"] == ""
        assert 0 <= float(r["ci_low"]) <= float(r["win_rate"]) <= float(r["ci_high"]) <= 1
    with open(results / "tables" / "pairwise.csv", encoding="utf-8") as f:
        pairs = list(csv.DictReader(f))
    assert list(pairs[0]) == ["setting_a", "setting_b", "n", "a_better", "b_better", "p_value"] and len(pairs) == 6
    assert not (results / "checkpoints" / "setting1").exists()  # cleaned up once the adapter is saved


def test_demo_paper_shows_fidelity_orders_and_truncation_from_the_run_files(demo_run):
    results = demo_run / "results" / "demo"
    tex = (results / "paper" / "paper.tex").read_text(encoding="utf-8")
    with open(results / "tables" / "fidelity.csv", encoding="utf-8") as f:
        fidelity = list(csv.DictReader(f))
    deviations = [r for r in fidelity if r["status"] == "deviation"]
    assert {"Dataset", "Judge model", "Method", "Max new tokens"} <= {r["parameter"] for r in deviations}
    assert f"{len(deviations)} of them differ from the study's value in this run" in tex
    judge_row = next(r for r in fidelity if r["parameter"] == "Judge model")
    assert (f"Judge model & gpt-3.5-turbo & rouge-l-char & {judge_row['source']}; {judge_row['note']} & differs \\\\"
            in tex)
    with open(results / "tables" / "winrate.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for k, r in enumerate(rows, 1):
        answers = read_jsonl(results / "generations" / f"{r['setting']}.jsonl")
        cut = sum(a["hit_token_limit"] for a in answers)
        cells = [f"{100 * float(r[c]):.1f}" for c in ("win_rate_as_first", "win_rate_as_second", "order_flip_share",
                                                       "consistency")]
        assert f"Setting {k} & " + " & ".join(cells) + f" & {cut} of {len(answers)} \\\\" in tex
    assert r"\label{tab:published}" not in tex  # the demo's baseline is not the study's
    stats = json.loads((results / "data" / "augment_stats.json").read_text(encoding="utf-8"))
    assert stats["method"] == "synonym" and stats["n_augmented"] >= 1 and stats["replacements_sample"]
    assert f"adds a rewritten copy (answer kept) of {stats['n_augmented']} of the {stats['n_train']}" in tex
    leakage = json.loads((results / "data" / "near_duplicates.json").read_text(encoding="utf-8"))
    assert leakage["n_compared"] == {"train": len(read_jsonl(results / "data/train.jsonl")),
                                     "val": len(read_jsonl(results / "data/val.jsonl"))}
    assert (f"Near-duplicates: {leakage['n_test_with_near_duplicate']} of the {leakage['n_test']} test questions"
            in " ".join(tex.split()))


def test_finished_run_has_nothing_to_do(demo_run):
    assert planned_jobs(demo_run, *DEMO) == {}


def test_judge_temperature_reruns_only_judging_and_after(demo_run):
    name = overlay(demo_run, "judge_t.yaml", {"judge": {"temperature": 0.7}})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    # The fidelity table shows the judge's temperature: it reruns too (a second).
    assert jobs == {"judge_pairwise": 4, "fidelity_table": 1, **WINRATE_JOBS}


def test_the_leakage_threshold_reruns_only_its_report_and_the_paper(demo_run):
    name = overlay(demo_run, "leakage.yaml", {"test": {"leakage": {"threshold": 0.3}}})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    assert jobs == {"near_duplicates": 1, "fidelity_table": 1, **PAPER_JOBS}


def test_a_bigger_gpu_reruns_nothing(demo_run):
    name = overlay(demo_run, "card.yaml", {"gpu_memory_gib": 80})  # changes how fast, not what is learned
    assert planned_jobs(demo_run, "--configfile", "config/demo.yaml", name) == {}


def test_augmentation_ratio_reruns_only_the_augmented_setting(demo_run):
    name = overlay(demo_run, "ratio.yaml", {"augmentation": {"ratio": 0.5}})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    assert jobs == {"augment_train": 1, "train_adapter": 1, "generate_answers": 1, "judge_pairwise": 1,
                    "fidelity_table": 1, "figure_loss_curves": 1, **WINRATE_JOBS}
    out = snakemake(demo_run, "-n", "--cores", "1", "--configfile", "config/demo.yaml", name).stdout
    assert re.findall(r"rule train_adapter:\n(?:    .*\n)*?    wildcards: setting=(\w+)", out) == ["setting3"]


def test_the_other_augmentation_method_reruns_no_augmentation(demo_run):
    name = overlay(demo_run, "llm_keys.yaml", {"augmentation": {"llm": {"model": "another-model"}}})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    assert jobs == {"fidelity_table": 1, **PAPER_JOBS}  # the table shows the key; no data changes


def test_the_judge_prompt_file_reruns_judging(demo_run, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(demo_run, root, symlinks=True)
    prompt = root / "config" / "judge_prompt.txt"
    prompt.write_text(prompt.read_text(encoding="utf-8") + " Answer in English.\n", encoding="utf-8")
    assert planned_jobs(root, *DEMO) == {"judge_pairwise": 4, **WINRATE_JOBS}


def edit_loss_figure_program(root):
    program = root / "scripts" / "figure_loss_curves.py"
    code = program.read_text(encoding="utf-8")
    program.write_text(code.replace('"step", fontsize=8', '"optimiser step", fontsize=8'), encoding="utf-8")


def change_a_loss_table(root):
    # Content, not only the time: Snakemake reruns nothing for an input touched with the same checksum.
    with open(root / "results" / "demo" / "losses" / "setting2.csv", "a", encoding="utf-8") as f:
        f.write("999,9.0,train,0.5\n")


@pytest.mark.parametrize("change", [edit_loss_figure_program, change_a_loss_table])
def test_a_figure_change_reruns_that_figure_and_the_pdf_only(demo_run, tmp_path, change):
    root = tmp_path / "run"
    shutil.copytree(demo_run, root, symlinks=True)
    change(root)
    assert planned_jobs(root, *DEMO) == {"figure_loss_curves": 1, "paper_pdf": 1, "all": 1}


def test_a_fifth_setting_needs_no_code(demo_run):
    demo = yaml.safe_load((demo_run / "config" / "demo.yaml").read_text(encoding="utf-8"))
    fifth = {**demo["settings"]["setting1"], "title": "Higher rank", "lora": {**demo["settings"]["setting1"]["lora"], "r": 16}}
    name = overlay(demo_run, "fifth.yaml", {"settings": {"setting5": fifth}})
    jobs = planned_jobs(demo_run, "--configfile", "config/demo.yaml", name)
    assert jobs == {"train_adapter": 1, "generate_answers": 1, "judge_pairwise": 1, "fidelity_table": 1,
                    "figure_loss_curves": 1, **WINRATE_JOBS}


def test_openai_judge_without_key_stops_before_any_job(demo_run):
    name = overlay(demo_run, "openai.yaml", {"judge": {"backend": "openai", "model": "gpt-4o",
                                                       "api_key_env": "PIPELINE_TEST_KEY"}})
    env = {k: v for k, v in os.environ.items() if k != "PIPELINE_TEST_KEY"}
    before = (demo_run / "results/demo/verdicts/setting1.jsonl").stat().st_mtime_ns
    proc = subprocess.run([*SNAKEMAKE, "--cores", "1", "--configfile", "config/demo.yaml", name],
                          cwd=demo_run, capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert "environment variable PIPELINE_TEST_KEY is not set" in proc.stdout + proc.stderr
    assert (demo_run / "results/demo/verdicts/setting1.jsonl").stat().st_mtime_ns == before
    assert planned_jobs(demo_run, "--configfile", "config/demo.yaml", name, env=env)["judge_pairwise"] == 4


def test_openai_judge_in_the_dag_pays_once_and_writes_the_key_nowhere(demo_run, tmp_path):
    """The demo's answers judged by a loopback OpenAI-compatible server through Snakemake."""
    root = tmp_path / "run"
    shutil.copytree(demo_run, root, symlinks=True)
    secret = "sk-pipeline-test-DO-NOT-LEAK-4242"
    server = fake_openai.start()
    try:
        name = overlay(root, "openai_judge.yaml", {"judge": {
            "backend": "openai", "model": "judge-model", "base_url": server.base_url,
            "api_key_env": "PIPELINE_JUDGE_KEY", "concurrency": 4, "backoff_base": 0.01,
            "price_per_million": {"input": 2.5, "output": 10.0}}})
        args, env = ("--configfile", "config/demo.yaml", name), {"PIPELINE_JUDGE_KEY": secret}
        assert planned_jobs(root, *args, env=env) == {"judge_pairwise": 4, "fidelity_table": 1, **WINRATE_JOBS}
        snakemake(root, "--cores", "1", *args, env=env)
        results = root / "results" / "demo"
        question = {r["id"]: r["question"] for r in read_jsonl(results / "data/test.jsonl")}
        baseline = {r["id"]: r["answer"] for r in read_jsonl(results / "baseline/answers.jsonl")}
        expected = set()  # both orders of every (question, answer) that some setting gave
        for setting in ("setting1", "setting2", "setting3", "setting4"):
            for r in read_jsonl(results / f"generations/{setting}.jsonl"):
                q, a, b = question[r["id"]], r["answer"], baseline[r["id"]]
                expected |= {(q, a, b), (q, b, a)}
        asked = [fake_openai.conversation(r["body"]) for r in server.requests]
        assert len(asked) == len(expected) and set(asked) == expected  # each once: equal answers share calls
        assert all(r["headers"]["authorization"] == f"Bearer {secret}" for r in server.requests)

        snakemake(root, "--cores", "2", "--forcerun", "judge_pairwise", *args, env=env)
        assert len(server.requests) == len(asked)  # the cache answers a rerun
    finally:
        fake_openai.stop(server)
    with open(results / "tables" / "winrate.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == WINRATE_COLUMNS
    assert all(int(r["judge_calls"]) == 24 and float(r["cost_usd"]) > 0 for r in rows)
    for folder in (root / "results", root / ".snakemake"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_llm_augmentation_in_the_dag_rewrites_the_share_and_pays_once(demo_run, tmp_path):
    """The study's augmentation method against a loopback server, through Snakemake."""
    root = tmp_path / "run"
    shutil.copytree(demo_run, root, symlinks=True)
    secret = "sk-augment-test-DO-NOT-LEAK-77"
    server = fake_openai.start(respond=lambda body: "增强后的文本：请问" + body["messages"][-1]["content"]
                               .split("原文：", 1)[1].removesuffix("\n\n增强后的文本："))
    target = "results/demo/data/train_augmented.jsonl"
    try:
        name = overlay(root, "llm_augment.yaml", {"augmentation": {"method": "llm", "llm": {
            "model": "deepseek-chat", "base_url": server.base_url, "api_key_env": "PIPELINE_AUGMENT_KEY",
            "temperature": 0.7, "backoff_base": 0.01}}})
        args = ("--configfile", "config/demo.yaml", name)
        proc = snakemake(root, target, "--cores", "1", *args, check=False)  # no key: stops first
        assert proc.returncode != 0 and "environment variable PIPELINE_AUGMENT_KEY is not set" in proc.stderr
        assert not server.requests
        env = {"PIPELINE_AUGMENT_KEY": secret}
        snakemake(root, target, "--cores", "1", *args, env=env)
        train = read_jsonl(root / "results/demo/data/train.jsonl")
        out = read_jsonl(root / target)
        copies = out[len(train):]
        assert out[:len(train)] == train and len(copies) == int(0.3 * len(train) + 0.5) == len(server.requests)
        answers = {r["id"]: r["answer"] for r in train}
        assert all(c["answer"] == answers[c["augmented_from"]] and c["question"].startswith("请问") for c in copies)
        (root / target).unlink()
        snakemake(root, target, "--cores", "1", *args, env=env)
        assert read_jsonl(root / target) == out and len(server.requests) == len(copies)  # nothing paid twice
    finally:
        fake_openai.stop(server)
    for folder in (root / "results", root / ".snakemake"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_study_dag_dry_run_offline_without_key(tmp_path):
    root = copy_repo(tmp_path)
    env = {"OPENAI_API_KEY": "", "HF_HUB_OFFLINE": "1"}
    jobs = planned_jobs(root, "--resources", "gpu=1", env=env)
    assert jobs == {"raw_data": 1, "split_data": 1, "test_set": 1, "near_duplicates": 1, "augment_train": 1, "base_model": 2,
                    "train_adapter": 4, "generate_answers": 4, "baseline_answers": 1, "judge_pairwise": 4,
                    "fidelity_table": 1, "figure_loss_curves": 1, **WINRATE_JOBS}
    out = snakemake(root, "-n", "--cores", "1", "--resources", "gpu=1", env=env).stdout
    assert "results/study/models/qwen3-14b/manifest.json" in out


def test_study_run_without_course_file_stops_before_any_job(tmp_path):
    root = copy_repo(tmp_path)
    proc = snakemake(root, "--cores", "1", "--resources", "gpu=1", env={"OPENAI_API_KEY": "sk-test", "DEEPSEEK_API_KEY": "sk-test"},
                     check=False)
    assert proc.returncode != 0
    assert "test.source: the course file 'data/zh_med.json' does not exist" in proc.stdout + proc.stderr
    assert not (root / "results").exists()


def test_study_dry_run_uses_the_course_file_when_present(tmp_path):
    if not (SHARED_DATA / "zh_med.json").exists():
        pytest.skip(f"the course file is not at {SHARED_DATA}")
    root = copy_repo(tmp_path)
    shutil.copy(SHARED_DATA / "zh_med.json", root / "data" / "zh_med.json")
    out = snakemake(root, "-n", "--cores", "1", "--resources", "gpu=1", env={"HF_HUB_OFFLINE": "1"}).stdout
    assert re.search(r"rule test_set:\n\s+input: data/zh_med.json", out)


def test_workflow_lints_clean():
    for args in ([], DEMO):
        proc = snakemake(REPO, "--lint", *args)
        assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "rules"], cwd=REPO,
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr


@pytest.mark.parametrize("change, message", [
    ({"judge": {"temprature": 0.2}}, "'temprature' was unexpected"),
    ({"splits": {"seed": "seven"}}, "'seven' is not of type 'integer'"),
    ({"settings": {"setting1": {"model": "no-such-model"}}}, "settings.setting1.model: 'no-such-model' is not a key of models"),
])
def test_bad_config_stops_naming_the_key(tmp_path, change, message):
    root = copy_repo(tmp_path)
    name = overlay(root, "bad.yaml", change)
    proc = snakemake(root, "-n", "--cores", "1", "--configfile", "config/demo.yaml", name, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr


def test_demo_paper_pdf_has_the_win_rates_and_the_report_builds(demo_run):
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (Debian package poppler-utils)")
    results = demo_run / "results" / "demo"
    pdf = results / "paper" / "paper.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", "-layout", str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout
    with open(results / "tables" / "winrate.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for k, r in enumerate(rows, 1):  # Table 1: n, wins, ties, losses, win rate (%)
        cells = [r["n"], r["wins"], r["ties"], r["losses"], f"{100 * float(r['win_rate']):.1f}"]
        assert re.search(rf"Ours \(setting {k}\).*?\s" + r"\s+".join(cells) + r"\s", text), cells
    snakemake(demo_run, *DEMO, "--report", "results/demo/report.html")
    report = (results / "report.html").read_text(encoding="utf-8")
    for item in ("paper.pdf", "loss_curves.pdf", "win_rates.pdf", "answer_lengths.pdf", "table1.html"):
        assert item in report


# Ctrl-C (issue 15): Snakemake's incomplete-output handling and our atomic writes together leave no
# output that looks complete; the next run reruns exactly what was unfinished (training resumes
# from a checkpoint where one was left) and ends where an uninterrupted run ends.
def test_ctrl_c_leaves_no_output_that_looks_complete_and_the_rerun_finishes(demo_run, tmp_path):
    root = copy_repo(tmp_path)
    results = root / "results" / "demo"
    run = subprocess.Popen([*SNAKEMAKE, "--cores", "1", *DEMO], cwd=root, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 600
    while not list(results.glob("checkpoints/*/*/checkpoint-*")) and time.time() < deadline:
        time.sleep(0.1)  # until a training job is past its first checkpoint
    run.send_signal(signal.SIGINT)
    out, _ = run.communicate(timeout=300)
    assert run.returncode != 0 and not (results / "tables" / "winrate.csv").exists(), out
    settings = ("setting1", "setting2", "setting3", "setting4")
    trained = [s for s in settings if (results / "adapters" / s).exists()]
    for s in settings:  # an adapter and its loss curve exist together or not at all
        assert (results / "losses" / f"{s}.csv").exists() == (s in trained), s
    assert len(trained) < 4
    assert not [p for p in results.rglob(".*") if p.is_file()]  # no temporary file left behind
    resumable = {p.parent.parent.name for p in results.glob("checkpoints/*/*/checkpoint-*")}
    # Snakemake remembers the interrupted job as incomplete: a plain rerun says so and stops, and
    # --rerun-incomplete (which both profiles set) reruns it.
    proc = snakemake(root, "--cores", "1", *DEMO, check=False)
    assert proc.returncode != 0 and "IncompleteFilesException" in proc.stderr
    jobs = planned_jobs(root, "--rerun-incomplete", *DEMO)
    # the settings never trained, and at most the one job (--cores 1) that Ctrl-C cut off, even if its
    # outputs had already been moved into place
    assert 4 - len(trained) <= jobs["train_adapter"] <= 4 - len(trained) + 1
    assert not {"raw_data", "split_data", "test_set"} & set(jobs)  # what had finished stays finished
    snakemake(root, "--cores", "2", "--rerun-incomplete", *DEMO)
    for s in resumable:
        assert "Resuming from" in (results / "logs" / "train_adapter" / f"{s}.log").read_text(encoding="utf-8")
    for data in ("data/train.jsonl", "data/test.jsonl", "baseline/answers.jsonl"):
        assert (results / data).read_bytes() == (demo_run / "results" / "demo" / data).read_bytes(), data
    with open(results / "tables" / "winrate.csv", encoding="utf-8") as f:
        assert [r["setting"] for r in csv.DictReader(f)] == list(settings)
