"""TrainConfig: the one dataclass the CLI, config files, ``--set`` overrides and checkpoints share.

Resolution order (later wins): the dataclass defaults (= the "fast" preset), the named
preset, a YAML/TOML config file, CLI flags, then ``--set key=value`` (dotted keys reach
nested groups: ``env.window=16``, ``data.val_days=40``). Every value is checked by
:func:`validate_config`, whose messages name the offending key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from fastrl.env import EnvConfig


class ConfigError(ValueError):
    """A config value, key, preset or file is invalid; the message names it."""


def _env_config_class() -> type:
    # Imported lazily: fastrl.env loads the compiled simulator, which config users
    # (``--help``, config validation) should not need.
    from fastrl.env import EnvConfig

    return EnvConfig


def _default_env_config() -> EnvConfig:
    # the training reward prices turnover in proportion to the cost model (env.py's
    # TURNOVER_COST_MULTIPLE, chosen on validation); the env alone keeps 0
    return _env_config_class()(turnover_penalty=None)


# Validation by default: enough days that a Sharpe on them means something (daily: about half
# a year, SE of an annualised Sharpe ~1.4; 5-minute: 20 sessions = 1,500 bars), few enough
# that the training years stay long.
DEFAULT_VAL_DAYS = {"1d": 120, "5min": 20}


def resolve_defaults(config: TrainConfig) -> TrainConfig:
    """Fill the values whose default depends on others (data.val_days on data.freq)."""
    if config.data.val_days is None:
        config.data.val_days = DEFAULT_VAL_DAYS.get(config.data.freq, 0)
    return config


@dataclass
class DataConfig:
    """Which bars to train on, and how they are split by time."""

    symbols: tuple[str, ...] = ("BPCL", "HDFCLIFE")
    freq: str = "1d"  # "1d" or "5min"
    test_days: int = 30  # last trading days of each symbol held out for the final backtest
    val_days: int | None = None
    """Trading days before the test slice for validation, early stopping and the choice of the
    best checkpoint. None: DEFAULT_VAL_DAYS for the bar size (120 days of daily bars, 20
    sessions of 5-minute bars); 0 turns validation off."""
    source: str = "bundled"  # "bundled", "synthetic" (planted-signal market) or a data path
    synthetic_bars: int = 3000  # bars per symbol when source == "synthetic"
    synthetic_signal_strength: float = 0.1  # corr(signal_t, return_t+1) of the planted market
    synthetic_seed: int | None = None  # seed of the synthetic bars; None: the run's seed


@dataclass
class PortfolioSection:
    """The multi-asset portfolio env (``--portfolio``): one policy allocates over every symbol.

    Off (the default), each symbol is traded on its own by the single-symbol env. On, the
    symbols form one :class:`~fastrl.data.panel.PanelBlock` and the policy outputs weights
    on the simplex over the symbols and cash (:mod:`fastrl.ppo.simplex`). The settings the
    two envs share (window, episode_length, execution, cost, reward and its penalties,
    initial_cash, equity_floor, random_start) are read from ``env.*``; the keys below are
    the portfolio's own (see :class:`fastrl.env_portfolio.PortfolioConfig`).
    """

    enabled: bool = False
    max_weight: float = 1.0  # cap on any one symbol's weight (the excess stays in cash)
    max_gross: float = 1.0  # cap on the sum of the symbol weights (<= 1: no borrowing)
    integer_shares: bool = False  # round every order toward zero to whole shares
    trade_band: float = 0.0  # skip legs smaller than this fraction of equity


@dataclass
class TrainConfig:
    """Every hyperparameter of a training run. The defaults are the "fast" preset."""

    env: EnvConfig = field(default_factory=_default_env_config)
    data: DataConfig = field(default_factory=DataConfig)
    portfolio: PortfolioSection = field(default_factory=PortfolioSection)
    preset: str = "fast"  # the preset these values started from (recorded, not re-applied)

    # Rollout
    total_timesteps: int = 200_000  # env steps (all envs together) to train for
    num_envs: int = 64  # parallel envs in the simulator
    num_steps: int = 128  # steps per env per rollout; batch = num_envs * num_steps
    env_threads: int = 1  # simulator worker threads

    # PPO update
    gamma: float = 0.99
    gae_lambda: float = 0.95
    n_epochs: int = 20  # passes over each rollout (fewer if the KL stop fires)
    minibatch_size: int = 2048  # must divide num_envs * num_steps
    vf_coef: float = 1.0
    max_grad_norm: float = 1.0
    target_kl: float | None = 0.02  # stop the epoch loop when its last minibatch's KL exceeds it
    norm_adv: bool = True  # normalise advantages per minibatch
    clip_vloss: bool = False  # clip the value update around the old value (see clip_range_vf)
    clip_range_vf: float | None = None  # value clip range; None: follow the clip_range schedule
    optimizer: str = "adamw"  # "adamw" (decoupled weight decay) or "adam"
    weight_decay: float = 1e-4
    adam_eps: float = 1e-5

    # Network
    hidden_sizes: tuple[int, ...] = (2048, 1024, 512, 256)
    shared_trunk: bool = False  # one trunk for actor and critic (half the compute)
    activation: str = "tanh"  # "tanh", "relu", "silu" or "gelu"
    log_std_init: float = -0.5  # initial log std of the Gaussian head (continuous actions)

    # Normalisation
    norm_obs: bool = True  # running mean/var observation normalisation (saved with the model)
    obs_clip: float = 10.0
    norm_reward: bool = True  # divide rewards by the running std of the discounted return
    reward_clip: float = 10.0

    # Schedules (functions of env steps)
    learning_rate: float = 1e-3  # peak learning rate
    lr_schedule: str = "cosine"  # "cosine": linear warmup then cosine decay to lr_min; "constant"
    lr_warmup_steps: int = 10_000
    lr_min: float = 1e-5  # the cosine floor, reached at total_timesteps
    ent_coef: float = 0.1  # entropy coefficient at step 0 ...
    ent_coef_final: float = 0.01  # ... decayed linearly to this ...
    ent_coef_decay_steps: int = 50_000  # ... over this many env steps (0: constant final value)
    clip_range: float = 0.3
    clip_range_final: float = 0.1
    clip_range_decay_steps: int = 30_000
    # Piecewise-constant schedules [(env step, value), ...] (what population-based training
    # learned): the value of the last point at or before the step. lr_points is used when
    # lr_schedule is "piecewise"; non-empty ent_coef_points / clip_range_points replace the
    # linear decays above.
    lr_points: tuple[tuple[float, float], ...] = ()
    ent_coef_points: tuple[tuple[float, float], ...] = ()
    clip_range_points: tuple[tuple[float, float], ...] = ()

    # Validation and early stopping (only when data.val_days > 0)
    val_every: int = 1  # updates between validation backtests
    patience: int = 10  # validations without improvement before stopping; 0: never stop
    min_delta: float = 0.0  # improvement in validation Sharpe that resets the patience

    # Run
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda" or "cuda:N"
    compile: bool | None = None  # torch.compile the policy and loss; None: on for CUDA only
    amp: bool | None = None  # bf16 autocast; None: on for CUDA and for CPUs with native bf16
    # (AVX512-BF16/AMX), off elsewhere: bench/convergence.py --quick --amp learned the same
    # (validation Sharpe medians within 0.04 of fp32 over 5 seeds), see ppo.update.default_amp
    torch_threads: int = 0  # CPU threads for torch; 0: every core
    run_dir: str = ""  # run folder; "" -> runs/<run_name>
    run_name: str = ""  # "" -> <preset>-<symbols>-<timestamp>
    checkpoint_every: int = 10  # updates between checkpoints/last.pt (also written at the end)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps


PRESETS: dict[str, dict[str, Any]] = {
    # The configuration the project was asked for: the dataclass defaults.
    "fast": {},
    # The older, slower configuration, kept for comparison.
    "baseline": {
        "learning_rate": 1e-4,
        "lr_schedule": "constant",
        "ent_coef": 0.01,
        "ent_coef_final": 0.01,
        "ent_coef_decay_steps": 0,
        "clip_range": 0.2,
        "clip_range_final": 0.2,
        "clip_range_decay_steps": 0,
        "vf_coef": 0.25,
        "max_grad_norm": 0.25,
        "n_epochs": 10,
        "optimizer": "adam",
        "weight_decay": 0.0,
        "hidden_sizes": (1024, 512, 256),
    },
}


def portfolio_env_config(config: TrainConfig) -> Any:
    """The :class:`~fastrl.env_portfolio.PortfolioConfig` of a ``portfolio.enabled`` run:
    the settings both envs share from ``env.*``, the caps from ``portfolio.*``."""
    from fastrl.env_portfolio import PortfolioConfig

    e, p = config.env, config.portfolio
    return PortfolioConfig(
        window=e.window, episode_length=e.episode_length, execution=e.execution,
        long_only=True, max_gross=p.max_gross, max_weight=p.max_weight,
        integer_shares=p.integer_shares, trade_band=p.trade_band, cost=e.cost,
        reward=e.reward, dsr_eta=e.dsr_eta, drawdown_penalty=e.drawdown_penalty,
        turnover_penalty=e.turnover_penalty, initial_cash=e.initial_cash,
        equity_floor=e.equity_floor, random_start=e.random_start,
    )


# --------------------------------------------------------------------------- coercion

_NESTED = {"env", "data", "portfolio"}


def _field_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, localns={"EnvConfig": _env_config_class()})
    except Exception:  # unresolvable annotation: fall back to the defaults' types
        return {}


def _coerce(key: str, value: Any, hint: Any, current: Any) -> Any:
    """Turn ``value`` (from YAML/TOML/JSON or a ``--set`` string) into the field's type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.strip().lower() in ("none", "null") and type(
            None
        ) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option, current)
            except ConfigError as err:
                errors.append(str(err))
        if not errors:  # e.g. str | CostModel given an object
            return value
        raise ConfigError(errors[0])
    if hint is Any or hint is None and current is None:
        return value
    target = hint if hint is not None and origin is None else None
    if target is None and origin is None and current is not None:
        target = type(current)
    if origin in (tuple, list) or (target in (tuple, list)):
        if isinstance(value, str):
            parsed = yaml.safe_load(value) if value.strip().startswith("[") else value.split(",")
            value = parsed
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} needs a list, got {value!r}")
        element = args[0] if args else (type(current[0]) if current else Any)
        return tuple(_coerce(key, item, element, None) for item in value)
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"config key {key!r} needs true or false, got {value!r}")
    if target is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} needs an integer, got {value!r}")
        if isinstance(value, str):
            text = value.strip().replace("_", "")
            try:
                value = float(text) if any(c in text for c in ".eE") else int(text)
            except ValueError:
                raise ConfigError(f"config key {key!r} needs an integer, got {value!r}") from None
        if isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                raise ConfigError(f"config key {key!r} needs an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, int):
            raise ConfigError(f"config key {key!r} needs an integer, got {value!r}")
        return value
    if target is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r} needs a number, got {value!r}")
        try:
            number = float(value.strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r} needs a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"config key {key!r} must be finite, got {value!r}")
        return number
    if target is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} needs a string, got {value!r}")
        return value
    return value


def _parse_scalar(text: str) -> Any:
    """A ``--set`` value: YAML scalars and lists (``16``, ``true``, ``[64, 64]``, ``null``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set_value(config: TrainConfig, dotted_key: str, value: Any) -> None:
    parts = dotted_key.strip().split(".")
    target: Any = config
    for depth, part in enumerate(parts[:-1]):
        if depth > 0 or part not in _NESTED:
            raise ConfigError(f"unknown config key {dotted_key!r}")
        target = getattr(target, part)
    name = parts[-1]
    names = {f.name for f in dataclasses.fields(target)}
    if name not in names or (target is config and name in _NESTED):
        group = "" if target is config else parts[0] + "."
        listed = sorted(n for n in names if target is not config or n not in _NESTED)
        groups = [f"{g}.*" for g in sorted(_NESTED)] if not group else []
        known = ", ".join([group + n for n in listed] + groups)
        raise ConfigError(f"unknown config key {dotted_key!r}; known keys: {known}")
    hint = _field_hints(type(target)).get(name)
    current = getattr(target, name)
    setattr(target, name, _coerce(dotted_key, value, hint, current))


def _flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and not prefix and key in _NESTED:
            flat.update(_flatten(value, full + "."))
        else:
            flat[full] = value
    return flat


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Set (possibly nested or dotted) keys on ``config`` in place; returns it."""
    for key, value in _flatten(overrides).items():
        _set_value(config, key, value)
    return config


def parse_set_options(items: list[str]) -> dict[str, Any]:
    """``["env.window=16", "hidden_sizes=[64,64]"]`` -> ``{"env.window": 16, ...}``."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set needs key=value, got {item!r}")
        overrides[key.strip()] = _parse_scalar(text)
    return overrides


def preset_config(name: str = "fast") -> TrainConfig:
    """A TrainConfig holding the named preset's values."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    config = TrainConfig(preset=name)
    apply_overrides(config, PRESETS[name])
    return config


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml), TOML (.toml) or JSON (.json) config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path} must end in .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"config file {path} could not be parsed: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return data


def build_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    set_options: list[str] | None = None,
) -> TrainConfig:
    """Resolve a TrainConfig: preset, then file, then ``overrides`` (CLI flags), then --set.

    A ``preset`` key inside the file applies when no preset is passed explicitly.
    """
    file_values = load_config_file(config_file) if config_file else {}
    file_values = dict(file_values)
    file_preset = file_values.pop("preset", None)
    config = preset_config(preset or file_preset or "fast")
    try:
        apply_overrides(config, file_values)
    except ConfigError as err:
        raise ConfigError(f"{config_file}: {err}") from None
    apply_overrides(config, overrides or {})
    apply_overrides(config, parse_set_options(set_options or []))
    resolve_defaults(config)
    validate_config(config)
    return config


# ------------------------------------------------------------------------- validation


def _check(condition: bool, key: str, requirement: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"config key {key!r} {requirement}, got {value!r}")


def _check_points(key: str, points: Any, positive: bool) -> None:
    """A piecewise schedule: [step, value] pairs, steps from 0 strictly increasing."""
    if not points:
        return
    pairs_ok = all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points)
    _check(pairs_ok, key, "must be a list of [step, value] pairs", points)
    steps = [float(p[0]) for p in points]
    _check(steps[0] == 0, key, "must start at step 0", points[0])
    _check(all(b > a for a, b in zip(steps, steps[1:], strict=False)), key,
           "must have strictly increasing steps", steps)
    values = [float(p[1]) for p in points]
    ok = all(math.isfinite(v) and (v > 0 if positive else v >= 0) for v in values)
    _check(ok, key, "values must be finite and " + ("> 0" if positive else ">= 0"), values)


def validate_config(config: TrainConfig) -> None:
    """Raise ConfigError naming the first invalid key."""
    c = config
    _check(c.preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}", c.preset)
    for key in ("num_envs", "num_steps", "env_threads", "n_epochs", "minibatch_size"):
        _check(getattr(c, key) >= 1, key, "must be >= 1", getattr(c, key))
    _check(
        c.batch_size % c.minibatch_size == 0 and c.minibatch_size <= c.batch_size,
        "minibatch_size",
        f"must divide num_envs * num_steps = {c.batch_size}",
        c.minibatch_size,
    )
    _check(
        c.total_timesteps >= c.batch_size,
        "total_timesteps",
        f"must be at least one rollout (num_envs * num_steps = {c.batch_size})",
        c.total_timesteps,
    )
    _check(0.0 < c.gamma <= 1.0, "gamma", "must lie in (0, 1]", c.gamma)
    _check(0.0 <= c.gae_lambda <= 1.0, "gae_lambda", "must lie in [0, 1]", c.gae_lambda)
    _check(c.learning_rate > 0, "learning_rate", "must be > 0", c.learning_rate)
    _check(
        0 <= c.lr_min <= c.learning_rate, "lr_min", "must lie in [0, learning_rate]", c.lr_min
    )
    _check(c.lr_schedule in ("cosine", "constant", "piecewise"), "lr_schedule",
           "must be cosine, constant or piecewise", c.lr_schedule)
    _check(c.lr_schedule != "piecewise" or bool(c.lr_points), "lr_points",
           "must list [step, value] points when lr_schedule is piecewise", c.lr_points)
    for key in ("lr_points", "ent_coef_points", "clip_range_points"):
        _check_points(key, getattr(c, key), positive=key != "ent_coef_points")
    for key in ("lr_warmup_steps", "ent_coef_decay_steps", "clip_range_decay_steps"):
        _check(getattr(c, key) >= 0, key, "must be >= 0", getattr(c, key))
    for key in ("ent_coef", "ent_coef_final", "vf_coef", "weight_decay", "min_delta"):
        _check(getattr(c, key) >= 0, key, "must be >= 0", getattr(c, key))
    for key in ("clip_range", "clip_range_final", "max_grad_norm", "adam_eps", "obs_clip",
                "reward_clip"):
        _check(getattr(c, key) > 0, key, "must be > 0", getattr(c, key))
    _check(c.target_kl is None or c.target_kl > 0, "target_kl", "must be > 0 or null",
           c.target_kl)
    _check(c.clip_range_vf is None or c.clip_range_vf > 0, "clip_range_vf",
           "must be > 0 or null", c.clip_range_vf)
    _check(c.optimizer in ("adamw", "adam"), "optimizer", "must be adamw or adam", c.optimizer)
    _check(len(c.hidden_sizes) >= 1 and all(h >= 1 for h in c.hidden_sizes), "hidden_sizes",
           "must be a non-empty list of positive integers", c.hidden_sizes)
    _check(c.activation in ("tanh", "relu", "silu", "gelu"), "activation",
           "must be tanh, relu, silu or gelu", c.activation)
    _check(c.val_every >= 1, "val_every", "must be >= 1", c.val_every)
    _check(c.patience >= 0, "patience", "must be >= 0", c.patience)
    _check(c.checkpoint_every >= 1, "checkpoint_every", "must be >= 1", c.checkpoint_every)
    _check(c.torch_threads >= 0, "torch_threads", "must be >= 0", c.torch_threads)
    _check(
        c.device in ("auto", "cpu", "cuda") or c.device.startswith("cuda:"),
        "device", "must be auto, cpu, cuda or cuda:N", c.device,
    )
    d = c.data
    _check(len(d.symbols) >= 1, "data.symbols", "must name at least one symbol", d.symbols)
    _check(d.freq in ("1d", "5min"), "data.freq", "must be 1d or 5min", d.freq)
    _check(d.test_days >= 1, "data.test_days",
           "must be >= 1: fastrl always holds out test days for an honest backtest",
           d.test_days)
    _check(d.val_days is None or d.val_days >= 0, "data.val_days", "must be >= 0 or null",
           d.val_days)
    _check(d.synthetic_bars >= 1, "data.synthetic_bars", "must be >= 1", d.synthetic_bars)
    _check(0.0 <= d.synthetic_signal_strength < 1.0, "data.synthetic_signal_strength",
           "must lie in [0, 1)", d.synthetic_signal_strength)
    _check(bool(d.source), "data.source", "must be bundled, synthetic or a path", d.source)
    p = c.portfolio
    if p.enabled:
        _check(len(d.symbols) >= 2, "data.symbols",
               "must name at least two symbols for a portfolio (one symbol: drop --portfolio "
               "and trade it with env.action=continuous)", d.symbols)
        _check(len(set(d.symbols)) == len(d.symbols), "data.symbols",
               "must not repeat a symbol in a portfolio", d.symbols)
        _check(d.source != "synthetic", "data.source",
               "cannot be synthetic for a portfolio (the planted-signal market is single-symbol)",
               d.source)
        _check(0.0 < p.max_weight <= 1.0, "portfolio.max_weight", "must lie in (0, 1]",
               p.max_weight)
        _check(0.0 < p.max_gross <= 1.0, "portfolio.max_gross",
               "must lie in (0, 1] (the simplex policy holds no leverage)", p.max_gross)
        _check(0.0 <= p.trade_band < 1.0, "portfolio.trade_band", "must lie in [0, 1)",
               p.trade_band)
    e = c.env
    _check(e.window >= 1, "env.window", "must be >= 1", e.window)
    _check(e.episode_length >= 0, "env.episode_length", "must be >= 0", e.episode_length)
    _check(e.action in ("discrete", "continuous"), "env.action", "must be discrete or continuous",
           e.action)
    if e.action == "discrete":
        _check(len(e.position_levels) >= 2, "env.position_levels",
               "must hold at least two levels", e.position_levels)
    else:
        _check(e.min_pos < e.max_pos, "env.min_pos", "must be below env.max_pos", e.min_pos)
    try:
        e.validate()
    except ValueError as err:
        raise ConfigError(f"invalid env config: {err}") from None


# ----------------------------------------------------------------------- serialisation


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (JSON/YAML safe) of every field, tuples as lists."""
    result = _jsonable(config)
    result["env"] = _jsonable(config.env.to_dict())
    result["batch_size"] = config.batch_size  # derived, recorded for readers of config.json
    return result


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig saved by :func:`config_to_dict` (unknown keys are an error)."""
    values = dict(values)
    values.pop("batch_size", None)
    env_values = values.pop("env", {}) or {}
    config = TrainConfig()
    apply_overrides(config, {"env": env_values, **values})
    validate_config(config)
    return config
