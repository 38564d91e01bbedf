"""Faults of the paid-call cache (scripts/huatuo_study/chat_api.py), injected for real: a torn or non-JSON entry,
two processes sharing one cache at once, a full disk (a small tmpfs). Nothing is trusted that
cannot be read, nothing is paid twice, nothing half-written is left."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import fake_openai
from conftest import REPO, with_defaults
from huatuo_study import chat_api
from huatuo_study.common import PipelineError, write_jsonl

KEY_ENV = "CACHE_FAULT_TEST_KEY"
CONVERSATIONS = [[{"role": "user", "content": f"问题{i}：感冒了怎么办？"}] for i in range(6)]


def reply_to(body):
    return "回答：" + body["messages"][-1]["content"]


@pytest.fixture(autouse=True)
def env(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(KEY_ENV, "sk-cache-fault-test")


@pytest.fixture
def server():
    server = fake_openai.start(respond=reply_to)
    yield server
    fake_openai.stop(server)


def cfg(server, **extra):
    """An OpenAI-compatible section as the validated config gives it (schema defaults filled)."""
    return with_defaults(
        "augmentation.llm",
        {
            "model": "m",
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "max_retries": 0,
            "backoff_base": 0.0,
            "concurrency": 2,
            **extra,
        },
    )


def chat_requests(server):
    return [r for r in server.requests if r["path"].endswith("/chat/completions")]


def test_a_torn_or_non_json_entry_is_named_discarded_and_asked_again(server, tmp_path, caplog):
    first = chat_api.ChatClient(cfg(server), tmp_path).ask(CONVERSATIONS)
    assert len(chat_requests(server)) == 6
    entries = sorted(tmp_path.glob("??/*.json"))
    torn, garbage = entries[0], entries[1]
    torn.write_bytes(torn.read_bytes()[: len(torn.read_bytes()) // 2])  # a writer killed mid-file
    garbage.write_text("not json at all", encoding="utf-8")
    client = chat_api.ChatClient(cfg(server), tmp_path)
    with caplog.at_level("WARNING", logger="pipeline"):
        again = client.ask(CONVERSATIONS)
    assert again == first
    assert len(chat_requests(server)) == 6 + 2  # paid once more for each, counted
    assert client.cache.discarded == 2
    assert str(torn) in caplog.text and str(garbage) in caplog.text
    assert all(json.loads(p.read_text(encoding="utf-8"))["reply"] for p in tmp_path.glob("??/*.json"))


SHARED_RUN = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {scripts!r})
    from huatuo_study import chat_api
    conversations = json.loads(sys.argv[2])
    replies = chat_api.ChatClient(json.loads(sys.argv[1]), sys.argv[3]).ask(conversations)
    print(json.dumps([r.content for r in replies], ensure_ascii=False))
    """
)


@pytest.mark.slow
def test_two_runs_sharing_a_cache_at_once_pay_each_call_once(server, tmp_path):
    server.on_request = lambda request: time.sleep(0.3)  # slow replies: the two runs overlap
    code = SHARED_RUN.format(scripts=str(REPO / "scripts"))
    args = [json.dumps(cfg(server)), json.dumps(CONVERSATIONS, ensure_ascii=False), str(tmp_path / "cache")]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in outputs]
    assert json.loads(outputs[0][0]) == json.loads(outputs[1][0]) == [reply_to({"messages": c}) for c in CONVERSATIONS]
    assert len(chat_requests(server)) == 6  # every distinct request paid once in all
    for path in (tmp_path / "cache").glob("??/*.json"):  # no torn or interleaved entry
        assert json.loads(path.read_text(encoding="utf-8"))["reply"]["content"].startswith("回答：")


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: a real full disk, where this machine lets root mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def fill(disk: Path) -> None:
    """Write until the device is full (ENOSPC)."""
    with open(disk / "filler", "wb", buffering=0) as f:
        with pytest.raises(OSError, match="No space left on device"):
            while True:
                f.write(b"\0" * 4096)


def test_a_full_disk_is_named_and_the_cache_keeps_its_entries(server, small_disk):
    cache = small_disk / "cache"
    before = chat_api.ChatClient(cfg(server), cache).ask(CONVERSATIONS[:2])
    fill(small_disk)
    with pytest.raises(PipelineError, match=rf"{cache}/.*\.json: no space left on the device to write it"):
        chat_api.ChatClient(cfg(server), cache).ask(CONVERSATIONS)
    assert not list(cache.rglob(".*.tmp"))  # nothing half-written
    (small_disk / "filler").unlink()
    paid = len(chat_requests(server))
    client = chat_api.ChatClient(cfg(server), cache)
    assert client.ask(CONVERSATIONS[:2]) == before and client.cache.discarded == 0  # earlier entries kept
    assert len(chat_requests(server)) == paid


def test_a_stage_output_on_a_full_disk_is_one_line_and_no_file(small_disk):
    fill(small_disk)
    out = small_disk / "verdicts" / "setting1.jsonl"
    with pytest.raises(PipelineError, match=rf"{out}: no space left on the device to write it"):
        write_jsonl(out, [{"id": i, "answer": "多喝水。" * 500} for i in range(20)])
    assert not out.exists() and not list(out.parent.glob(".*"))
