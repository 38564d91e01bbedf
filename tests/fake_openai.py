"""A loopback OpenAI-compatible server for the tests of every paid call (judge, augmentation,
baseline): chat completions, Files and Batches, in their wire formats, with scripted faults. Not
a test module (no test_ prefix).

By default it plays the judge: it quotes both answers, then ends with a label chosen by `decide`
(default: the longer answer is better, equal lengths are equal). Given `respond` (request body ->
reply text), it answers any other conversation with that instead. Faults are scripted per
conversation, keyed by request_key: (question, Assistant 1's answer) for a judge request, else
the last message's text; a list of actions used by that conversation's successive requests,
after which it gets the normal reply. Actions:
  ("status", code, headers)   an HTTP error with an OpenAI error body
  ("sleep", seconds)          answer late (past the client's timeout)
  ("drop",)                   close the connection without answering
  ("raw", bytes)              a 200 whose body is these bytes (malformed JSON, say)
  ("reply", text)             a chat completion with this text ("" for empty content)

At load (`limits`, `chaos`), the requests that get a normal reply are further policed as a rate
limited provider polices them: `limits` {rpm, tpm, window_s} admits at most rpm * window_s / 60
requests and tpm * window_s / 60 tokens (the prompt's characters plus max_tokens, as providers
count a request before answering it) in any sliding window of window_s seconds, and answers the
rest 429 `rate_limit_exceeded` with a whole-second Retry-After (when the window has room again);
`chaos` {seed, drop, error, slow, slow_s, latency_s} drops a connection or answers 500 with those
probabilities before the limiter sees the request, and answers an admitted one after latency_s
seconds, or slow_s with probability slow. `paid` counts the 200 replies per request_key (batch
lines included) and `paid_log` holds (time, tokens) of each, for throughput against the limit.
Batches: `batch_max_requests` refuses (400) a batch of more lines; a batch whose id is in
`batch_expire` ends 'expired' with its second half unanswered (error code batch_expired).
"""

import email.parser
import email.policy
import json
import math
import random
import re
import sys
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LABEL = {
    "better": "Assistant 1 is better than Assistant 2",
    "worse": "Assistant 1 is worse than Assistant 2",
    "equal": "Assistant 1 is equal to Assistant 2",
}
_CONTENT = re.compile(
    r"\n\n\[Question\]\n(.*)\n\n\[The Start of Assistant 1's Answer\]\n(.*)\n\[The End of "
    r"Assistant 1's Answer\]\n\n\[The Start of Assistant 2's Answer\]\n(.*)\n\[The End of "
    r"Assistant 2's Answer\]\Z",
    re.S,
)


def longer_is_better(question: str, answer1: str, answer2: str) -> str:
    if len(answer1) == len(answer2):
        return "equal"
    return "better" if len(answer1) > len(answer2) else "worse"


def conversation(body: dict) -> tuple[str, str, str]:
    """(question, answer1, answer2) of a judge request body."""
    return _CONTENT.search(body["messages"][0]["content"]).groups()


def request_key(body: dict):
    """What faults and counts are keyed by: (question, answer1) of a judge request, else the
    last message's text."""
    match = _CONTENT.search(body["messages"][-1]["content"])
    return match.groups()[:2] if match else body["messages"][-1]["content"]


def tokens_of(body: dict) -> int:
    """A request's cost against a tokens-per-minute limit: its characters plus max_tokens."""
    return sum(len(m["content"]) for m in body["messages"]) + int(body.get("max_tokens") or 0)


class FakeOpenAI(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a pool of connections opened at once is not refused

    def __init__(
        self,
        faults=None,
        decide=longer_is_better,
        batch_polls=2,
        batch_line_status=None,
        respond=None,
        limits=None,
        chaos=None,
        keep_requests=True,
        batch_max_requests=None,
        batch_expire=(),
    ):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.faults = {key: list(actions) for key, actions in (faults or {}).items()}
        self.decide = decide
        self.respond = respond
        self.batch_polls = batch_polls  # GETs of a batch before it completes
        self.batch_line_status = batch_line_status or {}  # (question, answer1) -> HTTP status in the batch
        self.batch_max_requests = batch_max_requests
        self.batch_expire = set(batch_expire)
        self.requests: list[dict] = []
        self.asked: Counter = Counter()  # request_key -> chat requests, batch lines included
        self.on_request = None  # called with each request before it is answered
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.limits = limits
        self.chaos = chaos
        self.random = random.Random((chaos or {}).get("seed", 0))
        self.keep_requests = keep_requests  # off at load: the bodies would fill the test's memory
        self.window: deque = deque()  # (admitted at, tokens) within the sliding window
        self.window_tokens = 0
        self.paid: Counter = Counter()  # request_key -> 200 replies
        self.paid_log: list[tuple[float, int]] = []
        self.statuses: Counter = Counter()  # HTTP status -> replies of chat completions ("drop": dropped)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client killed or gone is no server fault
            super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        host, port = self.server_address
        return f"http://{host}:{port}/v1"

    def count(self, method: str, prefix: str) -> int:
        return sum(r["method"] == method and r["path"].startswith(prefix) for r in self.requests)

    def reply_text(self, body: dict) -> str:
        if self.respond is not None:
            return self.respond(body)
        question, a1, a2 = conversation(body)
        choice = self.decide(question, a1, a2)  # a label's name, or any other last line
        return f"Assistant 1 wrote:\n{a1}\nAssistant 2 wrote:\n{a2}\nMy verdict follows.\n{LABEL.get(choice, choice)}"

    def completion(self, body: dict, text: str) -> dict:
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": len(body["messages"][0]["content"]),
                "completion_tokens": len(text),
                "total_tokens": len(body["messages"][0]["content"]) + len(text),
            },
        }

    def next_action(self, body: dict):
        key = request_key(body)
        with self.lock:
            self.asked[key] += 1
            actions = self.faults.get(key)
            return actions.pop(0) if actions else ("reply", self.reply_text(body))

    def police(self, body: dict, action: tuple) -> tuple:
        """The action for a request at load: a normal reply may be dropped, fail, be refused by
        the rate limit or come late; scripted faults pass as they are."""
        if action[0] != "reply" or not (self.limits or self.chaos):
            return action
        chaos = self.chaos or {}
        with self.lock:
            roll = self.random.random()
            if roll < chaos.get("drop", 0.0):
                return ("drop",)
            if roll < chaos.get("drop", 0.0) + chaos.get("error", 0.0):
                return ("status", 500)
            wait = self.admit(tokens_of(body)) if self.limits else 0.0
            if wait > 0:
                return (
                    "status",
                    429,
                    {"Retry-After": str(max(1, math.ceil(wait))), "x-error-code": "rate_limit_exceeded"},
                )
            slow = self.random.random() < chaos.get("slow", 0.0)
            delay = self.random.uniform(*chaos["slow_s" if slow else "latency_s"]) if chaos else 0.0
        return ("sleep", delay) if delay else action

    def admit(self, tokens: int) -> float:
        """0 if the request fits the sliding window (and is counted in it), else the seconds until
        the window has room for it. Called under the lock."""
        now, span = time.monotonic(), float(self.limits.get("window_s", 60))
        while self.window and self.window[0][0] <= now - span:
            self.window_tokens -= self.window.popleft()[1]
        max_requests = self.limits["rpm"] * span / 60
        max_tokens = self.limits["tpm"] * span / 60
        if len(self.window) + 1 <= max_requests and self.window_tokens + tokens <= max_tokens:
            self.window.append((now, tokens))
            self.window_tokens += tokens
            return 0.0
        # room comes as the oldest admissions leave the window
        wait, count, freed = 0.0, len(self.window), 0
        for admitted, spent in self.window:
            if count + 1 <= max_requests and self.window_tokens - freed + tokens <= max_tokens:
                break
            count, freed = count - 1, freed + spent
            wait = admitted + span - now
        return wait

    def pay(self, body: dict) -> None:
        with self.lock:
            self.paid[request_key(body)] += 1
            self.paid_log.append((time.monotonic(), tokens_of(body)))

    # ----------------------------------------------------------------------- batches

    def batch_output(self, batch: dict) -> tuple[str, str]:
        out, err = [], []
        lines = self.files[batch["input_file_id"]].decode("utf-8").splitlines()
        answered = len(lines) // 2 if batch["id"] in self.batch_expire else len(lines)
        for n, line in enumerate(lines):
            request = json.loads(line)
            if n >= answered:
                error = {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired.",
                }
                err.append({"id": "r", "custom_id": request["custom_id"], "response": None, "error": error})
                continue
            key = request_key(request["body"])
            with self.lock:
                self.asked[key] += 1
            status = self.batch_line_status.get(key, 200)
            if status == 200:
                self.pay(request["body"])
                body = self.completion(request["body"], self.reply_text(request["body"]))
                out.append(
                    {
                        "id": "r",
                        "custom_id": request["custom_id"],
                        "response": {"status_code": 200, "body": body},
                        "error": None,
                    }
                )
            else:
                error = {"error": {"message": "server error", "type": "server_error"}}
                err.append(
                    {
                        "id": "r",
                        "custom_id": request["custom_id"],
                        "response": {"status_code": status, "body": error},
                        "error": None,
                    }
                )
        return "".join(json.dumps(r) + "\n" for r in out), "".join(json.dumps(r) + "\n" for r in err)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _record(self, body):
        request = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        if self.server.keep_requests:
            with self.server.lock:
                self.server.requests.append(request)
        if self.server.on_request:
            return self.server.on_request(request)
        return None

    def _send(self, status: int, payload, headers=None, raw: bytes | None = None):
        data = raw if raw is not None else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self):
        self.close_connection = True

    def do_POST(self):  # noqa: N802
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.endswith("/files"):
            return self._upload(data)
        body = json.loads(data)
        if self._record(body) == "drop":
            return self._drop()
        if self.path.endswith("/batches"):
            return self._create_batch(body)
        action = self.server.police(body, self.server.next_action(body))
        kind = action[0]
        with self.server.lock:
            self.server.statuses[
                200 if kind in ("sleep", "raw", "reply") else action[1] if kind == "status" else kind
            ] += 1
        if kind == "status":
            code, headers = action[1], dict(action[2] if len(action) > 2 else {})
            # Like OpenAI's 401 body, the message echoes the key: the judge must mask it.
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            error = {
                "error": {
                    "message": f"scripted HTTP {code} for key {key}",
                    "type": "server_error",
                    "code": headers.pop("x-error-code", None),
                }
            }
            return self._send(code, error, headers)
        if kind == "sleep":
            time.sleep(action[1])
            action = ("reply", self.server.reply_text(body))
            kind = "reply"
        if kind == "drop":
            return self._drop()
        if kind == "raw":
            return self._send(200, None, raw=action[1])
        try:
            self.server.pay(body)  # billed once answered, whether or not the client is still there
            self._send(200, self.server.completion(body, action[1]))
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            pass

    def do_GET(self):  # noqa: N802
        if self._record(None) == "drop":
            return self._drop()
        match = re.fullmatch(r"/v1/batches/([\w-]+)", self.path)
        if match:
            return self._poll_batch(match.group(1))
        match = re.fullmatch(r"/v1/files/([\w-]+)/content", self.path)
        if match:
            data = self.server.files[match.group(1)]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        return self._send(404, {"error": {"message": f"no route {self.path}"}})

    def _upload(self, data: bytes):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + data
        )
        fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        content = fields["file"].get_payload(decode=True)
        if self._record({"purpose": fields["purpose"].get_content(), "file": content.decode("utf-8")}) == "drop":
            return self._drop()
        with self.server.lock:
            file_id = f"file-{len(self.server.files) + 1}"
            self.server.files[file_id] = content
        return self._send(
            200,
            {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": 0,
                "filename": "judge_batch.jsonl",
                "purpose": "batch",
                "status": "processed",
            },
        )

    def _create_batch(self, body: dict):
        total = len(self.server.files[body["input_file_id"]].splitlines())
        if self.server.batch_max_requests and total > self.server.batch_max_requests:
            return self._send(
                400,
                {
                    "error": {
                        "message": f"a batch holds at most {self.server.batch_max_requests} requests",
                        "type": "invalid_request_error",
                        "code": "too_many_requests",
                    }
                },
            )
        with self.server.lock:
            batch_id = f"batch_{len(self.server.batches) + 1}"
            batch = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body["endpoint"],
                "errors": None,
                "input_file_id": body["input_file_id"],
                "completion_window": body["completion_window"],
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": 0,
                "request_counts": {"total": total, "completed": 0, "failed": 0},
                "polls": 0,
            }
            self.server.batches[batch_id] = batch
        return self._send(200, {k: v for k, v in batch.items() if k != "polls"})

    def _poll_batch(self, batch_id: str):
        server = self.server
        batch = server.batches[batch_id]
        batch["polls"] += 1
        if batch["status"] not in ("completed", "expired"):
            if batch["polls"] <= server.batch_polls:
                batch["status"] = "in_progress"
                batch["request_counts"]["completed"] = batch["polls"] - 1
            else:
                out, err = server.batch_output(batch)
                for text, name in ((out, "output_file_id"), (err, "error_file_id")):
                    if text:
                        file_id = f"file-{len(server.files) + 1}"
                        server.files[file_id] = text.encode("utf-8")
                        batch[name] = file_id
                total = batch["request_counts"]["total"]
                failed = len(err.splitlines())
                batch.update(
                    status="expired" if batch_id in server.batch_expire else "completed",
                    request_counts={"total": total, "completed": total - failed, "failed": failed},
                )
        return self._send(200, {k: v for k, v in batch.items() if k != "polls"})


def start(**kwargs) -> FakeOpenAI:
    server = FakeOpenAI(**kwargs)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


def stop(server: FakeOpenAI) -> None:
    server.shutdown()
    server.server_close()
