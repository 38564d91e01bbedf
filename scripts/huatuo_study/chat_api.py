"""Every paid call of the pipeline (the judge, the LLM augmentation, an OpenAI baseline) goes
through one OpenAI-compatible client: chat completions one by one (with retries) or all at once
through the Batch API, every answer cached on disk so that no call is ever paid for twice. Each
caller hands it its config section (`judge`, `augmentation.llm`, `baseline`), whose keys are
described by `$defs/chat_api` in config/schema.yaml.

Retries (tenacity; the client's own are off, so that one policy governs every request): HTTP
408, 409, 429 and 5xx, timeouts, dropped connections and 200 responses that are not a chat
completion are retried up to `max_retries` times, waiting what the server's
`retry-after-ms` or `Retry-After` header asks, else exponential backoff with jitter starting at
`backoff_base` seconds. A 429 that says how long to wait is the server's rate limit pacing the
run, not a failure: it does not count against `max_retries` (up to MAX_RATE_LIMITED_S of waiting
for one call), and it holds back every worker of the client until then, each resuming at a random
point of a short spread, so that the pool neither keeps knocking on a full window nor returns all
at once. A model the server does not serve (404), a key it rejects (401) or that lacks access
(403), an exhausted quota (429 `insufficient_quota`) and a Retry-After beyond MAX_RETRY_AFTER_S
stop at once with one line naming the config key to change; calls already queued are not sent
and retries already waiting are dropped (the finished calls stay cached: rerun later).

Cache: one JSON file per call, `<cache>/<k[:2]>/<k>.json`, where k is the SHA-256 of the base URL,
the request body (model, messages, temperature, max_tokens) and the attempt number (an unusable
reply, e.g. one without a label, is asked once more: a second attempt at the same request, cached
apart). Each
entry is written atomically as soon as its reply arrives and holds the reply and its token usage,
nothing else: not the key, not the base URL. An entry that cannot be read (truncated, not JSON) is
named in the log, deleted and asked again, and counted (`Cache.discarded`). Runs may share one
cache folder at once: a call is made under an exclusive lock on its key (`<cache>/locks/`, an OS
file lock that dies with its process), and a run that waited for the lock finds the other's reply
in the cache instead of paying for the same call again.

Batch (`batch: true`, the judge's): the uncached calls go into JSONL files, uploaded with the Files
API and run as batches (24h window, half price), as few as the provider's limits on one batch
allow (MAX_BATCH_REQUESTS, MAX_BATCH_BYTES), all submitted before any is waited for. Each one's
state (input file id, batch id, the cache keys it answers) is saved under `<cache>/batches/` as soon as each id exists, so a killed run
polls the same batch again instead of paying for a second one; the replies land in the cache.

Memory: while calls are made, at most a few times `concurrency` of them are queued and no reply
is kept but in the cache, so that a run of any size holds the same memory while it pays; the
replies are read back from the cache when every call is answered.
`concurrency` caps the calls in flight: to keep up with a provider's limit it must cover the
requests a second it allows times a reply's latency.
"""

import email.utils
import hashlib
import json
import os
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path

import openai
from filelock import FileLock
from tenacity import Retrying, retry_if_exception, wait_exponential_jitter
from tqdm import tqdm

from huatuo_study.common import PipelineError, log, read_json, write_json

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
MAX_BACKOFF_S = 60.0
# A longer wait is a spent quota rather than a hiccup: stop, and let the user rerun later.
MAX_RETRY_AFTER_S = 300.0
# Rate-limit waits of one call beyond this: the server is not pacing this run but refusing it.
MAX_RATE_LIMITED_S = 1800.0
# Workers held back by a 429 resume spread over this fraction of the wait (at most 1 s).
RESUME_SPREAD = 0.1
BATCH_ENDPOINT = "/v1/chat/completions"
BATCH_DONE = ("completed", "failed", "expired", "cancelled")
# The provider's limits on one batch (OpenAI's: 50,000 requests, an input file of 200 MB).
MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_BYTES = 200 * 2**20


@dataclass(frozen=True)
class Reply:
    content: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class MalformedReply(Exception):
    """A 200 response that is not a chat completion (cut-off JSON from a proxy, say)."""


def reply_of(body: object) -> Reply:
    """The text and token usage of a chat-completions response body; empty content is ''."""
    try:
        content = body["choices"][0]["message"].get("content") or ""
        usage = body.get("usage") or {}
        if not isinstance(content, str):
            raise TypeError
        return Reply(content, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise MalformedReply("the response is not a chat completion") from None


def complete(client: openai.OpenAI, body: dict) -> Reply:
    # The raw text, parsed here: the client would hand a non-completion back as if it were one.
    raw = client.chat.completions.with_raw_response.create(**body)
    try:
        data = json.loads(raw.text)
    except json.JSONDecodeError:
        raise MalformedReply("the response is not valid JSON") from None
    return reply_of(data)


def request_body(cfg: dict, messages: list[dict], max_tokens: int | None = None) -> dict:
    """The request: the section's model and temperature; max_tokens given per call, else the section's."""
    body = {"model": cfg["model"], "messages": messages, "temperature": float(cfg["temperature"])}
    max_tokens = max_tokens if max_tokens is not None else cfg.get("max_tokens")
    if max_tokens is not None:
        body["max_tokens"] = int(max_tokens)
    return body


def cost_usd(prompt_tokens: int, completion_tokens: int, prices: dict | None) -> float | None:
    """Estimated USD from `price_per_million: {input, output}`; None without prices."""
    if not prices:
        return None
    return (prompt_tokens * prices["input"] + completion_tokens * prices["output"]) / 1e6


def api_key_from_env(cfg: dict, section: str = "judge") -> str:
    env = cfg.get("api_key_env") or DEFAULT_API_KEY_ENV
    key = os.environ.get(env)
    if not key:
        raise PipelineError(f"{section}.api_key_env: environment variable {env} is not set")
    return key


# --------------------------------------------------------------------------- retries


def retry_after_s(exc: BaseException | None) -> float | None:
    """Seconds the server asked to wait: retry-after-ms, else Retry-After (seconds or HTTP date)."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return max(0.0, float(headers[name]) / scale)
        except (KeyError, ValueError):
            pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(headers["retry-after"]).timestamp() - time.time())
    except (KeyError, TypeError, ValueError):
        return None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APIConnectionError, MalformedReply)):  # timeouts are connection errors
        return True
    if not isinstance(exc, openai.APIStatusError) or exc.code == "insufficient_quota":
        return False
    if (retry_after_s(exc) or 0.0) > MAX_RETRY_AFTER_S:
        return False
    return exc.status_code in (408, 409, 429) or exc.status_code >= 500


def is_rate_limited(exc: BaseException) -> bool:
    """A 429 that says when to come back: the server pacing the run, which waiting cures."""
    return (
        isinstance(exc, openai.RateLimitError)
        and exc.code != "insufficient_quota"
        and retry_after_s(exc) is not None
        and is_transient(exc)
    )


def describe(exc: BaseException, api_key: str) -> str:
    """One line about a failed request; error bodies may echo the key, so it is masked."""
    if isinstance(exc, openai.APIStatusError):
        detail = exc.body.get("message") if isinstance(exc.body, dict) else None
        text = f"HTTP {exc.status_code}: {detail or exc.message}"
    elif isinstance(exc, openai.APITimeoutError):
        text = "the request timed out"
    else:
        text = str(exc)
    return text.replace(api_key, "***") if api_key else text


class Stopped(Exception):
    """Another call of the same run failed for good: this one is not sent (or retried)."""


class Pace:
    """Shared by the workers of one client: a rate-limit 429 holds them all back until the
    server's window has room again, and a failure for good stops them."""

    def __init__(self):
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.resume_at = 0.0
        self.spread = 0.0

    def hold(self, seconds: float) -> None:
        with self.lock:
            if time.monotonic() + seconds > self.resume_at:
                self.resume_at = time.monotonic() + seconds
                self.spread = min(1.0, RESUME_SPREAD * seconds)

    def sleep(self, seconds: float) -> None:
        """Sleep, and then until the hold is over (plus this worker's random share of the spread)."""
        deadline = time.monotonic() + seconds
        while True:
            with self.lock:
                held = self.resume_at > time.monotonic()
                until = max(deadline, self.resume_at + random.uniform(0.0, self.spread) if held else 0.0)
            left = until - time.monotonic()
            if left <= 0:
                break
            if self.stop.wait(left):
                raise Stopped
        if self.stop.is_set():
            raise Stopped


def retrying(cfg: dict, api_key: str, desc: str, pace: Pace) -> Retrying:
    base = float(cfg["backoff_base"])
    backoff = wait_exponential_jitter(multiplier=base, max=MAX_BACKOFF_S, jitter=base)
    failures, rate_limited_s = 0, 0.0

    def wait(state) -> float:
        exc = state.outcome.exception()
        asked = retry_after_s(exc)
        if is_rate_limited(exc):
            pace.hold(asked)
        return backoff(state) if asked is None else asked

    def stop(state) -> bool:
        nonlocal failures, rate_limited_s
        if is_rate_limited(state.outcome.exception()):
            rate_limited_s += state.upcoming_sleep
            return rate_limited_s > MAX_RATE_LIMITED_S
        failures += 1
        return failures > int(cfg["max_retries"])

    def before_sleep(state) -> None:
        exc = state.outcome.exception()
        log.warning(
            "%s: %s; retry %d in %.2f s", desc, describe(exc, api_key), state.attempt_number, state.next_action.sleep
        )

    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait,
        stop=stop,
        sleep=pace.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


# --------------------------------------------------------------------------- cache


class Cache:
    """One JSON file per call, named by the hash of everything that determines its reply."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.discarded = 0  # unreadable entries deleted (and so asked again) by this process

    @staticmethod
    def key(base_url: str, body: dict, attempt: int) -> str:
        blob = json.dumps({"base_url": base_url, "body": body, "attempt": attempt}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def lock(self, key: str) -> FileLock:
        """Held while one process asks for this key, so that runs sharing the cache pay once."""
        folder = self.folder / "locks"
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(folder / f"{key}.lock")

    def get(self, key: str) -> Reply | None:
        path = self.path(key)
        try:
            return Reply(**read_json(path)["reply"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):  # truncated or not JSON (a disk fault, a killed writer)
            log.warning("call cache: unreadable entry %s deleted; the call will be asked again", path)
            path.unlink(missing_ok=True)
            self.discarded += 1
            return None

    def put(self, key: str, reply: Reply) -> None:
        write_json(self.path(key), {"reply": asdict(reply)})


# --------------------------------------------------------------------------- the client


class ChatClient:
    """Asks an OpenAI-compatible server, through the cache, one by one or as a batch. `cfg` is a
    config section shaped like `$defs/chat_api` (`section` names it in error messages)."""

    def __init__(self, cfg: dict, cache_dir: str | os.PathLike, desc: str = "judge", section: str = "judge"):
        self.cfg, self.desc, self.section = cfg, desc, section
        self.api_key = api_key_from_env(cfg, section)  # before any call
        self.client = openai.OpenAI(
            base_url=cfg.get("base_url") or None,
            api_key=self.api_key,
            max_retries=0,
            timeout=float(cfg["timeout"]),
        )
        self.base_url = str(self.client.base_url).rstrip("/")
        self.cache = Cache(cache_dir)

    def ask(
        self, conversations: list[list[dict]], attempt: int = 0, max_tokens: list[int] | None = None
    ) -> list[Reply]:
        """One reply per conversation, in order; only what the cache lacks is asked. `max_tokens`
        gives each conversation its own limit (else the section's)."""
        limits = max_tokens or [None] * len(conversations)
        bodies = [request_body(self.cfg, messages, limit) for messages, limit in zip(conversations, limits)]
        keys = [self.cache.key(self.base_url, body, attempt) for body in bodies]
        todo = {key: body for key, body in zip(keys, bodies) if self.cache.get(key) is None}
        log.info(
            "%s: %d calls (attempt %d): %d cached, %d to ask (%d unreadable cache entries discarded so far)",
            self.desc,
            len(keys),
            attempt + 1,
            len(set(keys)) - len(todo),
            len(todo),
            self.cache.discarded,
        )
        if todo:
            self._batch(todo) if self.cfg.get("batch") else self._one_by_one(todo)
        replies = [self.cache.get(key) for key in keys]
        if None in replies:  # deleted or torn by something else while this run went on
            raise PipelineError(f"{self.desc}: the call cache {self.cache.folder} lost entries during the run; rerun")
        return replies

    def _refusal(self, e: openai.APIStatusError) -> str | None:
        """What to change in the config when the server refuses the run itself, which no retry cures."""
        model, env = self.cfg["model"], self.cfg.get("api_key_env") or DEFAULT_API_KEY_ENV
        if isinstance(e, openai.AuthenticationError):
            return f"the API rejected the key (HTTP 401); check {self.section}.api_key_env (now {env})"
        if isinstance(e, openai.PermissionDeniedError):
            return (
                f"the key in {env} has no access to model {model!r} ({describe(e, self.api_key)}); "
                f"set {self.section}.api_key_env to a key with access, or {self.section}.model to a model it may use"
            )
        if isinstance(e, openai.NotFoundError):
            if e.code == "model_not_found":
                return (
                    f"the server does not serve model {model!r} ({describe(e, self.api_key)}); "
                    f"set {self.section}.model to a model it serves"
                )
            return (
                f"{describe(e, self.api_key)} from {self.base_url}; check {self.section}.base_url "
                f"and {self.section}.model"
            )
        if e.code == "insufficient_quota":
            return (
                f"the account of the key in {env} has no quota left ({describe(e, self.api_key)}), which "
                f"waiting does not cure: add credit, or set {self.section}.api_key_env to a key with quota"
            )
        return None

    def _call(self, fn, *args, pace: Pace | None = None, **kwargs):
        """fn with retries; an error that remains becomes one line that does not hold the key."""
        try:
            return retrying(self.cfg, self.api_key, self.desc, pace or Pace())(fn, *args, **kwargs)
        except openai.APIStatusError as e:
            refusal = self._refusal(e)
            if refusal is None:
                raise PipelineError(f"{self.desc}: request failed with {self._failure(e)}") from None
            raise PipelineError(f"{self.desc}: {refusal}") from None
        except (openai.APIError, MalformedReply) as e:
            raise PipelineError(f"{self.desc}: request failed with {self._failure(e)}") from None

    def _failure(self, e: BaseException) -> str:
        wait = retry_after_s(e)
        if wait is not None and wait > MAX_RETRY_AFTER_S:
            hint = f" (the server asks to wait {wait:.0f} s: rerun then; the calls made so far are cached)"
        elif is_transient(e):
            hint = f" (still failing after {self.cfg.get('max_retries', 5)} retries)"
        else:
            hint = ""
        return f"{describe(e, self.api_key)}{hint}"

    def _one_by_one(self, todo: dict[str, dict]) -> None:
        """Ask every call, caching each reply as it arrives. Calls are queued a few at a time and
        their replies not kept here, so that memory does not grow with the number of calls."""
        pace = Pace()  # once a call has failed for good, queued calls and waiting retries spend nothing

        def one(key: str) -> None:
            with self.cache.lock(key):
                if self.cache.get(key) is not None:  # another run sharing the cache asked meanwhile
                    return
                try:
                    pace.sleep(0.0)  # not into a window the server just said is full
                    reply = self._call(complete, self.client, todo[key], pace=pace)
                except Stopped:
                    return
                except Exception:
                    pace.stop.set()
                    raise
                self.cache.put(key, reply)  # at once, so that a killed run keeps what it paid for

        concurrency = int(self.cfg["concurrency"])
        pool = ThreadPoolExecutor(max_workers=concurrency)
        pending = set()
        try:
            with tqdm(total=len(todo), desc=self.desc, unit="call") as bar:
                for key in todo:
                    if len(pending) >= 2 * concurrency:  # keep the pool busy, not the whole run queued
                        pending = self._finish(pending, bar)
                    pending.add(pool.submit(one, key))
                while pending:
                    pending = self._finish(pending, bar)
        finally:
            pace.stop.set()
            pool.shutdown(cancel_futures=True)

    @staticmethod
    def _finish(pending: set, bar: tqdm) -> set:
        """Wait for one or more calls to end; return the others. A call that failed raises here."""
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()
        bar.update(len(done))
        return pending

    # ----------------------------------------------------------------------- batch

    def _batch(self, todo: dict[str, dict]) -> None:
        folder = self.cache.folder / "batches"
        resumed = [
            (path, state)
            for path in sorted(folder.glob("*.json"))
            if todo.keys() & set((state := read_json(path))["keys"])
        ]
        for path, state in resumed:
            log.info("%s: resuming batch %s (%s)", self.desc, state["batch_id"] or "not yet created", path)
        covered = {key for _, state in resumed for key in state["keys"]}
        missing = {key: body for key, body in todo.items() if key not in covered and self.cache.get(key) is None}
        fresh = [self._upload_batch(folder, part) for part in self._batch_parts(missing)]
        # every batch submitted before any is waited for: the provider runs them side by side
        running = [(path, self._create_batch(path, state)) for path, state in resumed + fresh]
        problems = [problem for path, state in running if (problem := self._finish_batch(path, state))]
        if problems:
            raise PipelineError(
                f"{self.desc}: {'; '.join(problems)}; rerun to submit them again".replace(self.api_key, "***")
            )

    @staticmethod
    def _batch_parts(todo: dict[str, dict]) -> list[dict[str, dict]]:
        """The calls split into batches within the provider's limits on one batch."""
        parts, part, size = [], {}, 0
        for key, body in todo.items():
            line = (
                len(
                    json.dumps(
                        {"custom_id": key, "method": "POST", "url": BATCH_ENDPOINT, "body": body}, ensure_ascii=False
                    ).encode("utf-8")
                )
                + 1
            )
            if part and (len(part) == MAX_BATCH_REQUESTS or size + line > MAX_BATCH_BYTES):
                parts, part, size = parts + [part], {}, 0
            part[key], size = body, size + line
        return parts + [part] if part else parts

    def _upload_batch(self, folder: Path, todo: dict[str, dict]) -> tuple[Path, dict]:
        lines = [
            json.dumps({"custom_id": key, "method": "POST", "url": BATCH_ENDPOINT, "body": body}, ensure_ascii=False)
            for key, body in todo.items()
        ]
        uploaded = self._call(
            self.client.files.create,
            file=("batch.jsonl", ("\n".join(lines) + "\n").encode("utf-8"), "application/jsonl"),
            purpose="batch",
        )
        path = folder / f"{hashlib.sha256(''.join(sorted(todo)).encode()).hexdigest()[:16]}.json"
        state = {"keys": sorted(todo), "input_file_id": uploaded.id, "batch_id": None}
        write_json(path, state)
        return path, state

    def _create_batch(self, path: Path, state: dict) -> dict:
        if state["batch_id"] is None:
            batch = self._call(
                self.client.batches.create,
                input_file_id=state["input_file_id"],
                endpoint=BATCH_ENDPOINT,
                completion_window="24h",
            )
            state = {**state, "batch_id": batch.id}
            write_json(path, state)
            log.info(
                "%s: submitted batch %s with %d requests (state in %s)", self.desc, batch.id, len(state["keys"]), path
            )
        return state

    def _finish_batch(self, path: Path, state: dict) -> str | None:
        """Wait for the batch and cache its answers; what it left unanswered, in words, or None."""
        batch = self._poll(state["batch_id"], len(state["keys"]))
        answered, errors = self._collect(batch, set(state["keys"]))
        path.unlink()  # the batch is over: what it did not answer goes into a new one next run
        unanswered = len(state["keys"]) - len(answered)
        if not unanswered:
            return None
        first = f" (first error: {errors[0]})" if errors else ""
        return f"batch {batch.id} ended '{batch.status}' with {unanswered} of {len(state['keys'])} requests unanswered{first}"

    def _poll(self, batch_id: str, total: int):
        interval = float(self.cfg["batch_poll_interval"])
        status = None
        with tqdm(total=total, desc=f"{self.desc} (batch)", unit="call") as bar:
            while True:
                batch = self._call(self.client.batches.retrieve, batch_id)
                if batch.status != status:
                    status = batch.status
                    log.info("%s: batch %s is %s", self.desc, batch_id, status)
                counts = batch.request_counts
                if counts is not None:
                    bar.update(counts.completed + counts.failed - bar.n)
                if status in BATCH_DONE:
                    return batch
                time.sleep(interval)

    def _collect(self, batch, keys: set[str]) -> tuple[set[str], list[str]]:
        """Cache the batch's answers to `keys`; return the keys answered and the errors seen."""
        answered = set()
        errors = [e.message for e in batch.errors.data or []] if batch.errors else []
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for line in self._call(self.client.files.content, file_id).text.splitlines():
                try:
                    row = json.loads(line)
                    key, response = row["custom_id"], row.get("response") or {}
                except (ValueError, KeyError, TypeError):
                    continue
                if key not in keys:  # custom_id names a cache file: take only our own
                    continue
                if response.get("status_code") != 200:
                    errors.append(json.dumps(row.get("error") or response.get("body"), ensure_ascii=False))
                    continue
                try:
                    reply = reply_of(response.get("body"))
                except MalformedReply as e:
                    errors.append(str(e))
                    continue
                self.cache.put(key, reply)
                answered.add(key)
        return answered, errors
