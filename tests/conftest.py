import copy
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real Huatuo26M-Lite rows and the course's test file beside the checkout."""
    if not (SHARED_DATA / "huatuo26m_lite_sample500.jsonl").exists():
        pytest.skip(f"real data not found at {SHARED_DATA} (the folder ../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One real demo run for the session (a few minutes on two cores), in its own copy of the repo.
    Tests only read it or dry-run against it; a test that runs jobs copies it first."""
    from dag import DEMO, copy_repo, snakemake

    root = copy_repo(tmp_path_factory.mktemp("demo"))
    snakemake(root, "--cores", "2", *DEMO)
    return root


@pytest.fixture(autouse=True)
def restore_logging():
    """Stages log to the root logger (common.setup_logging): each test leaves it as it found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def fake():
    """Starts loopback OpenAI-compatible servers (tests/fake_openai.py); stops them after the test."""
    import fake_openai

    servers = []

    def start(**kwargs):
        servers.append(fake_openai.start(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        fake_openai.stop(server)


def with_defaults(key: str, values: dict) -> dict:
    """`values` as a stage receives them from the validated config: config/schema.yaml's defaults
    filled in by Snakemake's own validate. `key` says where the section sits in a config (judge,
    generation, augmentation.llm, test_sets.small.baseline, models.tiny-s.build, ...)."""
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text(encoding="utf-8"))
    *parents, last = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = copy.deepcopy(values)
    validate(config, str(REPO / "config" / "schema.yaml"))
    return node[last]


def fake_snakemake(input=None, output=None, params=None, log=None, rule="test"):
    """A stand-in for the `snakemake` object a `script:` receives, for calling a stage's main()."""
    return SimpleNamespace(
        input=SimpleNamespace(**(input or {})),
        output=SimpleNamespace(**(output or {})),
        params=SimpleNamespace(**(params or {})),
        log=list(log or []),
        rule=rule,
    )
