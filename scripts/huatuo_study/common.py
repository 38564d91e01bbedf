"""Helpers shared by the stage programs: JSON Lines I/O, atomic writes, text normalisation,
user-facing errors and the Snakemake glue."""

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("pipeline")


class PipelineError(Exception):
    """An error the user can fix (bad config, bad data, missing key): one clear message."""


class DataError(PipelineError):
    """A malformed input record, located by file, line and field."""

    def __init__(self, path: str | os.PathLike, line: int | None, field: str | None, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, field, problem
        where = self.path + (f", line {line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{problem}")


# A full disk (or quota) is something the user can fix: one line naming the file, not a traceback.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _no_space(path: Path, e: OSError) -> PipelineError:
    return PipelineError(
        f"{path}: no space left on the device to write it ({e.strerror}); "
        "nothing was written there: free some space and rerun"
    )


def _remove_stale_temporaries(path: Path) -> None:
    """A write killed with SIGKILL never ran its cleanup: its temporary sibling (.<name>.<8
    random characters>[suffix], as mkstemp/mkdtemp name them below) goes before the next write of
    the same output. Snakemake runs one job per output at a time, the call cache locks its keys."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}(\..*)?")
    for stale in path.parent.iterdir():
        if pattern.fullmatch(stale.name):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds,
    so a killed or failed stage never leaves a half-written output that looks complete."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in _NO_SPACE:
            raise _no_space(path, e) from None
        raise
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Like atomic_path, for a folder (a saved model or adapter): built aside, then swapped in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in _NO_SPACE:
            raise _no_space(path, e) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record); a line that is not a JSON object is a DataError."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, lineno, None, f"not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(path, lineno, None, "not a JSON object")
            yield lineno, record


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [record for _, record in iter_jsonl(path)]


def read_prompt(path: str | os.PathLike) -> str:
    """A prompt kept as a text file (the judge's): its text without surrounding whitespace."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise DataError(path, None, None, "prompt file not found") from None
    if not text:
        raise DataError(path, None, None, "the prompt file is empty")
    return text


_PUNCT_OR_SPACE = re.compile(r"[\s\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Comparison key for questions: NFKC (full-width to half-width), lower case, no whitespace
    or punctuation. Two questions with the same key count as the same question."""
    return _PUNCT_OR_SPACE.sub("", unicodedata.normalize("NFKC", text)).lower()


def chat_prompt(question: str) -> list[dict]:
    """The single-turn conversation every stage uses, in training and in generation alike."""
    return [{"role": "user", "content": question}]


# Qwen3 is a hybrid thinking model: the study renders every prompt with thinking off.
CHAT_TEMPLATE_KWARGS = {"enable_thinking": False}


def setup_logging(log_path: str | os.PathLike | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True
    )


def run_stage(main, smk) -> None:
    """Snakemake glue: log to the rule's log file, and turn a user error (or a CUDA out of
    memory) into one clear message (in the log and on stderr) and a non-zero exit instead of a
    traceback."""
    setup_logging(smk.log[0] if smk.log else None)
    try:
        main(smk)
    except PipelineError as e:
        log.error("%s: %s", smk.rule, e)
        sys.exit(1)
    except Exception as e:
        from huatuo_study.cuda_oom import cuda_oom_message, is_cuda_oom

        if not is_cuda_oom(e):
            raise
        log.error("%s", cuda_oom_message(smk, e))
        sys.exit(1)
