"""The test tiers of pytest.ini as tests/conftest.py marks them, read from a real collection: `dag`
on whatever reaches Snakemake (its own call, a helper's, a fixture's) or says so, `slow` as listed."""

import subprocess
import sys

from conftest import REPO

# Collects the given test files in a child pytest and prints each test's tiers (tab-separated: test
# ids may hold spaces).
SHOW_TIERS = """
import sys, pytest

class ShowTiers:
    def pytest_collection_finish(self, session):
        for item in session.items:
            print("TIERS", item.nodeid, *sorted({m.name for m in item.iter_markers()} & {"dag", "slow"}), sep="\\t")

sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[ShowTiers()]))
"""
FILES = [
    "tests/test_pipeline.py",
    "tests/test_gpu_proof.py",
    "tests/test_slurm.py",
    "tests/test_envs.py",
    "tests/test_augment.py",
    "tests/test_call_cache_faults.py",
]


def tiers_of(*files: str) -> dict[str, tuple[str, ...]]:
    proc = subprocess.run([sys.executable, "-c", SHOW_TIERS, *files], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("TIERS\t")]
    return {test: tuple(marks) for _, test, *marks in rows}


def test_the_tests_that_run_snakemake_are_dag_and_the_long_ones_slow():
    tiers = tiers_of(*FILES)
    pipeline = {test: marks for test, marks in tiers.items() if test.startswith("tests/test_pipeline.py::")}
    # Each runs Snakemake: through the demo_run fixture alone, or by calls of its own.
    assert set(pipeline.values()) == {("dag",)}
    assert "tests/test_pipeline.py::test_demo_writes_the_table_and_the_paper" in pipeline
    marked = {test: marks for test, marks in tiers.items() if marks and test not in pipeline}
    assert marked == {
        # planned_jobs in the test's own code
        "tests/test_gpu_proof.py::test_the_proof_plans_every_training_and_answer_of_the_study": ("dag",),
        # SNAKEMAKE in a helper function of the test file, and in module fixtures
        "tests/test_slurm.py::test_profile_sizes_the_studys_jobs_by_setting": ("dag",),
        "tests/test_slurm.py::test_slurm_run_gives_the_local_win_rate_table": ("dag",),
        "tests/test_slurm.py::test_every_job_went_through_slurm_and_exactly_the_gpu_rules_asked_for_a_gpu": ("dag",),
        "tests/test_slurm.py::test_a_training_job_killed_in_slurm_resumes_from_its_checkpoint[scancel]": (
            "dag",
            "slow",
        ),
        "tests/test_slurm.py::test_a_training_job_killed_in_slurm_resumes_from_its_checkpoint[requeue]": (
            "dag",
            "slow",
        ),
        # Snakemake's API in a child process, marked by hand
        "tests/test_envs.py::test_every_rule_names_an_env_that_exists[study]": ("dag",),
        "tests/test_envs.py::test_every_rule_names_an_env_that_exists[demo]": ("dag",),
        # slow by conftest.SLOW, and by a mark in the file
        "tests/test_augment.py::test_deterministic_across_hash_seeds": ("slow",),
        "tests/test_call_cache_faults.py::test_two_runs_sharing_a_cache_at_once_pay_each_call_once": ("slow",),
    }
    # The fast tier: the rest, such as a test of a file that imports planned_jobs but does not call it.
    assert tiers["tests/test_gpu_proof.py::test_the_proof_runs_the_studys_recipes_sizes_and_decoding"] == ()
    assert tiers["tests/test_augment.py::test_select_positions"] == ()
