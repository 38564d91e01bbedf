"""The newcomer's two commands: `make demo` and `make test` run what the README and CI say, and
CI (.ci/run) runs exactly the Makefile's targets, lint first and the fast tier before the DAG tier.
Read with `make -n` (prints the commands, runs none)."""

import re
import shutil
import subprocess

import pytest

from conftest import REPO
from huatuo_study.paper.figure_style import APT_PACKAGES

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def planned(*targets: str, **variables: str) -> list[str]:
    """The command lines `make -n` would run, without the recipes' own echo-suppressing `@`."""
    args = ["make", "-n", "-C", str(REPO), *targets, *(f"{k}={v}" for k, v in variables.items())]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return [line for line in proc.stdout.splitlines() if line and not line.startswith("make")]


def test_demo_installs_then_runs_the_readmes_demo_command():
    lines = planned("demo")
    assert lines[-1] == "snakemake --cores 2 --configfile config/demo.yaml"
    assert "python -m pip install -r requirements.txt" in lines
    assert "python -m pip install --no-deps dashscope==2.0.2" in lines
    assert lines.index("python -m pip install -r requirements.txt") < len(lines) - 1


def test_install_asks_apt_for_every_package_the_paper_needs():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    packages = re.search(r"^APT_PACKAGES := (.+)$", makefile, re.M)[1].split()
    # figure_style.APT_PACKAGES is what the paper's error message tells a user to install;
    # pdftotext (poppler-utils) reads the PDF back in the tests, Chromium drives the answer
    # browser's test and Node.js runs the labelling form's script in another.
    test_only = {"poppler-utils", "chromium", "chromium-driver", "nodejs"}
    assert set(APT_PACKAGES.split()) | test_only == set(packages)
    install = " ".join(planned("install", APT="echo apt-get"))
    assert "dpkg-query" in install and "apt-get install -y --no-install-recommends $missing" in install


def test_test_runs_the_fast_tier_then_the_dag_tier():
    assert planned("test") == [
        'python -m pytest -q -m "not dag and not slow"',
        'python -m pytest -q -m "dag or slow" --durations=15',
    ]


def test_lint_checks_and_checks_the_format_without_rewriting():
    lines = planned("lint")
    assert lines[-2:] == ["python -m ruff check .", "python -m ruff format --check ."]


def test_ci_runs_the_makefile_targets_lint_first_then_install_then_the_two_tiers():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.findall(r"^make (\S+)$", ci, re.M) == ["lint", "install", "test-fast", "test-dag"]
    assert "set -euo pipefail" in ci  # a failing target stops CI there


def test_the_readme_opens_with_the_two_commands_and_the_rule_graph():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first_code = readme[readme.index("```bash\n") + 8 :]
    first_code = first_code[: first_code.index("```")]
    assert [line.split("#")[0].strip() for line in first_code.splitlines()] == ["make demo", "make test"]
    assert readme.index("![") < readme.index("## Reproducing the study")
    assert "(docs/rulegraph.svg)" in readme and (REPO / "docs" / "rulegraph.svg").read_text().lstrip().startswith(
        "<?xml"
    )


def test_the_by_hand_install_in_the_docs_is_the_makefiles():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    packages = re.search(r"^APT_PACKAGES := (.+)$", makefile, re.M)[1]
    docs = (REPO / "docs" / "development.md").read_text(encoding="utf-8")
    assert f"apt-get install -y --no-install-recommends {packages} && pip install -r requirements.txt" in docs
