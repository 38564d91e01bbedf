"""The per-rule software environments (envs/*.yaml, for `--sdm conda`): conda channels cannot be
reached here, so what can be checked without them is: each file parses as a conda environment,
every rule of the workflow (study and demo config) names one that exists, and each environment's
pins are the project's pins (requirements.txt, and the Python version it is written for)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))
CONFIGS = {"study": None, "demo": "config/demo.yaml"}
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)")  # name[extras]==version

# Loads the workflow through Snakemake's API in a child process (it changes directory) and prints
# each rule's conda env, as Snakemake resolves it, relative to the file that defines the rule.
RULES_PROBE = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings

configfiles = [Path(sys.argv[1])] if len(sys.argv) > 1 else []
with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    workflow = api.workflow(snakefile=Path("Snakefile"), workdir=Path.cwd(),
                            resource_settings=ResourceSettings(),
                            config_settings=ConfigSettings(configfiles=configfiles))
    print(json.dumps({rule.name: {"conda": str(rule.conda_env) if rule.conda_env else None,
                                  "snakefile": str(rule.snakefile), "norun": rule.norun}
                      for rule in workflow._workflow.rules}))
"""


def normalize(name: str) -> str:
    """PEP 503 names: Rouge_Score, rouge.score and rouge-score are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN.fullmatch(line)
        assert m, f"requirements.txt: '{line}' is not pinned as name==version"
        pins[normalize(m[1])] = m[2]
    return pins


def project_python() -> str:
    """The Python version requirements.txt is written for ('Python 3.11' in its header)."""
    m = re.search(r"Python (\d+\.\d+)", (REPO / "requirements.txt").read_text(encoding="utf-8"))
    return m[1] if m else f"{sys.version_info.major}.{sys.version_info.minor}"


def load_env(path: Path) -> dict:
    env = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(env, dict), f"{path.name}: not a YAML mapping"
    return env


def split_dependencies(env: dict) -> tuple[list[str], list[str]]:
    """(conda specs, pip specs) of an environment."""
    conda, pip = [], []
    for dep in env.get("dependencies") or []:
        if isinstance(dep, str):
            conda.append(dep)
        elif isinstance(dep, dict) and set(dep) == {"pip"}:
            pip.extend(dep["pip"])
        else:
            raise AssertionError(f"unexpected dependency entry {dep!r}")
    return conda, pip


@pytest.fixture(scope="module", params=list(CONFIGS))
def workflow_rules(request) -> dict:
    args = [CONFIGS[request.param]] if CONFIGS[request.param] else []
    proc = subprocess.run(
        [sys.executable, "-c", RULES_PROBE, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_there_is_one_env_per_kind_of_rule():
    assert {p.stem for p in ENVS} >= {"data", "train", "judge", "paper"}


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_file_is_a_conda_environment(path):
    env = load_env(path)
    assert set(env) <= {"name", "channels", "dependencies", "variables"}, f"{path.name}: unknown keys {set(env)}"
    assert env.get("channels"), f"{path.name}: no channels"
    assert isinstance(env.get("dependencies"), list) and env["dependencies"], f"{path.name}: no dependencies"
    conda, pip = split_dependencies(env)
    assert pip, f"{path.name}: no pip packages"
    assert any(re.fullmatch(r"pip([=<>!].*)?", spec.replace(" ", "")) for spec in conda), (
        f"{path.name}: pip packages need `pip` among the conda dependencies"
    )


@pytest.mark.dag  # loads the workflow through Snakemake's API in a subprocess (workflow_rules)
def test_every_rule_names_an_env_that_exists(workflow_rules):
    missing, absent = [], []
    for name, rule in workflow_rules.items():
        if rule["norun"]:  # e.g. `all`: nothing runs, nothing to install
            continue
        if not rule["conda"]:
            missing.append(name)
            continue
        env = (Path(rule["snakefile"]).parent / rule["conda"]).resolve()
        if not env.is_file():
            absent.append(f"{name}: {rule['conda']} ({env})")
        else:
            assert env.parent == REPO / "envs", f"{name}: its env {env} is outside envs/"
    assert not missing, f"rules without a conda: env: {missing}"
    assert not absent, f"rules whose conda: env does not exist: {absent}"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_pins_are_the_projects_pins(path):
    pins, python = requirement_pins(), project_python()
    conda, pip = split_dependencies(load_env(path))
    problems = []
    for spec in pip:
        m = PIN.fullmatch(spec.strip())
        if not m:
            problems.append(f"pip '{spec}' is not pinned as name==version")
        elif normalize(m[1]) not in pins:
            problems.append(f"pip '{spec}' is not in requirements.txt")
        elif pins[normalize(m[1])] != m[2]:
            problems.append(f"pip '{spec}' but requirements.txt pins {m[1]}=={pins[normalize(m[1])]}")
    for spec in conda:
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:==?\s*([^\s=]+))?.*", spec.strip())
        name, version = normalize(m[1]), m[2]
        if name == "python":
            if version is None or not (version == python or version.startswith(python + ".")):
                problems.append(f"conda '{spec}' but the project is Python {python}")
        elif name in pins and version != pins[name]:
            problems.append(f"conda '{spec}' but requirements.txt pins {m[1]}=={pins[name]}")
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)
