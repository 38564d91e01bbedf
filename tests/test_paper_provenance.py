"""The paper's provenance: what provenance.py collects from the run's files, and the guard that
keeps secrets out of every output of the paper."""

import datetime
import json
import os
import re

import pytest

import provenance
from common import PipelineError
from conftest import REPO
from paper_data import REPLICATES, TRAINED, config, winrate_rows  # noqa: F401
from paper_design import setting_specs


def test_provenance_collects_from_the_run_files(tmp_path, config):
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"id": 1}\n', encoding="utf-8")
    winrate = tmp_path / "winrate.json"
    winrate.write_text(json.dumps(winrate_rows()), encoding="utf-8")
    # Each trained setting's replicates (controls train nothing): setting 3's second replicate ran
    # on another card, setting 4 recorded no device.
    devices = {"setting1": ["NVIDIA H100 80GB HBM3"] * 2, "setting2": ["NVIDIA H100 80GB HBM3"] * 2,
               "setting3": ["NVIDIA H100 80GB HBM3", "NVIDIA H200"], "setting4": [None, None]}
    stats_paths = {}
    for s in TRAINED:
        stats_paths[s] = []
        for r in range(REPLICATES):
            path = tmp_path / "train_stats" / s / f"rep{r}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"global_step": 3, **({"device": devices[s][r]} if devices[s][r] else {})}))
            stats_paths[s].append(path)
    last = datetime.datetime(2030, 1, 2, 3, 4, tzinfo=datetime.UTC).timestamp()
    os.utime(stats_paths["setting2"][1], (last, last))  # the last adapter trained: a replicate, not the first
    manifest = tmp_path / "models" / "qwen3-4b" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"source": "Qwen/Qwen3-4B", "revision": "abc123"}))
    config["judge"]["base_url"] = "https://user:hunter2@example.org:8443/v1?api-key=xyz"
    prov = provenance.collect(config, winrate_rows(), winrate, raw, stats_paths, [manifest], cwd=tmp_path)
    assert prov["git"] == {"commit": None, "dirty": None}  # tmp_path is no git checkout
    assert prov["devices"] == {"setting1": "NVIDIA H100 80GB HBM3", "setting2": "NVIDIA H100 80GB HBM3",
                               "setting3": "NVIDIA H100 80GB HBM3; NVIDIA H200", "setting4": "not recorded"}
    assert prov["dates"]["last adapter trained"] == "2030-01-02 03:04 UTC"
    assert prov["models"] == {"qwen3-4b": "abc123"}
    assert prov["data"]["raw_sha256"] == provenance.file_sha256(raw) and len(prov["data"]["raw_sha256"]) == 64
    assert prov["judge"]["endpoint"] == "https://example.org:8443/v1"
    assert prov["judge"]["judge_calls"] == sum(r["judge_calls"] for r in winrate_rows()) == 480
    assert prov["judge"]["cost_usd"] == pytest.approx(0.60)  # 5 settings at 0.12; setting4's null cost is left out
    assert set(prov["packages"]) == set(provenance.PACKAGES) and prov["packages"]["snakemake"] != "not installed"
    assert set(prov["dates"]) == {"raw data read", "last adapter trained", "win rates tabulated", "paper rendered"}
    shuffled = dict(reversed(list(config.items())))
    assert provenance.config_hash(shuffled) == prov["config_sha256"]
    commit = provenance.git_state(REPO)["commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    # The paper's rows: devices by the settings' numbers, the controls in none.
    rows = provenance.paper_rows(prov, setting_specs(config))
    assert rows["devices"] == ["NVIDIA H100 80GB HBM3 (settings 1 and 2)",
                               "NVIDIA H100 80GB HBM3; NVIDIA H200 (setting 3)", "not recorded (setting 4)"]


def test_a_secret_in_an_output_stops_the_stage(config):
    secret = "sk-test-0123456789abcdef"
    environ = {"OPENAI_API_KEY": secret, "HF_TOKEN": "short"}
    provenance.check_no_secrets({"paper.tex": "no secret here: short"}, config, environ)
    with pytest.raises(PipelineError, match="paper.tex would contain the value of the environment variable OPENAI_API_KEY") as e:
        provenance.check_no_secrets({"paper.tex": f"title {secret}"}, config, environ)
    assert secret not in str(e.value)
    config["judge"]["api_key_env"] = "MY_JUDGE_KEY"
    with pytest.raises(PipelineError, match="MY_JUDGE_KEY"):
        provenance.check_no_secrets({"table.html": secret}, config, {"MY_JUDGE_KEY": secret})
    assert config["augmentation"]["llm"]["api_key_env"] == "DEEPSEEK_API_KEY"  # the augmentation's key too
    with pytest.raises(PipelineError, match="context.json would contain the value of the environment variable "
                                            "DEEPSEEK_API_KEY"):
        provenance.check_no_secrets({"context.json": secret}, config, {"DEEPSEEK_API_KEY": secret})


