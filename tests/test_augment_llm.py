"""The study's LLM augmentation against a loopback OpenAI-compatible server (tests/fake_openai.py):
the notebook's messages and limits on the wire, exactly the configured share rewritten, answers
untouched, unusable replies retried once and then counted, a rerun paying for nothing, the key
written nowhere."""

import importlib.metadata
import json
import platform
import re

import pytest

import augment_train
import fake_openai
from conftest import fake_snakemake, with_defaults
from huatuo_study.common import PipelineError, read_json, read_jsonl, write_jsonl
from huatuo_study.data import augment_llm

SECRET = "sk-test-augment-DO-NOT-LEAK-42"
KEY_ENV = "AUGMENT_TEST_API_KEY"
_ORIGINAL = re.compile(r"原文：(.*)\n\n增强后的文本：\Z", re.S)

QUESTIONS = [
    "头痛怎么办？",
    "感冒发烧怎么办？",
    "失眠怎么调理？",
    "胃痛吃什么药？",
    "咳嗽老不好怎么回事？",
    "高血压要注意什么？",
    "孩子不爱吃饭怎么办？",
    "腰疼是什么原因？",
    "嗓子疼怎么缓解？",
    "皮肤过敏怎么办？",
    "经常头晕是怎么回事？",
    "眼睛干涩怎么办？",
    "牙龈出血怎么回事？",
    "便秘吃什么好？",
    "手脚冰凉怎么调理？",
    "口腔溃疡怎么办？",
    "鼻炎怎么治疗？",
    "颈椎病怎么缓解？",
    "血糖高吃什么？",
    "脱发严重怎么办？",
]


def original(body: dict) -> str:
    return _ORIGINAL.search(body["messages"][-1]["content"]).group(1)


def rewrite(question: str) -> str:
    """A plausible rewrite: the notebook's prefix, then the question reworded."""
    return "增强后的文本：请问" + question.replace("怎么办", "该如何处理").replace("怎么", "如何")


@pytest.fixture
def server():
    server = fake_openai.start(respond=lambda body: rewrite(original(body)))
    yield server
    fake_openai.stop(server)


@pytest.fixture(autouse=True)
def env(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(KEY_ENV, SECRET)


def config(server, **llm):
    return {
        "method": "llm",
        "ratio": 0.3,
        "seed": 42,
        "llm": with_defaults(
            "augmentation.llm",
            {
                "model": "deepseek-chat",
                "base_url": server.base_url,
                "api_key_env": KEY_ENV,
                "temperature": 0.7,
                "max_retries": 0,
                "backoff_base": 0.0,
                "concurrency": 2,
                "price_per_million": {"input": 1.0, "output": 2.0},
                **llm,
            },
        ),
    }


def run(tmp_path, cfg):
    train = tmp_path / "train.jsonl"
    if not train.exists():
        write_jsonl(
            train, [{"id": i, "question": q, "answer": f"回答{i}：请及时就医。"} for i, q in enumerate(QUESTIONS)]
        )
    smk = fake_snakemake(
        input={"train": str(train), "protected": []},
        output={
            "train": str(tmp_path / "out" / "train_augmented.jsonl"),
            "stats": str(tmp_path / "out" / "stats.json"),
        },
        params={"augmentation": cfg, "cache_dir": str(tmp_path / "cache")},
    )
    augment_train.main(smk)
    return read_jsonl(smk.output.train), read_json(smk.output.stats)


def chat_requests(server):
    return [r for r in server.requests if r["method"] == "POST" and r["path"].endswith("/chat/completions")]


def test_the_notebooks_call_rewrites_exactly_the_share_and_keeps_answers(server, tmp_path):
    out, stats = run(tmp_path, config(server))
    originals, copies = out[:20], out[20:]
    assert [r["question"] for r in originals] == QUESTIONS
    assert len(copies) == 6 == stats["n_augmented"] == stats["n_selected"]  # round(0.3 * 20)
    assert stats["augmented_share"] == pytest.approx(0.3) and stats["n_unaugmented"] == 0
    # The study's draw: among all training questions, whatever the LLM will make of them.
    assert stats["selection"] == "among all questions" and stats["n_pool"] == 20 and stats["pool_short"] is False
    by_id = {r["id"]: r for r in originals}
    for copy in copies:
        source = by_id[copy["augmented_from"]]
        assert copy["id"] == f"{source['id']}-aug"
        assert copy["answer"] == source["answer"]
        assert copy["question"] == rewrite(source["question"]).removeprefix("增强后的文本：")
    requests = chat_requests(server)
    assert len(requests) == 6
    body = requests[0]["body"]
    question = original(body)
    assert body["model"] == "deepseek-chat" and body["temperature"] == 0.7
    assert body["max_tokens"] == len(question) + 100
    assert body["messages"] == [
        {"role": "system", "content": "你是一个专业的文本增强助手，擅长进行同义词替换而不改变原文意思。"},
        {
            "role": "user",
            "content": f"请对以下文本进行同义词替换，保持原意不变，只返回替换后的文本：\n\n原文：{question}\n\n增强后的文本：",
        },
    ]
    usage = stats["usage"]
    assert usage["calls"] == 6 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["cost_usd"] == pytest.approx((usage["prompt_tokens"] + 2 * usage["completion_tokens"]) / 1e6)
    # For the paper's provenance: the client library this method ran with, as installed here.
    assert stats["versions"] == {"python": platform.python_version(), "openai": importlib.metadata.version("openai")}


def test_a_rerun_after_losing_the_file_pays_for_nothing(server, tmp_path):
    first, stats = run(tmp_path, config(server))
    paid = len(chat_requests(server))
    (tmp_path / "out" / "train_augmented.jsonl").unlink()
    again, stats_again = run(tmp_path, config(server))
    assert len(chat_requests(server)) == paid == 6
    assert again == first and stats_again == stats  # usage counts cached calls too


def test_unusable_replies_are_asked_once_more_then_counted(tmp_path):
    selected = [QUESTIONS[i] for i in augment_train.select_positions(20, 0.3, 42)]
    empty, same, long_twice, fixed = selected[:4]
    asked = {}

    def respond(body):
        q = original(body)
        asked[q] = asked.get(q, 0) + 1
        if q == empty:
            return "  "
        if q == same:
            return "增强后的文本：" + q
        if q == long_twice:
            return q * 3
        if q == fixed and asked[q] == 1:
            return "好的"  # too short to be the question rewritten
        return rewrite(q)

    server = fake_openai.start(respond=respond)
    try:
        out, stats = run(tmp_path, config(server))
    finally:
        fake_openai.stop(server)
    rewritten = {r["augmented_from"] for r in out[20:]}
    assert stats["n_augmented"] == 3 and stats["n_unaugmented"] == 3
    assert stats["unaugmented_reasons"] == {"empty": 1, "unchanged": 1, "length": 1}
    assert {QUESTIONS.index(q) for q in (empty, same, long_twice)}.isdisjoint(rewritten)
    assert QUESTIONS.index(fixed) in rewritten
    assert asked[empty] == asked[same] == asked[long_twice] == asked[fixed] == 2
    assert stats["usage"]["calls"] == 6 + 4
    assert not any("[同义词替换]" in r["question"] for r in out)


def test_reply_checks():
    q = "感冒发烧怎么办？"
    assert augment_llm.clean_reply(" 增强后的文本：感冒发热如何处理？\n") == "感冒发热如何处理？"
    assert augment_llm.unusable(q, "") == "empty"
    assert augment_llm.unusable(q, q) == "unchanged"
    assert augment_llm.unusable(q, "感冒") == "length"
    assert augment_llm.unusable(q, q * 3) == "length"
    assert augment_llm.unusable(q, "感冒发热如何处理？") is None


def test_the_key_is_written_nowhere(server, tmp_path):
    run(tmp_path, config(server))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(encoding="utf-8", errors="replace"), path
    assert all(r["headers"]["authorization"] == f"Bearer {SECRET}" for r in chat_requests(server))


def test_a_missing_key_stops_before_any_call(server, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(PipelineError, match=f"augmentation.llm.api_key_env: environment variable {KEY_ENV} is not set"):
        run(tmp_path, config(server))
    assert not server.requests and not (tmp_path / "out").exists()


def test_stats_are_json_with_examples(server, tmp_path):
    _, stats = run(tmp_path, config(server))
    assert stats["method"] == "llm" and len(stats["examples"]) == 6
    assert all(e["after"] != e["before"] for e in stats["examples"])
    json.dumps(stats)
