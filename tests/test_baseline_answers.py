"""Baseline answers from an OpenAI-compatible model go through the same cached, retried client as
the judge and the augmentation (a loopback server, tests/fake_openai.py)."""

import pytest

import baseline_answers
import fake_openai
from conftest import with_defaults
from huatuo_study.common import PipelineError

KEY_ENV = "BASELINE_TEST_API_KEY"
TEST = [{"id": 1, "question": "头痛怎么办？"}, {"id": 2, "question": "失眠怎么调理？"}]


@pytest.fixture(autouse=True)
def env(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(KEY_ENV, "sk-baseline-test")


def test_openai_baseline_is_cached_and_retried(tmp_path):
    question = TEST[1]["question"]
    server = fake_openai.start(
        respond=lambda body: "ChatGPT 的回答：" + body["messages"][-1]["content"],
        faults={question: [("status", 503, {})]},
    )
    cfg = with_defaults(
        "test_sets.small.baseline",
        {
            "source": "openai",
            "model": "gpt-3.5-turbo",
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "temperature": 0.0,
            "max_tokens": 1024,
            "backoff_base": 0.0,
        },
    )
    try:
        answers = baseline_answers.answers_from_openai(TEST, cfg, str(tmp_path / "cache"))
        assert answers == ["ChatGPT 的回答：头痛怎么办？", "ChatGPT 的回答：失眠怎么调理？"]
        assert server.asked[question] == 2  # the 503 was retried
        body = server.requests[0]["body"]
        assert body["model"] == "gpt-3.5-turbo" and body["messages"][-1]["role"] == "user"
        assert baseline_answers.answers_from_openai(TEST, cfg, str(tmp_path / "cache")) == answers
        assert len(server.requests) == 3  # the rerun was answered by the cache
    finally:
        fake_openai.stop(server)


def test_openai_baseline_without_key_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(PipelineError, match=f"baseline.api_key_env: environment variable {KEY_ENV} is not set"):
        baseline_answers.answers_from_openai(TEST, {"model": "m", "api_key_env": KEY_ENV}, str(tmp_path))
