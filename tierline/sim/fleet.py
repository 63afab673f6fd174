"""The simulated fleet: one behaviour profile per served model, built from a policy file.

Defaults come from a model's tier position (cheaper tiers answer faster and less
accurately); an optional sim config YAML overrides fields per model or for all models:

    seed: 7
    default: {error_rate: 0.01}
    models: {sim-nano: {ttft_s: 0.2, rpm: 60}}
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SimConfigError(ValueError):
    """A policy, sim config or dataset the simulator refuses; names the file and key."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class ModelProfile:
    """How one simulated model behaves: latency, cold start, failures, limits, quality."""

    ttft_s: float = 0.02
    per_token_s: float = 0.0005
    jitter_s: float = 0.005
    cold_start_s: float = 0.1
    idle_before_cold_s: float = 300.0
    error_rate: float = 0.0
    rpm: int | None = None
    tpm: int | None = None
    accuracy: float = 0.8
    answer_tokens: int = 96


@dataclass(frozen=True)
class Fleet:
    """The served models by name, and the seed of every random choice."""

    models: dict[str, ModelProfile] = field(default_factory=dict)
    seed: int = 0
    # count served calls per (model, prompt digest) for GET /sim/served-by-prompt; off by
    # default, since a long-running simulator would keep one entry per prompt it ever saw
    count_prompts: bool = False


_FLOAT_FIELDS = {"ttft_s", "per_token_s", "jitter_s", "cold_start_s", "idle_before_cold_s"}
_UNIT_FIELDS = {"error_rate", "accuracy"}
_COUNT_FIELDS = {"rpm", "tpm", "answer_tokens"}


def tier_profile(position: int, n_tiers: int) -> ModelProfile:
    """Default profile for tier ``position`` of ``n_tiers`` (0 = cheapest)."""
    f = position / (n_tiers - 1) if n_tiers > 1 else 1.0
    return ModelProfile(
        ttft_s=round(0.005 + 0.035 * f, 4),
        per_token_s=round(0.0002 + 0.0008 * f, 5),
        jitter_s=round(0.002 + 0.008 * f, 4),
        cold_start_s=round(0.05 + 0.15 * f, 3),
        accuracy=round(0.6 + 0.35 * f, 3),
        answer_tokens=int(48 + 112 * f),
    )


def _load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimConfigError(str(path), "<file>", f"cannot read: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SimConfigError(str(path), "<yaml>", str(exc).replace("\n", " ")) from exc


def _check_field(source: str, key: str, name: str, value: Any) -> Any:
    """Validate one override value; returns it normalised."""
    if name in _COUNT_FIELDS:
        if value is None and name != "answer_tokens":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SimConfigError(source, key, f"must be a positive integer, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SimConfigError(source, key, f"must be a number, got {value!r}")
    if value < 0 or (name in _UNIT_FIELDS and value > 1):
        bounds = "between 0 and 1" if name in _UNIT_FIELDS else "at least 0"
        raise SimConfigError(source, key, f"must be {bounds}, got {value!r}")
    return float(value)


def _overrides(source: str, prefix: str, data: Any) -> dict[str, Any]:
    """Validated ModelProfile overrides from one mapping at ``prefix``."""
    if not isinstance(data, dict):
        raise SimConfigError(source, prefix, "must be a mapping of profile fields")
    known = _FLOAT_FIELDS | _UNIT_FIELDS | _COUNT_FIELDS
    out: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}"
        if name not in known:
            raise SimConfigError(source, key, f"unknown field; known: {sorted(known)}")
        out[name] = _check_field(source, key, name, value)
    return out


def apply_config(
    base: dict[str, ModelProfile], config_path: str | Path | None, seed: int | None
) -> Fleet:
    """Apply a sim config file's overrides to ``base``; ``seed`` wins over the file's."""
    if config_path is None:
        return Fleet(models=dict(base), seed=seed or 0)
    path = Path(config_path)
    source = str(path)
    data = _load_yaml(path)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise SimConfigError(source, "<root>", "a sim config is a mapping")
    unknown = set(data) - {"seed", "default", "models", "count_prompts"}
    if unknown:
        raise SimConfigError(
            source, sorted(map(str, unknown))[0],
            "unknown key; known: count_prompts, default, models, seed",
        )
    count_prompts = data.get("count_prompts", False)
    if not isinstance(count_prompts, bool):
        raise SimConfigError(
            source, "count_prompts", f"must be true or false, got {count_prompts!r}"
        )
    file_seed = data.get("seed", 0)
    if isinstance(file_seed, bool) or not isinstance(file_seed, int):
        raise SimConfigError(source, "seed", f"must be an integer, got {file_seed!r}")
    default = _overrides(source, "default", data.get("default") or {})
    per_model = data.get("models") or {}
    if not isinstance(per_model, dict):
        raise SimConfigError(source, "models", "must map model names to profile fields")
    models = {name: dataclasses.replace(p, **default) for name, p in base.items()}
    for name, fields in per_model.items():
        if name not in models:
            raise SimConfigError(
                source, f"models.{name}", f"not a served model; served: {sorted(models)}"
            )
        models[name] = dataclasses.replace(
            models[name], **_overrides(source, f"models.{name}", fields)
        )
    return Fleet(models=models, seed=file_seed if seed is None else seed,
                 count_prompts=count_prompts)


def policy_profiles(path: str | Path) -> dict[str, ModelProfile]:
    """Tier-derived profiles of every model a policy file names, keyed by served name."""
    source = str(path)
    data = _load_yaml(Path(path))
    if not isinstance(data, dict):
        raise SimConfigError(source, "<root>", "a policy is a mapping")
    tiers, specs = data.get("tiers"), data.get("models")
    if not isinstance(tiers, dict) or not tiers:
        raise SimConfigError(source, "tiers", "must map tier names to lists of models")
    if not isinstance(specs, dict):
        raise SimConfigError(source, "models", "must map model names to specs")
    profiles: dict[str, ModelProfile] = {}
    for position, (tier, names) in enumerate(tiers.items()):
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise SimConfigError(source, f"tiers.{tier}", "must be a list of model names")
        for key in names:
            spec = specs.get(key)
            if not isinstance(spec, dict):
                raise SimConfigError(source, f"tiers.{tier}", f"model {key!r} is not in 'models'")
            served = spec.get("name") or key
            if served in profiles:
                continue  # a model listed in two tiers keeps its cheapest position
            limits = spec.get("limits") or {}
            profiles[served] = dataclasses.replace(
                tier_profile(position, len(tiers)),
                rpm=limits.get("requests_per_minute"),
                tpm=limits.get("tokens_per_minute"),
            )
    return profiles


def fleet_from_policy(
    path: str | Path, config_path: str | Path | None = None, seed: int | None = None
) -> Fleet:
    """Build the fleet a policy file describes, with optional sim config overrides."""
    return apply_config(policy_profiles(path), config_path, seed)


def fleet_for_models(
    names: Iterable[str],
    policy_path: str | Path | None = None,
    config_path: str | Path | None = None,
    seed: int | None = None,
) -> Fleet:
    """A fleet serving ``names`` (e.g. a replay dataset's models); the policy supplies
    profiles of the models it names, the rest get the default profile."""
    known = policy_profiles(policy_path) if policy_path is not None else {}
    return apply_config({n: known.get(n, ModelProfile()) for n in names}, config_path, seed)
