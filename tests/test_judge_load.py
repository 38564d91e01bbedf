"""The paid path at the study's size: the judge stage (judge_pairwise.main, in its own process)
makes 14,400 distinct calls (the held-out set's 200 questions x 2 orders x 6 answer sets x 3
replicates x 2 judges) against a loopback provider (tests/fake_openai.py) that enforces a
requests- and a tokens-per-minute limit over a sliding minute, answers late at random, drops
connections and fails with 500 now and then. Every verdict is written, every distinct call paid
once, the server's window kept full, memory flat while the cache grows; killed at half, the rerun
pays only for what the cache lacks. The two study-size runs are slow (about 4 minutes each on two
shared cores); a small run checks in seconds that rate-limit waits are not failures."""

import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fake_openai
import judge_pairwise as jp
from conftest import REPO, fake_snakemake, with_defaults
from huatuo_study import chat_api
from huatuo_study.common import PipelineError, read_jsonl, read_prompt, write_jsonl

KEY_ENV = "JUDGE_LOAD_TEST_KEY"
PROMPT_FILE = REPO / "config" / "judge_prompt.txt"
QUESTIONS = 7200  # x 2 orders = 14,400 calls
CONCURRENCY = 32
# The provider: 3,600 requests and 5.7M tokens a minute over a sliding 60 s window (the synthetic
# requests average about 1,580 tokens, so both limits bind), about 4 minutes for the whole run.
LIMITS = {"rpm": 3600, "tpm": 5_700_000, "window_s": 60}
CHAOS = {"seed": 7, "drop": 0.003, "error": 0.003, "slow": 0.01, "slow_s": (2.0, 5.0), "latency_s": (0.02, 0.3)}
SAMPLE_S = 0.5

RUNNER = """
import json, sys
from types import SimpleNamespace
sys.path.insert(0, sys.argv[1])
import judge_pairwise
args = json.loads(sys.argv[2])
judge_pairwise.main(SimpleNamespace(**{k: SimpleNamespace(**v) for k, v in args.items()}, log=[], rule="judge_pairwise"))
"""


@pytest.fixture(autouse=True)
def env(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(KEY_ENV, "sk-load-test")


def synthetic_answer(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("多休息喝水注意饮食清淡按时服药复诊观察体温") for _ in range(n))


def write_inputs(folder: Path, questions: int) -> dict:
    """A test set, the baseline's answers and a setting's, of `questions` distinct questions."""
    rng = random.Random(0)
    test = [{"id": f"q{i}", "question": f"问题{i}：{synthetic_answer(rng, 12)}怎么办？"} for i in range(questions)]
    paths = {name: folder / f"{name}.jsonl" for name in ("test", "baseline", "answers")}
    write_jsonl(paths["test"], test)
    for name in ("baseline", "answers"):
        write_jsonl(paths[name], [{**row, "answer": synthetic_answer(rng, rng.randint(40, 360))} for row in test])
    return paths


def judge_config(server, **overrides) -> dict:
    return with_defaults(
        "judge",
        {
            "backend": "openai",
            "model": "judge-model",
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "max_tokens": 256,
            "concurrency": CONCURRENCY,
            "timeout": 30,
            "max_retries": 5,
            "backoff_base": 0.5,
            **overrides,
        },
    )


def stage_args(folder: Path, paths: dict, judge: dict) -> dict:
    return {
        "input": {"prompt": str(PROMPT_FILE), **{k: str(v) for k, v in paths.items()}},
        "output": {"verdicts": str(folder / "verdicts.jsonl")},
        "params": {"judge": judge, "setting": "s1", "cache_dir": str(folder / "cache"), "section": "judge"},
    }


def request_keys(paths: dict, judge: dict, base_url: str) -> dict:
    """Cache key -> the server's request_key, for every call the stage makes."""
    prompt = read_prompt(PROMPT_FILE)
    keys = {}
    for item in jp.load_items(paths["test"], paths["baseline"], paths["answers"]):
        for pair in jp.pairs_of(item):
            body = chat_api.request_body(judge, jp.build_messages(prompt, pair.question, pair.answer1, pair.answer2))
            keys[chat_api.Cache.key(base_url, body, 0)] = (pair.question, pair.answer1)
    return keys


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def run_stage_process(server, args: dict, stderr: Path, kill_at: int | None = None) -> dict:
    """Run the stage in a child process, sampling its RSS against the calls paid so far; SIGKILL
    it once kill_at calls are paid."""
    samples = []  # (seconds, calls paid, RSS bytes)
    with open(stderr, "w", encoding="utf-8") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(REPO / "scripts"), json.dumps(args)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        start = time.monotonic()
        while child.poll() is None:
            paid = len(server.paid)
            if kill_at is not None and paid >= kill_at:
                child.send_signal(signal.SIGKILL)
                break
            try:
                samples.append((time.monotonic() - start, paid, rss_bytes(child.pid)))
            except (FileNotFoundError, ProcessLookupError, StopIteration):  # it just ended
                pass
            time.sleep(SAMPLE_S)
        returncode = child.wait(timeout=600)
    return {
        "returncode": returncode,
        "samples": samples,
        "wall_s": time.monotonic() - start,
        "stderr": stderr.read_text(encoding="utf-8"),
    }


def window_fill(paid_log: list[tuple[float, int]], limits: dict) -> float:
    """How full the server kept its sliding window from the moment it could first be full to the
    last paid call: the mean, over every SAMPLE_S, of the window's use of its binding limit
    (requests or tokens, whichever is nearer its limit)."""
    times = [t for t, _ in paid_log]
    span = limits["window_s"]
    max_requests, max_tokens = limits["rpm"] * span / 60, limits["tpm"] * span / 60
    fills, t, first = [], times[0] + span, 0
    while t <= times[-1]:
        while times[first] <= t - span:
            first += 1
        inside = [tokens for when, tokens in paid_log[first:] if when <= t]
        fills.append(max(len(inside) / max_requests, sum(inside) / max_tokens))
        t += SAMPLE_S
    return sum(fills) / len(fills)


@pytest.mark.slow
def test_the_study_size_run_pays_each_call_once_at_the_servers_pace(tmp_path, fake):
    server = fake(limits=LIMITS, chaos=CHAOS, keep_requests=False)
    paths = write_inputs(tmp_path, QUESTIONS)
    judge = judge_config(server)
    run = run_stage_process(server, stage_args(tmp_path, paths, judge), tmp_path / "stderr.txt")
    assert run["returncode"] == 0, run["stderr"][-3000:]

    # every verdict written, as the judge decides (the longer answer wins)
    records = read_jsonl(tmp_path / "verdicts.jsonl")
    items = jp.load_items(paths["test"], paths["baseline"], paths["answers"])
    assert [r["id"] for r in records] == [it.id for it in items]
    expected = {"better": "win", "worse": "loss", "equal": "tie"}
    assert [r["verdict"] for r in records] == [
        expected[fake_openai.longer_is_better(it.question, it.setting_answer, it.baseline_answer)] for it in items
    ]

    # each distinct request paid exactly once, though some were dropped, failed or refused
    wanted = set(request_keys(paths, judge, server.base_url).values())
    assert len(wanted) == 2 * QUESTIONS
    assert set(server.paid) == wanted and set(server.paid.values()) == {1}
    assert server.statuses["drop"] > 0 and server.statuses[500] > 0 and server.statuses[429] > 0
    # no stampede: the refused requests are a small share of the paid ones
    assert server.statuses[429] < 0.1 * len(wanted), server.statuses

    # the server's window kept full: no idling, no backing off further than the server asks
    fill = window_fill(server.paid_log, LIMITS)
    assert fill >= 0.9, fill

    # memory flat while the cache grows: from a quarter of the calls paid to the last one, less
    # than 8 MiB, where holding the replies of those 10,800 calls would take over 12 MiB
    paying = [(paid, rss) for _, paid, rss in run["samples"] if paid < len(wanted)]
    at_quarter = next(rss for paid, rss in paying if paid >= len(wanted) // 4)
    growth = max(rss for paid, rss in paying if paid >= len(wanted) // 4) - at_quarter
    assert growth < 8 * 2**20, growth
    replies = sum(len(c["reply"].encode("utf-8")) for r in records for o in r["orders"] for c in o["calls"])
    assert replies * 0.75 > 12 * 2**20

    # a progress bar with its rate and ETA
    bars = re.findall(r"judge s1: +\d+%\|[^|]*\| *(\d+)/14400 \[(\d+:\d+)<(\d+:\d+), +([\d.]+)call/s\]", run["stderr"])
    assert bars and bars[-1][0] == "14400"
    assert any(int(done) < 14400 and eta != "00:00" and float(rate) > 0 for done, _, eta, rate in bars)

    report = {
        "wall_s": round(run["wall_s"], 1),
        "window_fill": round(fill, 3),
        "statuses": dict(server.statuses),
        "rss_at_quarter_mib": round(at_quarter / 2**20, 1),
        "rss_growth_mib": round(growth / 2**20, 2),
        "rss_peak_mib": round(max(rss for _, _, rss in run["samples"]) / 2**20, 1),
        "paid_per_minute": round(60 * len(wanted) / (server.paid_log[-1][0] - server.paid_log[0][0]), 1),
    }
    print("load:", json.dumps(report))


@pytest.mark.slow
def test_killed_at_half_the_rerun_pays_only_for_what_the_cache_lacks(tmp_path, fake):
    server = fake(limits=LIMITS, chaos=CHAOS, keep_requests=False)
    paths = write_inputs(tmp_path, QUESTIONS)
    judge = judge_config(server)
    keys = request_keys(paths, judge, server.base_url)
    args = stage_args(tmp_path, paths, judge)
    killed = run_stage_process(server, args, tmp_path / "killed.txt", kill_at=QUESTIONS)
    assert killed["returncode"] == -signal.SIGKILL
    assert not (tmp_path / "verdicts.jsonl").exists()
    time.sleep(CHAOS["slow_s"][1] + 1)  # the server finishes what was in flight (billed all the same)

    paid_before = dict(server.paid)
    cached = {keys[p.stem] for p in (tmp_path / "cache").glob("??/*.json")}
    assert 0.4 < len(cached) / len(keys) < 0.6
    assert cached <= set(paid_before)
    lost = set(paid_before) - cached  # answered while the process died: paid, never stored
    assert len(lost) <= CONCURRENCY

    rerun = run_stage_process(server, args, tmp_path / "rerun.txt")
    assert rerun["returncode"] == 0, rerun["stderr"][-3000:]
    paid_again = {key: n - paid_before.get(key, 0) for key, n in server.paid.items() if n > paid_before.get(key, 0)}
    assert set(paid_again) == set(keys.values()) - cached  # exactly what the cache lacked ...
    assert set(paid_again.values()) == {1}  # ... once each
    assert len(read_jsonl(tmp_path / "verdicts.jsonl")) == QUESTIONS
    print(
        "kill:",
        json.dumps(
            {
                "cached_at_kill": len(cached),
                "paid_twice": len(lost),
                "wall_s": round(killed["wall_s"] + rerun["wall_s"], 1),
            }
        ),
    )


def test_rate_limit_waits_are_not_failures_and_hold_every_worker(tmp_path, fake):
    # 4 requests in any second: 16 calls take at least 3 s; with max_retries 0 any 429 counted as
    # a failure would stop the stage
    server = fake(limits={"rpm": 240, "tpm": 10**9, "window_s": 1}, keep_requests=False)
    paths = write_inputs(tmp_path, 8)
    start = time.monotonic()
    jp.main(fake_snakemake(**stage_args(tmp_path, paths, judge_config(server, concurrency=4, max_retries=0))))
    assert time.monotonic() - start >= 3
    assert len(read_jsonl(tmp_path / "verdicts.jsonl")) == 8
    assert set(server.paid.values()) == {1} and len(server.paid) == 16
    # held back together: about one 429 per worker each time the window fills, not one per poll
    assert server.statuses[429] <= 4 * 4, server.statuses


@pytest.mark.slow
def test_the_study_size_through_the_batch_api_split_and_an_expired_batch_resubmitted(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(chat_api, "MAX_BATCH_REQUESTS", 5000)  # a provider allowing 5,000 requests a batch
    server = fake(batch_max_requests=5000, batch_expire={"batch_2"}, keep_requests=False)
    paths = write_inputs(tmp_path, QUESTIONS)
    judge = judge_config(server, batch=True, batch_poll_interval=0.01)
    args = stage_args(tmp_path, paths, judge)
    with pytest.raises(
        PipelineError,
        match=r"batch batch_2 ended 'expired' with 2500 of 5000 requests unanswered "
        r"\(first error: .*batch_expired.*\); rerun to submit them again",
    ):
        jp.main(fake_snakemake(**args))
    assert sorted(server.batches) == ["batch_1", "batch_2", "batch_3"]
    assert [b["request_counts"]["total"] for b in server.batches.values()] == [5000, 5000, 4400]
    assert len(list((tmp_path / "cache").glob("??/*.json"))) == 2 * QUESTIONS - 2500
    assert not (tmp_path / "verdicts.jsonl").exists()
    assert not list((tmp_path / "cache" / "batches").glob("*.json"))  # all over: nothing to resume

    jp.main(fake_snakemake(**args))  # the rerun submits only the expired half
    assert server.batches["batch_4"]["request_counts"]["total"] == 2500 and len(server.batches) == 4
    assert len(read_jsonl(tmp_path / "verdicts.jsonl")) == QUESTIONS
    wanted = set(request_keys(paths, judge, server.base_url).values())
    assert set(server.paid) == wanted and set(server.paid.values()) == {1}
