"""The config's cross-references that JSON Schema cannot state (config/schema.yaml states the
rest): a name used in one section must be a key of another, and a judge must have what it needs
from every test set. Run once, by rules/common.smk, before any job; each problem names its key."""

from collections.abc import Mapping

from huatuo_study.run_plan import judge_key, judges


def test_set_problems(name: str, spec: Mapping, models: Mapping) -> list[str]:
    baseline, key = spec["baseline"], f"test_sets.{name}.baseline"
    if baseline["source"] == "model" and baseline["model"] not in models:
        return [f"{key}.model: '{baseline['model']}' is not a key of models ({', '.join(models)})"]
    if baseline["source"] == "file" and spec["source"] == "heldout":
        return [f"{key}.source: 'file' needs a course file with baseline answers as the test set's source"]
    return []


def config_problems(config: Mapping) -> list[str]:
    """Every cross-reference problem of a schema-valid config, as 'key: what is wrong'."""
    models = config["models"]
    problems = [
        f"settings.{name}.model: '{setting['model']}' is not a key of models ({', '.join(models)})"
        for name, setting in config["settings"].items()
        if setting["model"] not in models
    ]
    for name, spec in config["test_sets"].items():
        problems += test_set_problems(name, spec, models)
    course_sets = [name for name, spec in config["test_sets"].items() if spec["source"] != "heldout"]
    for name, judge in judges(config).items():
        if judge["backend"] == "reference" and course_sets:
            problems.append(
                f"{judge_key(name)}.backend: 'reference' needs reference answers, which test set "
                f"{course_sets[0]} (a course file) has not: use held-out test sets or an openai judge"
            )
    return problems
