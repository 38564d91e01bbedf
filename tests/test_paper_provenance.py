"""The paper's provenance: what provenance.py collects from the run's files (the package versions
as each stage recorded them in its own output), its rows in the .tex, and the guard that keeps
secrets out of every output of the paper."""

import datetime
import importlib.metadata
import json
import os
import re

import pytest

import paper_context
import paper_data
from conftest import REPO, fake_snakemake
from huatuo_study.common import PipelineError
from huatuo_study.paper import provenance
from huatuo_study.paper.design import setting_specs
from huatuo_study.run_plan import secret_envs
from paper_data import REPLICATES, TRAINED, config, make_context, winrate_rows  # noqa: F401
from render_tex import render_paper


def stage_versions(**packages):
    """A stage's `versions` record (versions.py's shape): Python first, then its packages."""
    return {"python": "3.11.7", **packages}


def test_provenance_collects_from_the_run_files(tmp_path, config):
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"id": 1}\n', encoding="utf-8")
    winrate = tmp_path / "winrate.json"
    winrate.write_text(json.dumps(winrate_rows()), encoding="utf-8")
    # Each trained setting's replicates (controls train nothing): setting 3's second replicate ran
    # on another card with another torch, setting 4's stats predate devices and versions.
    devices = {
        "setting1": ["NVIDIA H100 80GB HBM3"] * 2,
        "setting2": ["NVIDIA H100 80GB HBM3"] * 2,
        "setting3": ["NVIDIA H100 80GB HBM3", "NVIDIA H200"],
        "setting4": [None, None],
    }
    stats_paths = {}
    for s in TRAINED:
        stats_paths[s] = []
        for r in range(REPLICATES):
            path = tmp_path / "train_stats" / s / f"rep{r}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            recorded = stage_versions(torch="9.1.0" if (s, r) == ("setting3", 1) else "9.0.0", peft="9.2.0")
            path.write_text(
                json.dumps(
                    {"global_step": 3, **({"device": devices[s][r], "versions": recorded} if devices[s][r] else {})}
                )
            )
            stats_paths[s].append(path)
    last = datetime.datetime(2030, 1, 2, 3, 4, tzinfo=datetime.UTC).timestamp()
    os.utime(stats_paths["setting2"][1], (last, last))  # the last adapter trained: a replicate, not the first
    manifest = tmp_path / "models" / "qwen3-4b" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        json.dumps(
            {
                "source": "Qwen/Qwen3-4B",
                "revision": "abc123",
                "versions": stage_versions(torch="9.0.0", tokenizers="9.3.0"),
            }
        )
    )
    split_stats, augment_stats = tmp_path / "split_stats.json", tmp_path / "augment_stats.json"
    split_stats.write_text(json.dumps({"n_raw": 1, "versions": stage_versions()}))
    augment_stats.write_text(json.dumps({"method": "synonym"}))  # written before stages recorded versions
    config["judge"]["base_url"] = "https://user:hunter2@example.org:8443/v1?api-key=xyz"
    prov = provenance.collect(
        config,
        winrate_rows(),
        winrate,
        raw,
        stats_paths,
        [manifest],
        cwd=tmp_path,
        split_stats=split_stats,
        augment_stats=augment_stats,
    )
    assert prov["git"] == {"commit": None, "dirty": None}  # tmp_path is no git checkout
    assert prov["devices"] == {
        "setting1": "NVIDIA H100 80GB HBM3",
        "setting2": "NVIDIA H100 80GB HBM3",
        "setting3": "NVIDIA H100 80GB HBM3; NVIDIA H200",
        "setting4": "not recorded",
    }
    assert prov["dates"]["last adapter trained"] == "2030-01-02 03:04 UTC"
    assert prov["models"] == {"qwen3-4b": "abc123"}
    assert prov["data"]["raw_sha256"] == provenance.file_sha256(raw) and len(prov["data"]["raw_sha256"]) == 64
    assert prov["judge"]["endpoint"] == "https://example.org:8443/v1"
    assert prov["judge"]["judge_calls"] == sum(r["judge_calls"] for r in winrate_rows()) == 480
    assert prov["judge"]["cost_usd"] == pytest.approx(0.60)  # 5 settings at 0.12; setting4's null cost is left out
    assert set(prov["dates"]) == {"raw data read", "last adapter trained", "win rates tabulated", "paper rendered"}
    shuffled = dict(reversed(list(config.items())))
    assert provenance.config_hash(shuffled) == prov["config_sha256"]
    commit = provenance.git_state(REPO)["commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit)
    # The versions as the stages recorded them, by package, never this process's (torch, peft and
    # tokenizers are installed here too); a package no stage recorded is absent.
    found = prov["versions"]["packages"]
    assert list(found) == ["python", "torch", "peft", "tokenizers", *provenance.PACKAGES]
    assert found["torch"] == [
        {
            "version": "9.0.0",
            "stages": [
                {
                    "stage": "adapter training",
                    "items": ["setting1/rep0", "setting1/rep1", "setting2/rep0", "setting2/rep1", "setting3/rep0"],
                },
                {"stage": "base model", "items": None},
            ],
        },
        {"version": "9.1.0", "stages": [{"stage": "adapter training", "items": ["setting3/rep1"]}]},
    ]
    assert found["peft"] == [{"version": "9.2.0", "stages": [{"stage": "adapter training", "items": None}]}]
    assert "trl" not in found and "openai" not in found and "jieba" not in found  # installed here, recorded by none
    for name in provenance.PACKAGES:  # the paper's own, read in its process and labelled as the paper's
        assert found[name] == [
            {"version": importlib.metadata.version(name), "stages": [{"stage": "paper", "items": None}]}
        ]
    assert found["python"][0]["version"] == "3.11.7" and found["python"][-1]["stages"][-1]["stage"] == "paper"
    assert prov["versions"]["not_recorded"] == [
        {"stage": "adapter training", "items": ["setting4/rep0", "setting4/rep1"]},
        {"stage": "augmentation", "items": None},
    ]
    # The paper's rows: devices by the settings' numbers, the controls in none.
    rows = provenance.paper_rows(prov, setting_specs(config))
    assert rows["devices"] == [
        "NVIDIA H100 80GB HBM3 (settings 1 and 2)",
        "NVIDIA H100 80GB HBM3; NVIDIA H200 (setting 3)",
        "not recorded (setting 4)",
    ]
    packages = {p["name"]: p["version"] for p in rows["packages"]}
    assert packages["torch"] == (
        "9.0.0 (adapter training of setting1/rep0, setting1/rep1, setting2/rep0, "
        "setting2/rep1 and setting3/rep0, base model); "
        "9.1.0 (adapter training of setting3/rep1)"
    )
    assert packages["tokenizers"] == "9.3.0 (base model)"
    assert packages["snakemake"] == f"{importlib.metadata.version('snakemake')} (paper)"
    assert "python" not in packages and rows["python"].startswith("3.11.7 (adapter training, base model, data split")
    assert rows["not_recorded"] == "adapter training of setting4/rep0 and setting4/rep1; augmentation"


def test_two_stages_disagreeing_on_a_version_both_show():
    gathered = provenance.gather_versions(
        {
            "adapter training": {
                "setting1/rep0": {"versions": stage_versions(torch="2.13.0", peft="0.21.2")},
                "setting1/rep1": {"versions": stage_versions(torch="2.13.0", peft="0.21.2")},
            },
            "base model": {"qwen3-4b": {"versions": stage_versions(torch="2.12.0", tokenizers="0.23.3")}},
            "data split": {None: {"versions": {"python": "3.12.1"}}},
            "paper": {None: {"versions": stage_versions(pandas="3.1.1")}},
        }
    )
    rows = provenance.version_rows(gathered)
    assert rows["packages"] == [
        {"name": "torch", "version": "2.13.0 (adapter training); 2.12.0 (base model)"},
        {"name": "peft", "version": "0.21.2 (adapter training)"},
        {"name": "tokenizers", "version": "0.23.3 (base model)"},
        {"name": "pandas", "version": "3.1.1 (paper)"},
    ]
    assert rows["python"] == "3.11.7 (adapter training, base model, paper); 3.12.1 (data split)"
    assert rows["not_recorded"] is None


def test_outputs_without_versions_say_not_recorded():
    """Stats and manifests written before the stages recorded versions: the paper says so, and shows
    only what the paper itself recorded."""
    gathered = provenance.gather_versions(
        {
            "adapter training": {"setting1/rep0": {"device": "cpu"}, "setting1/rep1": {"device": "cpu"}},
            "base model": {"qwen3-4b": {"source": "build"}},
            "data split": {None: {"n_raw": 3}},
            "paper": {None: {"versions": stage_versions(pandas="3.1.1")}},
        }
    )
    assert gathered["not_recorded"] == [
        {"stage": stage, "items": None} for stage in ("adapter training", "base model", "data split")
    ]
    rows = provenance.version_rows(gathered)
    assert rows == {
        "packages": [{"name": "pandas", "version": "3.1.1 (paper)"}],
        "python": "3.11.7 (paper)",
        "not_recorded": "adapter training; base model; data split",
    }


def test_provenance_rows_in_the_tex(config):
    tex = render_paper(make_context(config)).split(r"\section{Provenance}")[1].split(r"\begin{table}")[0]
    assert r"\texttt{torch} & 2.13.0 (adapter training, base model) \\" in tex
    assert r"\texttt{peft} & 0.21.2 (adapter training) \\" in tex
    assert r"\texttt{huggingface\_\allowbreak{}hub} & 1.4.0 (base model) \\" in tex
    assert r"\texttt{openai} & 3.51.0 (augmentation) \\" in tex
    for name in provenance.PACKAGES:
        assert f"\\texttt{{{name}}} & 1.0 (paper) \\\\" in tex
    assert r"Python & 3.11.7 (adapter training, base model, data split, augmentation, paper) \\" in tex
    assert "Versions not recorded" not in tex and "jieba" not in tex  # the run's augmentation is llm
    assert "environment of each stage that used the package" in " ".join(tex.split())
    # One replicate on another torch, and old base-model manifests.
    prov = paper_data.fake_provenance()
    prov["versions"] = provenance.gather_versions(
        {
            "adapter training": {
                "setting1/rep0": {"versions": paper_data.TRAIN_VERSIONS},
                "setting1/rep1": {"versions": {**paper_data.TRAIN_VERSIONS, "torch": "2.12.0"}},
            },
            "base model": {"qwen3-4b": {"source": "Qwen/Qwen3-4B"}, "qwen3-14b": {"source": "Qwen/Qwen3-14B"}},
            "paper": {None: {"versions": {"python": "3.11.7", "pandas": "1.0"}}},
        }
    )
    tex = render_paper(make_context(config, provenance=prov)).split(r"\section{Provenance}")[1]
    assert (
        r"\texttt{torch} & 2.13.0 (adapter training of setting1/\allowbreak{}rep0); "
        r"2.12.0 (adapter training of setting1/\allowbreak{}rep1) \\"
    ) in tex
    assert r"Versions not recorded & base model \\" in tex
    assert r"\texttt{tokenizers}" not in tex  # recorded by no stage that wrote versions


def test_context_stage_gathers_the_stages_versions(tmp_path, config):
    """Rule paper_context on run-like files: the training stats and manifests record versions, the
    data stages' stats (SPLIT_STATS, AUGMENT_STATS) predate the record."""
    smk = fake_snakemake(
        input=paper_data.write_run_files(tmp_path / "in", config),
        output={"context": str(tmp_path / "context.json")},
        params=paper_data.context_params(config),
    )
    paper_context.main(smk)
    rows = json.loads((tmp_path / "context.json").read_text(encoding="utf-8"))["provenance"]
    packages = {p["name"]: p["version"] for p in rows["packages"]}
    assert packages["torch"] == "2.13.0 (adapter training, base model)"  # not this process's torch
    assert packages["bitsandbytes"] == "0.50.2 (adapter training)"
    assert packages["jinja2"] == f"{importlib.metadata.version('jinja2')} (paper)"
    assert [name for name, text in packages.items() if text.endswith("(paper)")] == list(provenance.PACKAGES)
    assert "openai" not in packages  # installed here, but no stage recorded it
    assert rows["not_recorded"] == "data split; augmentation"


def test_a_secret_in_an_output_stops_the_stage(config):
    secret = "sk-test-0123456789abcdef"
    environ = {"OPENAI_API_KEY": secret, "HF_TOKEN": "short"}
    provenance.check_no_secrets({"paper.tex": "no secret here: short"}, secret_envs(config), environ)
    with pytest.raises(
        PipelineError, match="paper.tex would contain the value of the environment variable OPENAI_API_KEY"
    ) as e:
        provenance.check_no_secrets({"paper.tex": f"title {secret}"}, secret_envs(config), environ)
    assert secret not in str(e.value)
    config["judge"]["api_key_env"] = "MY_JUDGE_KEY"
    with pytest.raises(PipelineError, match="MY_JUDGE_KEY"):
        provenance.check_no_secrets({"table.html": secret}, secret_envs(config), {"MY_JUDGE_KEY": secret})
    assert config["augmentation"]["llm"]["api_key_env"] == "DEEPSEEK_API_KEY"  # the augmentation's key too
    with pytest.raises(
        PipelineError, match="context.json would contain the value of the environment variable DEEPSEEK_API_KEY"
    ):
        provenance.check_no_secrets({"context.json": secret}, secret_envs(config), {"DEEPSEEK_API_KEY": secret})
