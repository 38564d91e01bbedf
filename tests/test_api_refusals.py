"""A provider that refuses the run itself, which no retry or wait cures: a model it no longer
serves (404 model_not_found), a key it rejects (401) or that lacks access (403), a spent quota
(429 insufficient_quota). The judge stage stops at once with one line naming the config key to
change, sends no more than the calls already in flight, and writes nothing that looks complete."""

import re

import pytest

import judge_pairwise as jp
from conftest import REPO, fake_snakemake, with_defaults
from huatuo_study.common import write_jsonl

KEY_ENV = "REFUSAL_TEST_KEY"
SECRET = "sk-refusal-test-0123456789"
CONCURRENCY = 4
QUESTIONS = [f"问题{i}：头痛怎么办？" for i in range(40)]


@pytest.fixture(autouse=True)
def env(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.mark.parametrize(
    "fault, message",
    [
        (
            ("status", 404, {"x-error-code": "model_not_found"}),
            r"the server does not serve model 'gone-model' \(HTTP 404: .*\); set judge.model to a model it serves",
        ),
        (("status", 401), r"the API rejected the key \(HTTP 401\); check judge.api_key_env \(now REFUSAL_TEST_KEY\)"),
        (
            ("status", 403),
            r"the key in REFUSAL_TEST_KEY has no access to model 'gone-model' \(HTTP 403: .*\); "
            r"set judge.api_key_env to a key with access, or judge.model",
        ),
        (
            ("status", 429, {"x-error-code": "insufficient_quota"}),
            r"the account of the key in REFUSAL_TEST_KEY has no quota left \(HTTP 429: .*\), which waiting does not "
            r"cure: add credit, or set judge.api_key_env to a key with quota",
        ),
    ],
    ids=["model_not_found", "401", "403", "insufficient_quota"],
)
def test_a_refused_run_stops_at_once_with_one_line_naming_the_key(tmp_path, fake, fault, message):
    rows = [{"id": f"q{i}", "question": q} for i, q in enumerate(QUESTIONS)]
    paths = {name: tmp_path / f"{name}.jsonl" for name in ("test", "baseline", "answers")}
    write_jsonl(paths["test"], rows)
    write_jsonl(paths["baseline"], [{**r, "answer": "多喝水。"} for r in rows])
    write_jsonl(paths["answers"], [{**r, "answer": "多休息，多喝水。"} for r in rows])
    every_call = {(q, a): [fault] * 10 for q in QUESTIONS for a in ("多喝水。", "多休息，多喝水。")}
    server = fake(faults=every_call)
    judge = with_defaults(
        "judge",
        {
            "backend": "openai",
            "model": "gone-model",
            "base_url": server.base_url,
            "api_key_env": KEY_ENV,
            "concurrency": CONCURRENCY,
            "max_retries": 5,
            "backoff_base": 0.01,
            "timeout": 5,
        },
    )
    log_file = tmp_path / "judge.log"
    smk = fake_snakemake(
        input={"prompt": str(REPO / "config" / "judge_prompt.txt"), **{k: str(v) for k, v in paths.items()}},
        output={"verdicts": str(tmp_path / "verdicts" / "s1.jsonl")},
        params={"judge": judge, "setting": "s1", "cache_dir": str(tmp_path / "cache"), "section": "judge"},
        log=[str(log_file)],
        rule="judge_pairwise",
    )
    with pytest.raises(SystemExit) as exc:
        jp.run_stage(jp.main, smk)
    assert exc.value.code == 1

    # no retry storm: each worker sent at most the one call it held when the first refusal came
    assert 1 <= len(server.requests) <= CONCURRENCY
    log = log_file.read_text(encoding="utf-8")
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert re.search(message, errors[0]), errors[0]
    assert "retry" not in log and SECRET not in log
    # nothing written that looks complete
    assert not (tmp_path / "verdicts" / "s1.jsonl").exists()
    assert not list((tmp_path / "cache").glob("??/*.json"))
