"""The search space: which knobs a study samples, from a YAML file, and how a draw becomes a
TrainConfig.

The shipped space (``space.yaml`` beside this module) covers the fast preset's knobs. A
knob is a name from :data:`KNOBS` with a ``type`` (float, int, bool, categorical) and
``low``/``high`` (``log: true`` for a log-uniform draw) or ``choices``. A space file lists
the knobs it searches; the others keep the base preset's value. Budget-dependent lengths
are fractions of the budget (``warmup_fraction`` x timesteps = lr_warmup_steps, ...) and
the minibatch is a count of minibatches per rollout, rounded down to a divisor of
num_envs x num_steps, so every draw is a valid config.

Optuna's distribution classes check each distribution (low <= high, a log scale above 0,
a non-empty choice list); :data:`KNOBS` adds what only fastrl knows: which knobs exist,
which types each may be searched as, and the range its values must lie in. Every message
names the knob.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from fastrl.config import ConfigError, TrainConfig, apply_overrides, validate_config

DEFAULT_SPACE = Path(__file__).with_name("space.yaml")


# the fields each type takes besides ``type`` (log is optional)
FIELDS: dict[str, tuple[str, ...]] = {"float": ("low", "high", "log"),
                                      "int": ("low", "high", "log"),
                                      "categorical": ("choices",), "bool": ()}


# --------------------------------------------------------------------------- the knobs


@dataclass(frozen=True)
class Bounds:
    """The types a knob may be searched as and the range its values must lie in."""

    types: tuple[str, ...]
    low: float | None = None  # None: unbounded
    high: float | None = None
    positive: bool = False  # strictly above low (a zero learning rate learns nothing)

    def interval(self) -> str:
        return (f"{'(' if self.positive else '['}{self.low}, "
                f"{self.high if self.high is not None else 'inf'}]")

    def holds(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or ("int" in self.types and value != int(value)):
            return False
        if self.low is not None and (value <= self.low if self.positive else value < self.low):
            return False
        return self.high is None or value <= self.high


REAL = ("float", "categorical")
WHOLE = ("int", "categorical")
KNOBS: dict[str, Bounds] = {
    "learning_rate": Bounds(REAL, 0.0, positive=True),
    "warmup_fraction": Bounds(REAL, 0.0, 1.0),
    "cosine_decay": Bounds(("bool",)),
    "ent_coef": Bounds(REAL, 0.0),
    "ent_coef_final": Bounds(REAL, 0.0),
    "ent_decay_fraction": Bounds(REAL, 0.0, 1.0),
    "clip_range": Bounds(REAL, 0.0, positive=True),
    "clip_range_final": Bounds(REAL, 0.0, positive=True),
    "clip_decay_fraction": Bounds(REAL, 0.0, 1.0),
    "vf_coef": Bounds(REAL, 0.0),
    "max_grad_norm": Bounds(REAL, 0.0, positive=True),
    "n_epochs": Bounds(WHOLE, 1),
    "target_kl": Bounds(REAL, 0.0, positive=True),
    "minibatches": Bounds(WHOLE, 1),
    "num_steps": Bounds(WHOLE, 1),
    "gamma": Bounds(REAL, 0.0, 1.0, positive=True),
    "gae_lambda": Bounds(REAL, 0.0, 1.0),
    "weight_decay": Bounds(REAL, 0.0),
    "width": Bounds(WHOLE, 1),
    "depth": Bounds(WHOLE, 1),
}


@dataclass(frozen=True)
class Knob:
    """One searched hyperparameter: its name, its type in the space file, and its Optuna
    distribution (``low``/``high``/``log``/``choices`` read from the distribution)."""

    name: str
    type: str
    distribution: BaseDistribution

    @property
    def low(self) -> float | None:
        return getattr(self.distribution, "low", None)

    @property
    def high(self) -> float | None:
        return getattr(self.distribution, "high", None)

    @property
    def log(self) -> bool:
        return bool(getattr(self.distribution, "log", False))

    @property
    def choices(self) -> tuple[Any, ...]:
        return tuple(getattr(self.distribution, "choices", ()))


def _distribution(kind: str, spec: dict[str, Any]) -> BaseDistribution:
    if kind == "bool":
        return CategoricalDistribution([False, True])
    if kind == "categorical":
        return CategoricalDistribution(spec["choices"])
    cls = FloatDistribution if kind == "float" else IntDistribution
    return cls(spec["low"], spec["high"], log=spec.get("log", False))


def parse_knob(name: str, spec: Any) -> Knob:
    """One validated knob; ConfigError names the key and what is wrong."""
    if name not in KNOBS:
        raise ConfigError(f"search space: unknown key {name!r}; known keys: {', '.join(KNOBS)}")
    if not isinstance(spec, dict):
        raise ConfigError(f"search space: {name} must be a mapping with a type, got {spec!r}")
    bounds, kind = KNOBS[name], spec.get("type")
    if kind not in bounds.types:
        raise ConfigError(f"search space: {name}.type must be {' or '.join(bounds.types)}, "
                          f"got {kind!r}")
    fields = FIELDS[kind]
    unknown = sorted(set(spec) - {"type", *fields})
    missing = [f for f in fields if f != "log" and f not in spec]
    if unknown or missing:
        raise ConfigError(f"search space: {name} ({kind}) takes "
                          f"{', '.join(fields) or 'no field but its type'}: "
                          + (f"unknown field(s) {unknown}" if unknown else f"{missing} missing"))
    if not isinstance(spec.get("log", False), bool) or not isinstance(spec.get("choices", []),
                                                                      list):
        raise ConfigError(f"search space: {name}: log must be true or false and choices a "
                          f"list, got {spec!r}")
    values = [(f, spec[f]) for f in ("low", "high") if f in spec] + [
        ("choice", c) for c in spec.get("choices", [])]
    try:  # Optuna's checks first: they say "log" where a log scale's low is 0
        distribution = _distribution(kind, spec)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"search space: {name} ({kind}): {err}") from None
    for what, value in values:
        if not bounds.holds(value):
            whole = " (whole numbers)" if "int" in bounds.types else ""
            raise ConfigError(f"search space: {name} {what} {value!r} is outside "
                              f"{bounds.interval()}{whole}")
    return Knob(name, kind, distribution)


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
    d = knob.distribution
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(knob.name, d.low, d.high, log=d.log)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(knob.name, d.low, d.high, log=d.log)
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


__all__ = ["DEFAULT_SPACE", "FIELDS", "KNOBS", "Bounds", "Knob", "config_for", "load_space",
           "params_to_overrides", "parse_knob", "sample", "space_to_dict"]
