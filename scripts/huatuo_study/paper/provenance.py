"""How a run was made, for the paper: code version, config hash, package versions (as each stage
recorded them in its own output), devices, data and model revisions, dates and the judge's usage; and
the guard that keeps secrets out."""

import datetime
import hashlib
import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from huatuo_study.common import PipelineError, read_json
from huatuo_study.paper.formatting import count, fmt, settings_list
from huatuo_study.versions import PAPER as PAPER_PACKAGES
from huatuo_study.versions import versions

# The paper's own packages, which it records itself; every other version comes from the stage that
# used the package (versions.py), never from this process, which under `--sdm conda` has none of them.
PACKAGES = PAPER_PACKAGES
# The stages whose outputs record versions, by the names the paper gives them, in its order.
STAGES = {
    "train": "adapter training",
    "model": "base model",
    "split": "data split",
    "augment": "augmentation",
    "paper": "paper",
}

# Shorter values ("1", "true") would match ordinary text without being secrets.
MIN_SECRET_CHARS = 8


def git_state(cwd: str | os.PathLike = ".") -> dict:
    """The checked-out commit and whether tracked or unignored files differ from it; both None
    outside a git checkout (or without git)."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def config_hash(config: Mapping) -> str:
    """SHA-256 of the config as canonical JSON (sorted keys), so key order and YAML layout
    do not change it."""
    text = json.dumps(config, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def gather_versions(records: Mapping[str, Mapping[str | None, Mapping]]) -> dict:
    """The package versions the stages recorded in their outputs (`versions`, see versions.py),
    by package. `records` maps each stage to its files' contents by item (a setting's replicate,
    a model; None for a stage of one file), stages in the order the paper lists them. Returns
    {"packages": {package: [{"version", "stages": [{"stage", "items"}]}]}, "not_recorded":
    [{"stage", "items"}]}, packages and versions in order of first appearance; `items` is None
    where a version covers every file of the stage that recorded the package (or, for
    not_recorded, where no file of the stage recorded versions: outputs older than the record)."""
    packages: dict[str, dict[str, dict[str, list]]] = {}  # package -> version -> stage -> items
    used: dict[tuple[str, str], list] = {}  # (package, stage) -> the items that recorded it
    not_recorded = []
    for stage, files in records.items():
        missing = []
        for item, content in files.items():
            found = content.get("versions")
            if not isinstance(found, Mapping):
                missing.append(item)
                continue
            for package, version in found.items():
                packages.setdefault(package, {}).setdefault(str(version), {}).setdefault(stage, []).append(item)
                used.setdefault((package, stage), []).append(item)
        if missing:
            not_recorded.append({"stage": stage, "items": None if len(missing) == len(files) else missing})
    return {
        "packages": {
            package: [
                {
                    "version": version,
                    "stages": [
                        {"stage": stage, "items": None if len(items) == len(used[package, stage]) else items}
                        for stage, items in stages.items()
                    ],
                }
                for version, stages in by_version.items()
            ]
            for package, by_version in packages.items()
        },
        "not_recorded": not_recorded,
    }


def xelatex_version() -> str:
    try:
        proc = subprocess.run(["xelatex", "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return proc.stdout.splitlines()[0] if proc.stdout else "unknown"


def utc_date(path: str | os.PathLike) -> str:
    """When a file was last written, in UTC: the date a stage's result was made."""
    return datetime.datetime.fromtimestamp(Path(path).stat().st_mtime, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def public_url(url: str | None) -> str | None:
    """An endpoint without user info, query or fragment, which is where credentials hide."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" if parts.scheme else host + parts.path


def _total(rows: Sequence[Mapping], key: str) -> int | float | None:
    """Sum of a usage column; None when no row reports it (e.g. cost of an unpriced model)."""
    values = [row.get(key) for row in rows if row.get(key) is not None]
    return sum(values) if values else None


def judge_usage(winrate: Sequence[Mapping]) -> dict:
    return {key: _total(winrate, key) for key in ("judge_calls", "prompt_tokens", "completion_tokens", "cost_usd")}


def run_dates(
    winrate_path: str | os.PathLike, raw_data: str | os.PathLike, train_stats_paths: Iterable[str | os.PathLike]
) -> dict[str, str]:
    return {
        "raw data read": utc_date(raw_data),
        "last adapter trained": max(utc_date(path) for path in train_stats_paths),
        "win rates tabulated": utc_date(winrate_path),
        "paper rendered": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def collect(
    config: Mapping,
    winrate: Sequence[Mapping],
    winrate_path: str | os.PathLike,
    raw_data: str | os.PathLike,
    stats_paths: Mapping[str, Sequence[str | os.PathLike]],
    model_manifests: Iterable[str | os.PathLike],
    cwd: str | os.PathLike = ".",
    split_stats: str | os.PathLike | None = None,
    augment_stats: str | os.PathLike | None = None,
) -> dict:
    """Everything the paper's provenance section shows, as plain values (the template escapes
    them). `stats_paths` maps each trained setting to its replicates' training stats
    (train_stats/<setting>/rep<r>.json); a model's name is the folder of its manifest. Package
    versions are the ones each stage recorded in these files and the data stages' stats (none
    where the run augments nothing), and the paper's own (PACKAGES), read in this process."""
    train_stats = {setting: [read_json(path) for path in paths] for setting, paths in stats_paths.items()}
    manifests = {Path(path).parent.name: read_json(path) for path in model_manifests}
    records = {
        STAGES["train"]: {
            f"{setting}/rep{r}": s for setting, stats in train_stats.items() for r, s in enumerate(stats)
        },
        STAGES["model"]: manifests,
        **({STAGES["split"]: {None: read_json(split_stats)}} if split_stats else {}),
        **({STAGES["augment"]: {None: read_json(augment_stats)}} if augment_stats else {}),
        STAGES["paper"]: {None: {"versions": versions(PACKAGES)}},
    }
    data = config.get("data") or {}
    judge = config.get("judge") or {}
    return {
        "git": git_state(cwd),
        "config_sha256": config_hash(config),
        "versions": gather_versions(records),
        "xelatex": xelatex_version(),
        # Written by the train stage since it records its device; older adapters lack it.
        "devices": {
            setting: "; ".join(sorted({s.get("device") or "not recorded" for s in stats}))
            for setting, stats in train_stats.items()
        },
        "data": {"source": data.get("source"), "revision": data.get("revision"), "raw_sha256": file_sha256(raw_data)},
        "models": {
            name: manifest.get("revision") or manifest.get("source") or "--" for name, manifest in manifests.items()
        },
        "dates": run_dates(winrate_path, raw_data, [p for paths in stats_paths.values() for p in paths]),
        "judge": {
            "backend": judge.get("backend"),
            "model": judge.get("model"),
            "endpoint": public_url(judge.get("base_url")),
            "temperature": judge.get("temperature"),
            **judge_usage(winrate),
        },
    }


def _and_list(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" and {words[-1]}"


def _stage_text(entry: Mapping) -> str:
    """'adapter training', or 'adapter training of setting3/rep1 and setting4/rep0'."""
    return entry["stage"] if entry["items"] is None else f"{entry['stage']} of {_and_list(entry['items'])}"


def version_rows(gathered: Mapping) -> dict:
    """gather_versions' record as table text: each package (Python apart) with each version and
    the stages that ran it, '2.13.0 (adapter training, base model); 2.12.0 (paper)', and the
    stages whose outputs recorded no versions (None when every one did)."""

    def text(versions_of: Sequence[Mapping]) -> str:
        return "; ".join(f"{v['version']} ({', '.join(_stage_text(s) for s in v['stages'])})" for v in versions_of)

    packages = gathered["packages"]
    return {
        "packages": [{"name": name, "version": text(found)} for name, found in packages.items() if name != "python"],
        "python": text(packages["python"]) if "python" in packages else "not recorded",
        "not_recorded": "; ".join(_stage_text(s) for s in gathered["not_recorded"]) or None,
    }


def paper_rows(prov: Mapping, settings: Sequence[Mapping]) -> dict:
    """The provenance's values as the text of the paper's provenance table; `settings` number
    the settings (k) as the paper does."""
    k_of = {s["key"]: s["k"] for s in settings}
    git = prov["git"]
    if git["commit"] is None:
        code = "not a git checkout"
    else:
        state = {True: "uncommitted changes present", False: "clean", None: "state unknown"}[git["dirty"]]
        code = f"{git['commit']} ({state})"
    by_device: dict[str, list[int]] = {}
    for key, device in prov["devices"].items():
        by_device.setdefault(device, []).append(k_of.get(key, key))
    judge = prov["judge"]
    return {
        "code": code,
        "config_sha256": prov["config_sha256"],
        "data": f"{fmt(prov['data']['source'])}, revision {fmt(prov['data']['revision'])}",
        "raw_sha256": prov["data"]["raw_sha256"],
        "models": [{"name": name, "revision": fmt(rev)} for name, rev in prov["models"].items()],
        "devices": [f"{device} ({settings_list(ks)})" for device, ks in by_device.items()],
        **version_rows(prov["versions"]),
        "xelatex": prov["xelatex"],
        "dates": [{"what": what, "when": when} for what, when in prov["dates"].items()],
        "judge": {
            "endpoint": fmt(judge["endpoint"]),
            "temperature": fmt(judge["temperature"]),
            "calls": count(judge["judge_calls"]),
            "prompt_tokens": count(judge["prompt_tokens"]),
            "completion_tokens": count(judge["completion_tokens"]),
            "cost": "not estimated (no prices in the config)"
            if judge["cost_usd"] is None
            else f"{judge['cost_usd']:.2f} USD (estimate)",
        },
    }


def check_no_secrets(
    texts: Mapping[str, str], secret_envs: Iterable[str], environ: Mapping[str, str] = os.environ
) -> None:
    """Stop before anything is written if the value of a variable of `secret_envs` (the run's,
    run_plan.secret_envs) made its way into an output (through a config value, a model's answer or
    a judge's reply); the message names the variable only."""
    for name in secret_envs:
        value = environ.get(name) or ""
        if len(value) < MIN_SECRET_CHARS:
            continue
        for what, text in texts.items():
            if value in text:
                raise PipelineError(
                    f"{what} would contain the value of the environment variable {name} "
                    "(a secret); find where it entered the config or the data and remove it"
                )
