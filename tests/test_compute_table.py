"""The compute table (scripts/compute_table.py) and the paper's Compute section (huatuo_study/paper/compute.py):
on handmade benchmark and stats files, including the errors a broken file gives, and on the
demo run, whose compute.csv must be its benchmark and stats files, job by job."""

import json
import re
from pathlib import Path

import pytest

import compute_table
import paper_context
from compute_table import compute_rows, to_csv
from conftest import fake_snakemake
from dag import REPLICATES, SETTINGS, TEST_SETS, TRAINED, read_csv
from huatuo_study.common import DataError, PipelineError
from huatuo_study.paper.compute import compute_context
from huatuo_study.paper.design import setting_specs
from huatuo_study.records import COMPUTE_TOTAL as TOTAL
from huatuo_study.records import read_compute_csv
from paper_data import config, context_params, make_context, write_run_files  # noqa: F401
from render_tex import render_paper

# Snakemake's benchmark header (snakemake.benchmark.BenchmarkRecord), the job's row below it.
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def benchmark(folder: Path, name: str, s="12.3456", max_rss="512.25") -> str:
    path = folder / f"{name}.tsv"
    path.write_text(HEADER + f"{s}\t0:00:12\t{max_rss}\t900.1\t400.0\t410.0\t1.5\t0.25\t95.0\t11.8\n", encoding="utf-8")
    return str(path)


def stats(folder: Path, name: str, **values) -> str:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return str(path)


TRAIN_JOB = {"rule": "train_adapter", "setting": "setting1", "replicate": 0}
ANSWER_JOB = {"rule": "generate_answers", "test_set": "small", "setting": "control-s", "replicate": 1}


def test_rows_are_the_benchmarks_and_the_stats_with_a_total(tmp_path):
    train_stats = stats(
        tmp_path,
        "train",
        device="NVIDIA H200",
        gpu="1",
        train_runtime_s=100.0,
        peak_gpu_gib=30.5,
        train_tokens_per_s=3770.2,
        global_step=24,
        memory_budget_gib=32,
        execution={"micro_batch": 16, "frozen_base": "4-bit"},
    )
    answer_stats = stats(
        tmp_path,
        "answer",
        device="cpu",
        gpu=None,
        questions=12,
        answer_tokens=480,
        load_s=0.5,
        generate_s=2.0,
        tokens_per_s=240.0,
        peak_gpu_gib=None,
        memory_budget_gib=32,
        form="dequantised, adapter merged",
        batch_size=12,
    )
    rows = compute_rows(
        [TRAIN_JOB, ANSWER_JOB],
        [
            benchmark(tmp_path, "train", s="130.5", max_rss="2048.5"),
            benchmark(tmp_path, "answer", s="4.25", max_rss="NA"),
        ],  # too fast to be sampled
        [train_stats, answer_stats],
    )
    assert rows == [
        {
            "rule": "train_adapter",
            "test_set": None,
            "setting": "setting1",
            "replicate": 0,
            "device": "NVIDIA H200",
            "gpu": "1",
            "wall_s": 130.5,
            "max_rss_mib": 2048.5,
            "peak_gpu_gib": 30.5,
            "tokens_per_s": 3770.2,
            "memory_budget_gib": 32,
            "form": "4-bit",
            "batch_size": 16,
        },
        {
            "rule": "generate_answers",
            "test_set": "small",
            "setting": "control-s",
            "replicate": 1,
            "device": "cpu",
            "gpu": None,
            "wall_s": 4.25,
            "max_rss_mib": None,
            "peak_gpu_gib": None,
            "tokens_per_s": 240.0,
            "memory_budget_gib": 32,
            "form": "dequantised, adapter merged",
            "batch_size": 12,
        },
        {
            "rule": TOTAL,
            "test_set": None,
            "setting": None,
            "replicate": None,
            "device": "NVIDIA H200; cpu",
            "gpu": "1",
            "wall_s": 134.75,
            "max_rss_mib": 2048.5,
            "peak_gpu_gib": 30.5,
            "tokens_per_s": None,
            "memory_budget_gib": 32,
            "form": None,
            "batch_size": None,
        },
    ]
    text = to_csv(rows)
    assert text.splitlines()[0] == ",".join(compute_table.COLUMNS)
    assert (
        text.splitlines()[2]
        == 'generate_answers,small,control-s,1,cpu,,4.25,,,240.0,32,"dequantised, adapter merged",12'
    )
    path = tmp_path / "compute.csv"
    path.write_text(text, encoding="utf-8")
    assert read_compute_csv(path) == rows


def test_the_stage_writes_the_csv(tmp_path):
    smk = fake_snakemake(
        input={
            "benchmarks": [benchmark(tmp_path, "b")],
            "stats": [stats(tmp_path, "s", device="cpu", gpu=None, peak_gpu_gib=None, train_tokens_per_s=99.5)],
        },
        output={"csv": str(tmp_path / "tables" / "compute.csv")},
        params={"jobs": [TRAIN_JOB]},
    )
    compute_table.main(smk)
    rows = read_csv(smk.output.csv)
    assert [(r["rule"], r["wall_s"], r["max_rss_mib"], r["tokens_per_s"]) for r in rows] == [
        ("train_adapter", "12.3456", "512.25", "99.5"),
        (TOTAL, "12.3456", "512.25", ""),
    ]


@pytest.mark.parametrize(
    "broken, field, problem",
    [
        ({"device": "cpu", "gpu": None, "peak_gpu_gib": None}, "train_tokens_per_s", "missing"),
        ({"device": "cpu", "gpu": None, "train_tokens_per_s": 10.0}, "peak_gpu_gib", "missing"),
        ({"gpu": None, "peak_gpu_gib": None, "train_tokens_per_s": 10.0}, "device", "missing"),
        (
            {"device": "cpu", "gpu": None, "peak_gpu_gib": "a lot", "train_tokens_per_s": 10.0},
            "peak_gpu_gib",
            "not a number ('a lot')",
        ),
        (
            {"device": "", "gpu": None, "peak_gpu_gib": None, "train_tokens_per_s": 10.0},
            "device",
            "not a device name ('')",
        ),
        ({"device": "cpu", "peak_gpu_gib": None, "train_tokens_per_s": 10.0}, "gpu", "missing"),
        (
            {"device": "NVIDIA H200", "gpu": 1, "peak_gpu_gib": None, "train_tokens_per_s": 10.0},
            "gpu",
            "not a GPU list (1)",
        ),
    ],
)
def test_a_missing_or_garbled_stat_names_file_and_field(tmp_path, broken, field, problem):
    path = stats(tmp_path, "train", **broken)
    with pytest.raises(DataError) as e:
        compute_rows([TRAIN_JOB], [benchmark(tmp_path, "b")], [path])
    assert str(e.value) == f"{path}: field '{field}': {problem}"


def test_generation_stats_are_read_under_their_own_key(tmp_path):
    path = stats(
        tmp_path, "answer", device="cpu", gpu=None, peak_gpu_gib=None, train_tokens_per_s=1.0
    )  # training's key
    with pytest.raises(DataError, match="field 'tokens_per_s': missing"):
        compute_rows([ANSWER_JOB], [benchmark(tmp_path, "b")], [path])


@pytest.mark.parametrize(
    "s, max_rss, field, problem",
    [
        ("abc", "512.0", "s", "not a number ('abc')"),
        ("12.0", "lots", "max_rss", "not a number ('lots')"),
        ("nan", "512.0", "s", "not a number (nan)"),
    ],
)
def test_a_garbled_benchmark_names_file_line_and_column(tmp_path, s, max_rss, field, problem):
    path = benchmark(tmp_path, "b", s=s, max_rss=max_rss)
    good = stats(tmp_path, "s", device="cpu", gpu=None, peak_gpu_gib=None, train_tokens_per_s=1.0)
    with pytest.raises(DataError) as e:
        compute_rows([TRAIN_JOB], [path], [good])
    assert str(e.value) == f"{path}, line 2: field '{field}': {problem}"


def test_a_benchmark_without_its_column_or_row_and_a_stats_file_that_is_no_json(tmp_path):
    good = stats(tmp_path, "s", device="cpu", gpu=None, peak_gpu_gib=None, train_tokens_per_s=1.0)
    no_rss = tmp_path / "no_rss.tsv"
    no_rss.write_text("s\th:m:s\n12.0\t0:00:12\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{no_rss}, line 1: field 'max_rss': missing column")):
        compute_rows([TRAIN_JOB], [str(no_rss)], [good])
    empty = tmp_path / "empty.tsv"
    empty.write_text(HEADER, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{empty}: expected one benchmark row, found 0")):
        compute_rows([TRAIN_JOB], [str(empty)], [good])
    torn = tmp_path / "torn.json"
    torn.write_text('{"device": "cpu", "peak_gpu', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{torn}, line 1: not valid JSON")):
        compute_rows([TRAIN_JOB], [benchmark(tmp_path, "b")], [str(torn)])
    with pytest.raises(PipelineError, match=r"1 benchmark and 2 stats file\(s\) for 1 jobs"):
        compute_rows([TRAIN_JOB], [benchmark(tmp_path, "b")], [good, good])


def test_a_garbled_compute_csv_names_its_line_and_column(tmp_path):
    path = tmp_path / "compute.csv"
    path.write_text(",".join(compute_table.COLUMNS) + "\ntrain_adapter,,setting1,0,cpu,,fast,,,\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}, line 2: field 'wall_s': not a number ('fast')")):
        read_compute_csv(path)


# --------------------------------------------------------------------------- the paper


def test_the_paper_prints_every_job_and_the_total(config):
    tex = render_paper(make_context(config))
    part = tex[tex.index(r"\section{Compute}") : tex.index(r"\section{Provenance}")]
    # The fixture's first job: setting 1's replicate 0, trained; the course set's first answers.
    assert r"training & -- & 1 & 0 & NVIDIA H100 80GB HBM3 & 600.5 & 9,000 & 20.25 & 1,500.0 \\" in part
    assert r"answering & \texttt{course} & 1 & 0 & NVIDIA H100 80GB HBM3 & 608.5 & 9,008 & 20.25 & 1,508.0 \\" in part
    assert r"\multicolumn{4}{@{}l}{All 32 GPU jobs} & NVIDIA H100 80GB HBM3 & 19,712.0 & 9,031 & 20.25 & -- \\" in part
    flat = " ".join(part.split())
    assert "in all, these 32 jobs ran for 5.5 hours" in flat
    assert "Snakemake's benchmark of the whole job: loading, compiling, evaluation and saving included" in flat
    assert "records no device" not in part  # the study's baselines are a file and an API


def test_a_model_baseline_is_said_to_be_unlisted(config):
    config["test_sets"]["heldout"]["baseline"] = {"source": "model", "model": "qwen3-4b"}
    rows = make_context(config)["compute"]
    assert rows["unlisted"] == [{"model": "qwen3-4b", "test_sets": ["heldout"]}]
    tex = " ".join(render_paper(make_context(config)).split())
    assert (
        r"The baseline's answers by \texttt{qwen3-4b} (test set \texttt{heldout}) come from a GPU job too, "
        "but one that records no device, GPU memory or tokens/s: it is not listed."
    ) in tex


def test_the_paper_refuses_a_table_without_its_total_or_with_an_unknown_setting(config):
    settings = setting_specs(config)
    job = {
        "rule": "train_adapter",
        "test_set": None,
        "setting": "setting1",
        "replicate": 0,
        "device": "cpu",
        "gpu": None,
        "wall_s": 1.0,
        "max_rss_mib": None,
        "peak_gpu_gib": None,
        "tokens_per_s": 5.0,
    }
    for rows in ([job], []):
        with pytest.raises(PipelineError, match="compute table: its last row is not the 'all GPU jobs' row"):
            compute_context(rows, settings, config)
    stranger = {**job, "setting": "setting9"}
    with pytest.raises(PipelineError, match=r"setting\(s\) \['setting9'\] not in the config"):
        compute_context([stranger, compute_table.total_row([stranger])], settings, config)


def test_the_context_stage_reads_compute_csv(config, tmp_path):
    smk = fake_snakemake(
        input=write_run_files(tmp_path / "in", config),
        output={"context": str(tmp_path / "context.json")},
        params=context_params(config),
    )
    paper_context.main(smk)
    compute = json.loads(Path(smk.output.context).read_text(encoding="utf-8"))["compute"]
    assert compute["total"]["wall_s"] == "19,712.0" and len(compute["rows"]) == 32
    Path(smk.input.compute).write_text("rule,setting\n", encoding="utf-8")
    with pytest.raises(DataError, match="field 'test_set': missing column"):
        paper_context.main(smk)


# --------------------------------------------------------------------------- the demo run


def test_demo_compute_table_is_its_benchmark_and_stats_files(demo_run):
    results = demo_run / "results" / "demo"
    rows = read_csv(results / "tables" / "compute.csv")
    *jobs, total = rows
    expected = [("train_adapter", "", s, str(r)) for s in TRAINED for r in range(REPLICATES)]
    expected += [("generate_answers", t, s, str(r)) for t in TEST_SETS for s in SETTINGS for r in range(REPLICATES)]
    assert [(j["rule"], j["test_set"], j["setting"], j["replicate"]) for j in jobs] == expected
    for job in jobs:
        where = f"{job['test_set']}/" if job["test_set"] else ""
        run = f"{where}{job['setting']}/rep{job['replicate']}"
        with open(results / "benchmarks" / job["rule"] / f"{run}.tsv", encoding="utf-8") as f:
            header, measured = (line.rstrip("\n").split("\t") for line in f)
        measured = dict(zip(header, measured))
        assert float(job["wall_s"]) == float(measured["s"]) > 0
        rss = measured["max_rss"]  # NA: the job ended before Snakemake's first sample
        assert (job["max_rss_mib"] == "") if rss == "NA" else (float(job["max_rss_mib"]) == float(rss))
        if job["rule"] == "train_adapter":
            recorded = json.loads((results / "train_stats" / f"{run}.json").read_text(encoding="utf-8"))
            tokens_per_s = recorded["train_tokens_per_s"]
        else:
            recorded = json.loads((results / "generation_stats" / f"{run}.json").read_text(encoding="utf-8"))
            tokens_per_s = recorded["tokens_per_s"]
            assert tokens_per_s == pytest.approx(recorded["answer_tokens"] / recorded["generate_s"], rel=1e-2)
        assert float(job["tokens_per_s"]) == tokens_per_s > 0
        assert job["device"] == recorded["device"] == "cpu"
        assert job["peak_gpu_gib"] == "" and recorded["peak_gpu_gib"] is None  # the demo runs on the CPU
        assert job["gpu"] == "" and recorded["gpu"] is None  # so it claims no GPU
    assert total["rule"] == TOTAL and total["device"] == "cpu"
    assert float(total["wall_s"]) == pytest.approx(sum(float(j["wall_s"]) for j in jobs), abs=1e-3)
    # The demo's baseline is a model, whose job records no stats: not in the table, said in the paper.
    tex = " ".join((results / "paper" / "paper.tex").read_text(encoding="utf-8").split())
    assert r"The baseline's answers by \texttt{tiny-chat} (test sets \texttt{small}, \texttt{large})" in tex
    assert f"training & -- & 1 & 0 & cpu & {float(jobs[0]['wall_s']):,.1f} & " in tex


def test_every_demo_job_has_its_benchmark_beside_its_log(demo_run):
    """Every rule has a benchmark: each log of the run has the benchmark TSV of the same job, with
    Snakemake's wall time and max RSS columns."""
    results = demo_run / "results" / "demo"
    logs = sorted((results / "logs").rglob("*.log"))
    rules = {log.relative_to(results / "logs").parts[0].removesuffix(".log") for log in logs}
    assert {
        "train_adapter",
        "generate_answers",
        "baseline_answers",
        "judge_pairwise",
        "compute_table",
        "paper_context",
        "paper_pdf",
    } <= rules
    for log in logs:
        tsv = results / "benchmarks" / log.relative_to(results / "logs").with_suffix(".tsv")
        header = tsv.read_text(encoding="utf-8").splitlines()[0].split("\t")
        assert header[:3] == ["s", "h:m:s", "max_rss"], tsv
