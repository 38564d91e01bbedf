"""config/study.yaml, read and checked: the study's published win rates, its claims and the
settings of the inference that tests them (equivalence margin, simulation nuisance)."""

import yaml

from huatuo_study.common import PipelineError, log
from huatuo_study.statistics.verdict_simulation import Nuisance

# A claim's `against: control`: the untuned control of the setting's base model.
CONTROL = "control"


def load_study(path) -> dict | None:
    """config/study.yaml as YAML (its sections are checked by their readers)."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise PipelineError(f"{path}: cannot read the study file ({e})") from None


def read_published(path) -> dict[str, dict]:
    """Setting -> {win_rate, wins, n} from the `published:` section of the study file."""
    study = load_study(path)
    published = study.get("published") if isinstance(study, dict) else None
    if not isinstance(published, dict):
        raise PipelineError(f"{path}: published: missing or not a mapping (n, win_rates)")
    n = published.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise PipelineError(f"{path}: published.n: expected the number of questions (a positive integer), got {n!r}")
    rates = published.get("win_rates")
    if not isinstance(rates, dict):
        raise PipelineError(f"{path}: published.win_rates: missing or not a mapping of setting to rate")
    out = {}
    for setting, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise PipelineError(f"{path}: published.win_rates.{setting}: expected a number in [0, 1], got {rate!r}")
        wins = round(rate * n)
        if abs(rate * n - wins) > 1e-6:
            log.warning(
                "%s: published.win_rates.%s = %s is not a whole number of %d questions; %d wins",
                path,
                setting,
                rate,
                n,
                wins,
            )
        out[str(setting)] = {"win_rate": float(rate), "wins": wins, "n": n}
    return out


def read_study(path) -> dict:
    """The study file, its `claims:` checked."""
    study = load_study(path)
    claims = study.get("claims") if isinstance(study, dict) else None
    if not isinstance(claims, list) or not claims:
        raise PipelineError(f"{path}: claims: missing or not a list")
    for i, claim in enumerate(claims):
        if not isinstance(claim, dict):
            raise PipelineError(f"{path}: claims[{i}]: expected a mapping (id, claim, source, setting, against)")
        missing = [k for k in ("id", "claim", "source", "setting", "against") if k not in claim]
        if missing:
            raise PipelineError(f"{path}: claims[{i}]: missing '{missing[0]}'")
    return study


def read_inference(path, study: dict) -> tuple[float, Nuisance]:
    """(equivalence margin, simulation nuisance) from the study file's `inference:` section."""
    inference = study.get("inference")
    if not isinstance(inference, dict):
        raise PipelineError(f"{path}: inference: missing or not a mapping (equivalence_margin, simulation)")
    margin = inference.get("equivalence_margin")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 < margin < 1:
        raise PipelineError(
            f"{path}: inference.equivalence_margin: expected a difference of rates in (0, 1), got {margin!r}"
        )
    simulation = inference.get("simulation")
    fields = set(Nuisance.__dataclass_fields__)
    if not isinstance(simulation, dict) or set(simulation) != fields:
        raise PipelineError(
            f"{path}: inference.simulation: expected a mapping of {', '.join(sorted(fields))}, got {simulation!r}"
        )
    for key, value in simulation.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PipelineError(f"{path}: inference.simulation.{key}: expected a number, got {value!r}")
    try:
        return float(margin), Nuisance(**simulation)
    except PipelineError as e:
        raise PipelineError(f"{path}: inference.{e}") from None
