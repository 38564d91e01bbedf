"""What a validated config implies for the run, as pure functions of the config: rules/common.smk
and the stages call them rather than each reading the config's layout on its own."""

from typing import Iterable, Mapping


def judges(config: Mapping) -> dict[str, Mapping]:
    """Judge name -> its section: the primary judge (`judge`) first, then `judge_panel`'s."""
    return {"primary": config["judge"], **config["judge_panel"]}


def api_key_envs(config: Mapping, rules: Iterable[str] | None = None) -> list[str]:
    """The environment variables that the OpenAI-compatible calls of the config read their keys
    from (each section's api_key_env): openai judges (rule judge_pairwise), openai baselines
    (baseline_answers) and the LLM augmentation (augment_train); only those of `rules` if given."""
    callers = [("judge_pairwise", judge) for judge in judges(config).values() if judge["backend"] == "openai"]
    callers += [("baseline_answers", spec["baseline"]) for spec in config["test_sets"].values()
                if spec["baseline"]["source"] == "openai"]
    if config["augmentation"]["method"] == "llm":
        callers.append(("augment_train", config["augmentation"]["llm"]))
    wanted = None if rules is None else set(rules)
    return sorted({section["api_key_env"] for rule, section in callers if wanted is None or rule in wanted})
