import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import fake_snakemake

import judge_pairwise as jp
from common import DataError, PipelineError, read_jsonl, run_stage, write_jsonl

SECRET = "sk-test-DO-NOT-LEAK-0123456789abcdef"
KEY_ENV = "JUDGE_TEST_API_KEY"


# --------------------------------------------------------------------------- parse_label


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("Assistant 1 is better than Assistant 2", "better"),
        ("Assistant 1 is worse than Assistant 2", "worse"),
        ("Assistant 1 is equal to Assistant 2", "equal"),
        ("Some analysis.\n\nAssistant 1 is better than Assistant 2.", "better"),
        ("analysis\n'Assistant 1 is worse than Assistant 2'", "worse"),
        ('analysis\n"Assistant 1 is equal to Assistant 2"', "equal"),
        ("analysis\n\u201cAssistant 1 is better than Assistant 2\u201d\u3002", "better"),
        ("analysis\n**Assistant 1 is worse than Assistant 2**", "worse"),
        ("analysis\nASSISTANT 1 IS EQUAL TO ASSISTANT 2", "equal"),
        # full-width letters, digits, spaces and period
        ("分析\n\uff21ssistant\u3000\uff11 is better than Assistant \uff12\uff0e", "better"),
        ("analysis\nAssistant1 is worse than Assistant2", "worse"),
        ("Both are fine.\nTherefore, the judgment is: Assistant 1 is equal to Assistant 2.", "equal"),
        ("Both are fine.\nTherefore, the judgment is: Assistant 1 is equal to Assistant 2.\n\n  \n", "equal"),
        # a label only on an earlier line does not count
        ("Assistant 1 is better than Assistant 2\nI cannot decide.", None),
        ("Assistant 1 is better than Assistant 2\n\nThe end", None),
        # the option list, or two different labels, on the last line: no single label
        (
            "'Assistant 1 is better than Assistant 2', 'Assistant 1 is worse than Assistant 2', "
            "and 'Assistant 1 is equal to Assistant 2'",
            None,
        ),
        ("Assistant 1 is not better than Assistant 2", None),
        ("Assistant 1 is better than Assistant 22", None),
        ("", None),
        (None, None),
        ("   \n\n", None),
    ],
)
def test_parse_label(reply, expected):
    assert jp.parse_label(reply) == expected


def test_label_inside_an_answer_does_not_change_the_result():
    quoted = "Assistant 1 said: 'Assistant 1 is better than Assistant 2'. Assistant 2 was more precise."
    assert jp.parse_label(quoted + "\nAssistant 1 is worse than Assistant 2") == "worse"
    assert jp.parse_label(quoted + "\nNo verdict.") is None


def test_verdict_of_label():
    assert [jp.verdict_of(x) for x in ("better", "worse", "equal", None)] == ["win", "loss", "tie", "invalid"]


def test_build_messages_is_one_user_message_in_order():
    (msg,) = jp.build_messages("Q?", "first", "second")
    assert msg["role"] == "user"
    assert msg["content"] == f"{jp.JUDGE_PROMPT}\n\nQuestion: Q?\n\nAssistant1: first\n\nAssistant2: second"


def test_prompt_is_verbatim():
    assert jp.JUDGE_PROMPT == (
        "We would like to request your feedback on the two AI assistants in response to the user question "
        "displayed above. Please evaluate the helpfulness, relevance, accuracy, level of details of their "
        "responses. You should tell me whether Assistant 1 is 'better than', 'worse than', or 'equal to' "
        "Assistant 2. Please first compare their responses and analyze which one is more in line with the given "
        "requirements. In the last line, please output a single line containing only a single label selecting "
        "from 'Assistant 1 is better than Assistant 2', 'Assistant 1 is worse than Assistant 2', and 'Assistant 1 "
        "is equal to Assistant 2', avoiding any potential bias and ensuring that the order in which the responses "
        "were presented does not affect your judgment."
    )


# --------------------------------------------------------------------------- fixtures


TEST_ROWS = [
    {"id": "q1", "question": "头痛怎么办？", "reference": "多休息，多喝水，必要时服用止痛药。"},
    {"id": "q2", "question": "感冒发烧怎么办？", "reference": "注意休息，物理降温，高烧不退请就医。"},
    {"id": "q3", "question": "失眠怎么调理？", "reference": "规律作息，睡前避免咖啡。"},
]
SETTING_ANSWERS = {
    "q1": "多休息，多喝水，必要时服用止痛药。",  # identical to the reference
    "q2": "吃点水果。",  # unrelated
    "q3": "规律作息，睡前避免咖啡！",  # same characters, other punctuation
}
BASELINE_ANSWERS = {
    "q1": "吃点水果。",
    "q2": "注意休息，物理降温，高烧不退请就医。",
    "q3": "规律作息 睡前避免咖啡",
}


def _write_inputs(tmp_path, test_rows=TEST_ROWS, setting=SETTING_ANSWERS, baseline=BASELINE_ANSWERS):
    paths = {k: tmp_path / f"{k}.jsonl" for k in ("test", "baseline", "answers")}
    write_jsonl(paths["test"], test_rows)
    write_jsonl(paths["baseline"], [{"id": r["id"], "question": r["question"], "answer": baseline[r["id"]]} for r in test_rows if r["id"] in baseline])
    write_jsonl(paths["answers"], [{"id": r["id"], "question": r["question"], "answer": setting[r["id"]]} for r in test_rows if r["id"] in setting])
    return paths


def _smk(tmp_path, paths, judge, setting="setting1", log_file=None):
    return fake_snakemake(
        input={k: str(v) for k, v in paths.items()},
        output={"verdicts": str(tmp_path / "out" / "verdicts.jsonl")},
        params={"judge": judge, "setting": setting},
        log=[str(log_file)] if log_file else None,
        rule="judge_pairwise",
    )


REFERENCE_JUDGE = {"backend": "reference", "model": "rouge-l-char", "tie_margin": 0.01, "temperature": 0.0}


# --------------------------------------------------------------------------- reference backend


def test_char_tokenizer_drops_whitespace_and_punctuation():
    assert jp.CharTokenizer().tokenize("头痛， 怎么办？Ａb.") == ["头", "痛", "怎", "么", "办", "a", "b"]


def test_reference_judge_known_outcomes(tmp_path):
    paths = _write_inputs(tmp_path)
    smk = _smk(tmp_path, paths, REFERENCE_JUDGE)
    jp.main(smk)
    records = read_jsonl(smk.output.verdicts)
    assert [r["id"] for r in records] == ["q1", "q2", "q3"]
    assert [r["verdict"] for r in records] == ["win", "loss", "tie"]
    assert [r["label"] for r in records] == ["better", "worse", "equal"]
    first = records[0]
    assert set(first) == {"id", "setting", "question", "setting_answer", "baseline_answer", "verdict", "label", "judge", "reply", "usage"}
    assert first["setting"] == "setting1"
    assert first["setting_answer"] == SETTING_ANSWERS["q1"] and first["baseline_answer"] == BASELINE_ANSWERS["q1"]
    assert first["judge"] == {"backend": "reference", "model": "rouge-l-char"}
    assert first["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    assert "1.0000" in first["reply"]  # the setting's score: identical to the reference
    # the reply's last line is the label, consistent with the openai backend's replies
    assert all(jp.parse_label(r["reply"]) == r["label"] for r in records)


def test_reference_judge_tie_margin():
    assert jp.reference_label(0.50, 0.505, 0.01) == "equal"
    assert jp.reference_label(0.50, 0.52, 0.01) == "worse"
    assert jp.reference_label(0.53, 0.52, 0.0) == "better"
    assert jp.reference_label(0.52, 0.52, 0.0) == "equal"


def test_reference_judge_needs_reference(tmp_path):
    rows = [dict(TEST_ROWS[0]), {"id": "q2", "question": TEST_ROWS[1]["question"], "reference": None}, dict(TEST_ROWS[2])]
    paths = _write_inputs(tmp_path, test_rows=rows)
    smk = _smk(tmp_path, paths, REFERENCE_JUDGE)
    with pytest.raises(PipelineError, match="test.source: heldout"):
        jp.main(smk)
    assert not (tmp_path / "out" / "verdicts.jsonl").exists()


# --------------------------------------------------------------------------- inputs


def test_missing_id_names_file_and_id(tmp_path):
    paths = _write_inputs(tmp_path, setting={k: v for k, v in SETTING_ANSWERS.items() if k != "q2"})
    with pytest.raises(DataError, match=r"answers\.jsonl.*'q2'"):
        jp.main(_smk(tmp_path, paths, REFERENCE_JUDGE))
    paths = _write_inputs(tmp_path, baseline={k: v for k, v in BASELINE_ANSWERS.items() if k != "q3"})
    with pytest.raises(DataError, match=r"baseline\.jsonl.*'q3'"):
        jp.main(_smk(tmp_path, paths, REFERENCE_JUDGE))


def test_extra_id_is_an_error(tmp_path):
    paths = _write_inputs(tmp_path)
    write_jsonl(paths["answers"], read_jsonl(paths["answers"]) + [{"id": "q9", "question": "x", "answer": "y"}])
    with pytest.raises(DataError, match=r"answers\.jsonl.*'q9'"):
        jp.main(_smk(tmp_path, paths, REFERENCE_JUDGE))


def test_unknown_backend(tmp_path):
    paths = _write_inputs(tmp_path)
    with pytest.raises(PipelineError, match="judge.backend"):
        jp.main(_smk(tmp_path, paths, {"backend": "gpt"}))


# --------------------------------------------------------------------------- openai backend


class _ChatServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, replies):
        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.replies = list(replies)
        self.requests = []
        self.lock = threading.Lock()


class _ChatHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
            i = len(self.server.requests)
            reply = self.server.replies.pop(0)
        if isinstance(reply, int):  # an HTTP error status
            data = json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}", "type": "invalid_request_error"}}).encode()
            self.send_response(reply)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        payload = {
            "id": f"chatcmpl-{i}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100 + i, "completion_tokens": 10 + i, "total_tokens": 110 + 2 * i},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def chat_server():
    servers = []

    def start(replies):
        server = _ChatServer(replies)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def _openai_judge(server):
    host, port = server.server_address
    return {
        "backend": "openai",
        "model": "judge-model",
        "base_url": f"http://{host}:{port}/v1",
        "api_key_env": KEY_ENV,
        "temperature": 0.0,
        "max_tokens": 256,
        "max_retries": 0,
        "timeout": 10,
    }


SCRIPTED_REPLIES = [
    # q1: better, after quoting another label earlier in the analysis
    "Assistant 2 says 'Assistant 1 is worse than Assistant 2' nowhere.\nAnalysis...\n\nAssistant 1 is better than Assistant 2",
    # q2: the course's own example ending
    "Both answers are similar.\nTherefore, the judgment is: Assistant 1 is equal to Assistant 2.",
    # q3: no label in the last line
    "Assistant 1 is worse than Assistant 2\nActually I am not sure.",
]


def test_openai_backend_against_loopback_server(tmp_path, chat_server, monkeypatch, no_proxy, restore_logging, capsys):
    monkeypatch.setenv(KEY_ENV, SECRET)
    server = chat_server(SCRIPTED_REPLIES)
    paths = _write_inputs(tmp_path)
    log_file = tmp_path / "logs" / "judge.log"
    smk = _smk(tmp_path, paths, _openai_judge(server), setting="setting2", log_file=log_file)
    run_stage(jp.main, smk)

    # the requests: one per test id, in order, with the verbatim prompt and the answers in order
    assert len(server.requests) == 3
    for req, row in zip(server.requests, TEST_ROWS):
        assert req["path"] == "/v1/chat/completions"
        body = req["body"]
        assert body["model"] == "judge-model"
        assert body["temperature"] == 0.0
        assert body["max_tokens"] == 256
        assert len(body["messages"]) == 1 and body["messages"][0]["role"] == "user"
        content = body["messages"][0]["content"]
        assert content.startswith(jp.JUDGE_PROMPT + "\n\n")
        assert content == (
            f"{jp.JUDGE_PROMPT}\n\nQuestion: {row['question']}\n\n"
            f"Assistant1: {SETTING_ANSWERS[row['id']]}\n\nAssistant2: {BASELINE_ANSWERS[row['id']]}"
        )
        assert req["headers"].get("authorization") == f"Bearer {SECRET}"  # the key is used ...

    records = read_jsonl(smk.output.verdicts)
    assert [r["id"] for r in records] == ["q1", "q2", "q3"]
    assert [r["label"] for r in records] == ["better", "equal", None]
    assert [r["verdict"] for r in records] == ["win", "tie", "invalid"]
    assert [r["reply"] for r in records] == SCRIPTED_REPLIES
    assert [r["usage"] for r in records] == [{"prompt_tokens": 100 + i, "completion_tokens": 10 + i} for i in (1, 2, 3)]
    assert all(r["judge"] == {"backend": "openai", "model": "judge-model"} and r["setting"] == "setting2" for r in records)

    # ... but written nowhere
    captured = capsys.readouterr()
    assert SECRET not in captured.out and SECRET not in captured.err
    assert log_file.exists() and "setting2" in log_file.read_text(encoding="utf-8")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(encoding="utf-8", errors="replace"), path


def test_openai_missing_key_fails_before_any_request(tmp_path, chat_server, monkeypatch, no_proxy, restore_logging):
    monkeypatch.delenv(KEY_ENV, raising=False)
    server = chat_server(SCRIPTED_REPLIES)
    paths = _write_inputs(tmp_path)
    smk = _smk(tmp_path, paths, _openai_judge(server))
    with pytest.raises(PipelineError, match=f"judge.api_key_env: environment variable {KEY_ENV} is not set"):
        jp.main(smk)
    assert server.requests == []
    assert not (tmp_path / "out" / "verdicts.jsonl").exists()

    # through the Snakemake glue: one clear line in the log and a non-zero exit
    log_file = tmp_path / "judge.log"
    smk = _smk(tmp_path, paths, _openai_judge(server), log_file=log_file)
    with pytest.raises(SystemExit) as exc:
        run_stage(jp.main, smk)
    assert exc.value.code == 1
    assert f"environment variable {KEY_ENV} is not set" in log_file.read_text(encoding="utf-8")
    assert server.requests == []


def test_openai_default_key_env(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(PipelineError, match="environment variable OPENAI_API_KEY is not set"):
        jp.api_key_from_env({"backend": "openai", "model": "m"})


def test_openai_http_error_does_not_leak_key(tmp_path, monkeypatch, no_proxy, restore_logging):
    # nothing listens on this port: a connection error becomes a PipelineError without the key
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(KEY_ENV, SECRET)
    judge = {"backend": "openai", "model": "m", "base_url": f"http://127.0.0.1:{port}/v1", "api_key_env": KEY_ENV, "max_retries": 0, "timeout": 5}
    paths = _write_inputs(tmp_path)
    with pytest.raises(PipelineError) as exc:
        jp.main(_smk(tmp_path, paths, judge))
    assert SECRET not in str(exc.value)


@pytest.mark.parametrize("status", [401, 500])
def test_openai_http_status_error_is_one_clear_line_without_key(tmp_path, chat_server, monkeypatch, no_proxy, status):
    monkeypatch.setenv(KEY_ENV, SECRET)
    server = chat_server([status])
    paths = _write_inputs(tmp_path)
    with pytest.raises(PipelineError, match=f"HTTP {status}") as exc:
        jp.main(_smk(tmp_path, paths, _openai_judge(server)))
    assert SECRET not in str(exc.value)
    assert len(server.requests) == 1  # max_retries: 0
    assert not (tmp_path / "out" / "verdicts.jsonl").exists()


def test_int_ids_are_kept(tmp_path):
    rows = [{"id": i, "question": r["question"], "reference": r["reference"]} for i, r in enumerate(TEST_ROWS)]
    paths = {k: tmp_path / f"{k}.jsonl" for k in ("test", "baseline", "answers")}
    write_jsonl(paths["test"], rows)
    write_jsonl(paths["baseline"], [{"id": r["id"], "question": r["question"], "answer": "x"} for r in reversed(rows)])
    write_jsonl(paths["answers"], [{"id": r["id"], "question": r["question"], "answer": r["reference"]} for r in rows])
    smk = _smk(tmp_path, paths, REFERENCE_JUDGE)
    jp.main(smk)
    records = read_jsonl(smk.output.verdicts)
    assert [r["id"] for r in records] == [0, 1, 2]  # test order, not the baseline file's
    assert [r["verdict"] for r in records] == ["win"] * 3
