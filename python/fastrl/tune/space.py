"""The search space: which knobs a study samples, from a YAML file, and how a draw becomes a
TrainConfig.

The shipped space (``space.yaml`` beside this module) covers the fast preset's knobs. A
knob is a name from :data:`KNOBS` with a ``type`` (float, int, bool, categorical) and
``low``/``high`` (``log: true`` for a log-uniform draw) or ``choices``. A space file lists
the knobs it searches; the others keep the base preset's value. Budget-dependent lengths
are fractions of the budget (``warmup_fraction`` x timesteps = lr_warmup_steps, ...) and
the minibatch is a count of minibatches per rollout, rounded down to a divisor of
num_envs x num_steps, so every draw is a valid config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fastrl.config import ConfigError, TrainConfig, apply_overrides, validate_config

DEFAULT_SPACE = Path(__file__).with_name("space.yaml")
TYPES = ("float", "int", "bool", "categorical")
FIELDS = {"type", "low", "high", "log", "choices"}

# knob -> (smallest, largest) value it may take; None: unbounded
KNOBS: dict[str, tuple[float | None, float | None]] = {
    "learning_rate": (0.0, None),
    "warmup_fraction": (0.0, 1.0),
    "cosine_decay": (None, None),
    "ent_coef": (0.0, None),
    "ent_coef_final": (0.0, None),
    "ent_decay_fraction": (0.0, 1.0),
    "clip_range": (0.0, None),
    "clip_range_final": (0.0, None),
    "clip_decay_fraction": (0.0, 1.0),
    "vf_coef": (0.0, None),
    "max_grad_norm": (0.0, None),
    "n_epochs": (1, None),
    "target_kl": (0.0, None),
    "minibatches": (1, None),
    "num_steps": (1, None),
    "gamma": (0.0, 1.0),
    "gae_lambda": (0.0, 1.0),
    "weight_decay": (0.0, None),
    "width": (1, None),
    "depth": (1, None),
}
INTEGER_KNOBS = {"n_epochs", "minibatches", "num_steps", "width", "depth"}
BOOL_KNOBS = {"cosine_decay"}
# knobs that must be strictly above their lower bound (a zero learning rate learns nothing)
POSITIVE_KNOBS = {"learning_rate", "clip_range", "clip_range_final", "max_grad_norm",
                  "target_kl", "gamma"}


@dataclass(frozen=True)
class Knob:
    """One searched hyperparameter and its distribution."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()


def _number(name: str, field: str, value: Any, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"search space: {name}.{field} must be a finite number, got {value!r}")
    if integer and value != int(value):
        raise ConfigError(f"search space: {name}.{field} must be an integer, got {value!r}")
    return value


def _check_in_range(name: str, value: Any, what: str) -> None:
    low, high = KNOBS[name]
    if name in BOOL_KNOBS:
        if not isinstance(value, bool):
            raise ConfigError(f"search space: {name} {what} must be true or false, got {value!r}")
        return
    _number(name, what, value, name in INTEGER_KNOBS)
    below = low is not None and (value <= low if name in POSITIVE_KNOBS else value < low)
    if below or (high is not None and value > high):
        opening = "(" if name in POSITIVE_KNOBS else "["
        bounds = f"{opening}{low}, {high if high is not None else 'inf'}]"
        raise ConfigError(f"search space: {name} {what} {value!r} is outside {bounds}")


def parse_knob(name: str, spec: Any) -> Knob:
    """One validated knob; ConfigError names the key and what is wrong."""
    if name not in KNOBS:
        raise ConfigError(f"search space: unknown key {name!r}; known keys: {', '.join(KNOBS)}")
    if not isinstance(spec, dict):
        raise ConfigError(f"search space: {name} must be a mapping with a type, got {spec!r}")
    unknown = sorted(set(spec) - FIELDS)
    if unknown:
        raise ConfigError(f"search space: {name} has unknown field(s) {unknown}; "
                          f"allowed: {', '.join(sorted(FIELDS))}")
    kind = spec.get("type")
    if kind not in TYPES:
        raise ConfigError(f"search space: {name}.type must be one of {', '.join(TYPES)}, "
                          f"got {kind!r}")
    if (kind == "bool") != (name in BOOL_KNOBS):
        need = "bool" if name in BOOL_KNOBS else "float, int or categorical"
        raise ConfigError(f"search space: {name}.type must be {need}, got {kind!r}")
    if kind == "int" and name not in INTEGER_KNOBS:
        raise ConfigError(f"search space: {name}.type must be float or categorical, got 'int'")
    if kind == "float" and name in INTEGER_KNOBS:
        raise ConfigError(f"search space: {name}.type must be int or categorical, got 'float'")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"search space: {name}.log must be true or false, got {log!r}")
    if kind == "bool":
        if set(spec) - {"type"}:
            raise ConfigError(f"search space: {name} (bool) takes no low/high/log/choices")
        return Knob(name, kind)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices or set(spec) - {"type", "choices"}:
            raise ConfigError(f"search space: {name} (categorical) needs a non-empty list "
                              f"'choices' and nothing else, got {spec!r}")
        for choice in choices:
            _check_in_range(name, choice, "choice")
        return Knob(name, kind, choices=tuple(choices))
    if "choices" in spec or "low" not in spec or "high" not in spec:
        raise ConfigError(f"search space: {name} ({kind}) needs low and high, not choices")
    low = _number(name, "low", spec["low"], kind == "int")
    high = _number(name, "high", spec["high"], kind == "int")
    if low > high:
        raise ConfigError(f"search space: {name}.low {low!r} is above {name}.high {high!r}")
    if log and low <= 0:
        raise ConfigError(f"search space: {name} is log scale, so low must be > 0, got {low!r}")
    _check_in_range(name, low, "low")
    _check_in_range(name, high, "high")
    return Knob(name, kind, low=low, high=high, log=log)


def load_space(path: str | Path | None = None) -> dict[str, Knob]:
    """The knobs of a space file (default: the shipped ``space.yaml``), validated."""
    path = Path(path) if path is not None else DEFAULT_SPACE
    if not path.is_file():
        raise FileNotFoundError(f"search space file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"search space {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"search space {path} must map knob names to distributions")
    return {str(name): parse_knob(str(name), spec) for name, spec in data.items()}


def space_to_dict(space: dict[str, Knob]) -> dict[str, dict[str, Any]]:
    """The space as plain data (recorded with the study, so workers can check they agree)."""
    out: dict[str, dict[str, Any]] = {}
    for name, knob in space.items():
        entry: dict[str, Any] = {"type": knob.type}
        if knob.type in ("float", "int"):
            entry.update(low=knob.low, high=knob.high, log=knob.log)
        elif knob.type == "categorical":
            entry["choices"] = list(knob.choices)
        out[name] = entry
    return out


def sample(trial: Any, space: dict[str, Knob]) -> dict[str, Any]:
    """Draw every knob of ``space`` on an Optuna trial; returns knob -> value."""
    return {name: _suggest(trial, knob) for name, knob in space.items()}


def _suggest(trial: Any, knob: Knob) -> Any:
    if knob.type == "float":
        return trial.suggest_float(knob.name, knob.low, knob.high, log=knob.log)
    if knob.type == "int":
        return trial.suggest_int(knob.name, int(knob.low), int(knob.high), log=knob.log)
    if knob.type == "bool":
        return trial.suggest_categorical(knob.name, [False, True])
    return trial.suggest_categorical(knob.name, list(knob.choices))


def params_to_overrides(params: dict[str, Any], base: TrainConfig,
                        timesteps: int) -> dict[str, Any]:
    """TrainConfig keys for a draw of knobs, on top of ``base`` with budget ``timesteps``."""
    over: dict[str, Any] = {}
    p = dict(params)
    for key in ("learning_rate", "ent_coef", "ent_coef_final", "clip_range", "clip_range_final",
                "vf_coef", "max_grad_norm", "target_kl", "gamma", "gae_lambda"):
        if key in p:
            over[key] = float(p[key])
    if "n_epochs" in p:
        over["n_epochs"] = int(p["n_epochs"])
    if "learning_rate" in p:
        # the cosine floor must stay at or below the peak
        over["lr_min"] = min(base.lr_min, float(p["learning_rate"]))
    if "cosine_decay" in p:
        over["lr_schedule"] = "cosine" if p["cosine_decay"] else "constant"
    for knob, key in (("warmup_fraction", "lr_warmup_steps"),
                      ("ent_decay_fraction", "ent_coef_decay_steps"),
                      ("clip_decay_fraction", "clip_range_decay_steps")):
        if knob in p:
            over[key] = int(round(float(p[knob]) * timesteps))
    if "weight_decay" in p:
        over["weight_decay"] = float(p["weight_decay"])
        over["optimizer"] = "adamw"  # the knob is AdamW's decoupled decay
    if "width" in p or "depth" in p:
        width = int(p.get("width", base.hidden_sizes[0]))
        depth = int(p.get("depth", len(base.hidden_sizes)))
        over["hidden_sizes"] = [width] * depth
    num_steps = int(p.get("num_steps", base.num_steps))
    over["num_steps"] = num_steps
    batch = base.num_envs * num_steps
    minibatches = int(p["minibatches"]) if "minibatches" in p else max(
        1, batch // base.minibatch_size)
    while batch % minibatches:  # the largest count not above the draw that divides the batch
        minibatches -= 1
    over["minibatch_size"] = batch // minibatches
    return over


def config_for(params: dict[str, Any], base: TrainConfig, timesteps: int) -> TrainConfig:
    """A validated copy of ``base`` with the draw applied and ``total_timesteps`` set."""
    import copy

    config = copy.deepcopy(base)
    apply_overrides(config, params_to_overrides(params, base, timesteps))
    config.total_timesteps = int(timesteps)
    validate_config(config)
    return config


__all__ = ["DEFAULT_SPACE", "KNOBS", "Knob", "config_for", "load_space", "params_to_overrides",
           "parse_knob", "sample", "space_to_dict"]
