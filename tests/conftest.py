import copy
import inspect
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

SHARED_DATA = REPO.parent / "shared" / "data"
TESTS = REPO / "tests"


# Tests over a few seconds in files that mark none themselves: test file -> test names.
SLOW = {
    "test_augment.py": {"test_deterministic_across_hash_seeds"},
    "test_augment_synonym.py": {"test_real_rows", "test_deterministic_across_hash_seeds"},
}


def pytest_collection_modifyitems(items):
    """The tiers of pytest.ini: `dag` found by runs_snakemake, `slow` as measured (in SLOW or in
    the test files). A name in SLOW that its file does not define stops the run, so that a renamed
    test cannot drop out of the slow tier unseen."""
    for item in items:
        if runs_snakemake(item):
            item.add_marker(pytest.mark.dag)
        slow = SLOW.get(item.path.name, set())
        if item.originalname in slow:
            item.add_marker(pytest.mark.slow)
        if unknown := sorted(name for name in slow if not hasattr(item.module, name)):
            raise pytest.UsageError(f"tests/conftest.py SLOW: {item.path.name} has no test {', '.join(unknown)}")


# Every Snakemake subprocess of the suite starts from tests/dag.py's SNAKEMAKE command line (through
# dag.snakemake, dag.planned_jobs, or the demo_run fixture, which calls them), so a test runs
# Snakemake when SNAKEMAKE is reachable from its code or its fixtures' code through the functions
# and classes of tests/ that they name. A test that loads the workflow otherwise is marked by hand.
def runs_snakemake(item) -> bool:
    from dag import SNAKEMAKE

    fixtures = [d.func for name in item.fixturenames for d in item._fixtureinfo.name2fixturedefs.get(name, ())]
    todo, seen = [item.obj, *fixtures], set()
    while todo:
        obj = todo.pop()
        if obj is SNAKEMAKE:
            return True
        if id(obj) in seen or not in_tests(obj):
            continue
        seen.add(id(obj))
        if inspect.isclass(obj):
            todo += [getattr(member, "__func__", member) for member in vars(obj).values()]
        else:
            todo += names_used(obj)
    return False


def in_tests(obj) -> bool:
    """Whether obj is a function or class of tests/ (the code the walk above follows)."""
    if inspect.isfunction(obj):
        return in_tests_folder(inspect.unwrap(obj).__code__.co_filename)
    return inspect.isclass(obj) and in_tests_folder(getattr(sys.modules.get(obj.__module__), "__file__", None))


def in_tests_folder(path: str | None) -> bool:
    return path is not None and Path(path).resolve().parent == TESTS


def names_used(function) -> list:
    """What a function's code (its nested functions' too) names: globals, closure cells, and the
    names it takes from a module of tests/ (`import dag` or `from dag import ...` in its body)."""
    function = inspect.unwrap(function)
    codes, names = [function.__code__], set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes += [const for const in code.co_consts if inspect.iscode(const)]
    used = [function.__globals__[name] for name in names if name in function.__globals__]
    modules = [
        sys.modules[name]
        for name in names
        if name in sys.modules and in_tests_folder(getattr(sys.modules[name], "__file__", None))
    ]
    used += [getattr(module, name) for module in modules for name in names if hasattr(module, name)]
    for cell in function.__closure__ or ():
        try:
            used.append(cell.cell_contents)
        except ValueError:  # a cell not yet bound
            pass
    return used


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
