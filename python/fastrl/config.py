"""TrainConfig: the one dataclass the CLI, config files, ``--set`` overrides and checkpoints share.

Resolution order (later wins): the dataclass defaults (= the "fast" preset), the named
preset, a YAML/TOML config file, CLI flags, then ``--set key=value`` (dotted keys reach
nested groups: ``env.window=16``, ``data.val_days=40``).

Types and ranges live in the field annotations (``Annotated[int, Field(ge=1)]``,
``Literal[...]``) and pydantic enforces them: each override is coerced to its field's type
as it is set (``"1e6"`` -> 1000000, ``"A,B"`` -> ("A", "B"), ``"null"`` -> None), and
:func:`validate_config` re-validates a whole config, then checks the rules that relate
several keys. Every message names the full dotted key and the bad value. The configs stay
plain dataclasses (``dataclasses.fields``/``replace`` work; constructing one checks
nothing), so a config may pass through invalid states while it is being edited.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
)
from pydantic.fields import FieldInfo

from fastrl.config_types import (
    SECTION_RULES,
    TYPE_WORDS,
    ConfigError,
    Count,
    FeatureSets,
    Flag,
    Fraction,
    Int,
    MaybeFlag,
    MaybePositive,
    NonNegative,
    Points,
    Positive,
    Preset,
    Rule,
    Steps,
    integer_text,
    listify,
    none_word,
    schedule_points,
)
from fastrl.env_config import EnvConfig
from fastrl.features_long import DEFAULT_FEATURE_SETS
from fastrl.presets import DEFAULT_PRESET, PRESETS
from fastrl.rule_params import RuleSettings


def _default_env_config() -> EnvConfig:
    # the training reward prices turnover in proportion to the cost model (env_config's
    # TURNOVER_COST_MULTIPLE, chosen on validation); the env alone keeps 0
    return EnvConfig(turnover_penalty=None)


def _check_env(env: Any) -> Any:
    """The ``env`` section: the trainer's own limits on it, then the env's validate()."""
    if not isinstance(env, EnvConfig):
        raise ConfigError(f"config key 'env' needs an EnvConfig, got {env!r}")
    for name in ENV_FIELD_TYPES:
        _coerce(f"env.{name}", _field("env", name), getattr(env, name))
    try:
        env.validate()
    except ValueError as err:
        raise ConfigError(f"invalid env config: {err}") from None
    return env


if TYPE_CHECKING:
    EnvSection = EnvConfig
else:  # the env's dataclass validates itself (EnvConfig.validate); pydantic hands it over
    EnvSection = Annotated[Any, PlainValidator(_check_env)]

# The trainer's limits on env keys (the rest coerce by EnvConfig's own annotations).
ENV_FIELD_TYPES: dict[str, Any] = {
    "window": Count,
    "episode_length": Steps,
    "action": Literal["discrete", "continuous"],
    # per side, bps of notional; None: the cost preset's default (fastrl.costs)
    "half_spread_bps": Annotated[NonNegative | None, BeforeValidator(none_word)],
    "slippage_bps": Annotated[NonNegative | None, BeforeValidator(none_word)],
}


# Validation by default: enough days that a Sharpe on them means something (daily: about half
# a year, SE of an annualised Sharpe ~1.4; 5-minute: 20 sessions = 1,500 bars), few enough
# that the training years stay long.
DEFAULT_VAL_DAYS = {"1d": 120, "5min": 20}


def resolve_defaults(config: TrainConfig) -> TrainConfig:
    """Fill the values whose default depends on others (data.val_days on data.freq)."""
    if config.data.val_days is None:
        config.data.val_days = DEFAULT_VAL_DAYS.get(config.data.freq, 0)
    return config


Symbols = Annotated[tuple[str, ...], BeforeValidator(listify), Field(min_length=1),
                    Rule("must name at least one symbol")]


@dataclass
class DataConfig:
    """Which bars to train on, and how they are split by time."""

    __pydantic_config__ = SECTION_RULES

    symbols: Symbols = ("BPCL", "HDFCLIFE")
    freq: Literal["1d", "5min"] = "1d"
    test_days: Annotated[Int, Field(ge=1), Rule(
        "must be >= 1: fastrl always holds out test days for an honest backtest")] = 30
    """Last trading days of each symbol held out for the final backtest."""
    val_days: Annotated[Steps | None, BeforeValidator(none_word)] = None
    """Trading days before the test slice for validation, early stopping and the choice of the
    best checkpoint. None: DEFAULT_VAL_DAYS for the bar size (120 days of daily bars, 20
    sessions of 5-minute bars); 0 turns validation off."""
    source: Annotated[str, Field(min_length=1), Rule("must be bundled, synthetic or a path")] = (
        "bundled")  # "bundled", "synthetic" (planted-signal market) or a data path
    synthetic_bars: Count = 3000  # bars per symbol when source == "synthetic"
    synthetic_signal_strength: Annotated[float, Field(ge=0, lt=1)] = 0.1
    """corr(signal_t, return_t+1) of the planted market."""
    synthetic_seed: Annotated[Int | None, BeforeValidator(none_word)] = None
    """Seed of the synthetic bars; None: the run's seed."""
    repair_ticks: Flag = False
    """False: refuse bars with an isolated bad tick (an open, high or low far outside the
    closes around it; :mod:`fastrl.data.ticks`). True: clip each into that range and log
    every change (``--repair-ticks``)."""
    features: FeatureSets = DEFAULT_FEATURE_SETS
    """Feature sets the agent observes, in order (:mod:`fastrl.features_long`): base (the
    1-33-bar technical features), momentum, market, xs_rank."""


@dataclass
class PortfolioSettings:
    """The multi-asset portfolio env (``--portfolio``): one policy allocates over every symbol.

    Off (the default), each symbol is traded on its own by the single-symbol env. On, the
    symbols form one :class:`~fastrl.data.panel.PanelBlock` and the policy outputs weights
    on the simplex over the symbols and cash (:mod:`fastrl.ppo.simplex`). The settings the
    two envs share (window, episode_length, execution, cost, reward and its penalties,
    initial_cash, equity_floor, random_start) are read from ``env.*``; the keys below are
    the portfolio's own (see :class:`fastrl.env_config.PortfolioConfig`, which
    :func:`fastrl.markets.portfolio.portfolio_env_config` builds from both).
    """

    __pydantic_config__ = SECTION_RULES

    enabled: Flag = False
    max_weight: Fraction = 1.0  # cap on any one symbol's weight (the excess stays in cash)
    max_gross: Annotated[Fraction, Rule(
        "must lie in (0, 1] (the simplex policy holds no leverage)")] = 1.0
    """Cap on the sum of the symbol weights (<= 1: no borrowing)."""
    integer_shares: Flag = False  # round every order toward zero to whole shares
    trade_band: Annotated[float, Field(ge=0, lt=1)] = 0.0
    """Skip legs smaller than this fraction of equity."""

    def check_data(self, d: DataConfig) -> None:
        """The data a portfolio needs, when on: two or more distinct real symbols."""
        if not self.enabled:
            return
        _check(len(d.symbols) >= 2, "data.symbols",
               "must name at least two symbols for a portfolio (one symbol: drop --portfolio "
               "and trade it with env.action=continuous)", d.symbols)
        _check(len(set(d.symbols)) == len(d.symbols), "data.symbols",
               "must not repeat a symbol in a portfolio", d.symbols)
        _check(d.source != "synthetic", "data.source",
               "cannot be synthetic for a portfolio (the planted-signal market is single-symbol)",
               d.source)

    def check_anchor(self, action_mode: str, assets: int) -> None:
        """An anchored portfolio's untilted policy is its benchmark, equal weight bought and
        held, only where the caps hold equal weight: tilt_weights caps the policy's weights
        while the simulator's benchmark book and the ew_hold baseline buy 1/A uncapped."""
        if not self.enabled or action_mode != "anchored":
            return
        binding = [f"portfolio.max_weight {self.max_weight} is below 1/{assets}"
                   if 1.0 / assets > self.max_weight else None,
                   f"portfolio.max_gross {self.max_gross} is below 1"
                   if self.max_gross < 1 else None]
        binding = [b for b in binding if b]
        if binding:
            raise ConfigError(
                f"config key 'env.action_mode' 'anchored' tilts equal weight (1/{assets} in "
                f"each of the {assets} symbols), which the caps do not allow: "
                f"{' and '.join(binding)}; raise them, or set env.action_mode=absolute")


@dataclass
class TrainConfig:
    """Every hyperparameter of a training run. The defaults are the "fast" preset."""

    __pydantic_config__ = SECTION_RULES

    env: EnvSection = field(default_factory=_default_env_config)
    data: DataConfig = field(default_factory=DataConfig)
    portfolio: PortfolioSettings = field(default_factory=PortfolioSettings)
    # the classical rules' parameters (``rules.<rule>.<key>``; fastrl.rule_params), read
    # where a rule stands beside the agent; they never change how the agent trains
    rules: RuleSettings = field(default_factory=RuleSettings)
    preset: Preset = "fast"  # the preset these values started from (recorded, not re-applied)

    # Rollout
    total_timesteps: Count = 200_000  # env steps (all envs together) to train for
    num_envs: Count = 64  # parallel envs in the simulator
    num_steps: Count = 128  # steps per env per rollout; batch = num_envs * num_steps
    env_threads: Count = 1  # simulator worker threads

    # PPO update
    gamma: Fraction = 0.99
    gae_lambda: Annotated[float, Field(ge=0, le=1)] = 0.95
    n_epochs: Count = 20  # passes over each rollout (fewer if the KL stop fires)
    minibatch_size: Count = 2048  # must divide num_envs * num_steps
    vf_coef: NonNegative = 1.0
    max_grad_norm: Positive = 1.0
    target_kl: MaybePositive = 0.02  # stop the epoch loop when its last minibatch's KL exceeds it
    norm_adv: Flag = True  # normalise advantages per minibatch
    clip_vloss: Flag = False  # clip the value update around the old value (see clip_range_vf)
    clip_range_vf: MaybePositive = None  # value clip range; None: follow the clip_range schedule
    optimizer: Literal["adamw", "adam"] = "adamw"  # adamw: decoupled weight decay
    weight_decay: NonNegative = 1e-4
    adam_eps: Positive = 1e-5

    # Network
    hidden_sizes: Annotated[tuple[Count, ...], BeforeValidator(listify), Field(min_length=1),
                            Rule("must be a non-empty list of positive integers")] = (
        2048, 1024, 512, 256)
    shared_trunk: Flag = False  # one trunk for actor and critic (half the compute)
    activation: Literal["tanh", "relu", "silu", "gelu"] = "tanh"
    log_std_init: float = -0.5  # initial log std of the Gaussian head (continuous actions)

    # Normalisation
    norm_obs: Flag = True  # running mean/var observation normalisation (saved with the model)
    obs_clip: Positive = 10.0
    norm_reward: Flag = True  # divide rewards by the running std of the discounted return
    reward_clip: Positive = 10.0

    # Schedules (functions of env steps)
    learning_rate: Positive = 1e-3  # peak learning rate
    lr_schedule: Literal["cosine", "constant", "piecewise"] = "cosine"
    """cosine: linear warmup then cosine decay to lr_min; constant; piecewise: lr_points."""
    lr_warmup_steps: Steps = 10_000
    lr_min: NonNegative = 1e-5  # the cosine floor, reached at total_timesteps
    ent_coef: NonNegative = 0.1  # entropy coefficient at step 0 ...
    ent_coef_final: NonNegative = 0.01  # ... decayed linearly to this ...
    ent_coef_decay_steps: Steps = 50_000  # ... over this many env steps (0: constant final value)
    clip_range: Positive = 0.3
    clip_range_final: Positive = 0.1
    clip_range_decay_steps: Steps = 30_000
    # Piecewise-constant schedules [(env step, value), ...] (what population-based training
    # learned): the value of the last point at or before the step. lr_points is used when
    # lr_schedule is "piecewise"; non-empty ent_coef_points / clip_range_points replace the
    # linear decays above.
    lr_points: Annotated[Points, schedule_points(positive=True)] = ()
    ent_coef_points: Annotated[Points, schedule_points(positive=False)] = ()
    clip_range_points: Annotated[Points, schedule_points(positive=True)] = ()

    # Validation and early stopping (only when data.val_days > 0)
    val_every: Count = 1  # updates between validation backtests
    patience: Steps = 10  # validations without improvement before stopping; 0: never stop
    min_delta: NonNegative = 0.0  # improvement in validation Sharpe that resets the patience

    # Run
    seed: Int = 0
    ensemble: Count = 1
    """Seeds trained side by side as one population (members seeded seed, seed + 1, ...);
    the deployed policy acts with the mean of their exposures (fastrl.ppo.ensemble). 1: one
    policy, exactly the single-seed run."""
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda|cuda:.+)$"),
                      Rule("must be auto, cpu, cuda or cuda:N")] = "auto"
    """"auto" (CUDA if available), "cpu", "cuda" or "cuda:N"."""
    compile: MaybeFlag = None  # torch.compile the policy and loss; None: on for CUDA only
    amp: MaybeFlag = None  # bf16 autocast; None: on for CUDA and for CPUs with native bf16
    # (AVX512-BF16/AMX), off elsewhere: bench/convergence.py --quick --amp learned the same
    # (validation Sharpe medians within 0.04 of fp32 over 5 seeds), see ppo.update.default_amp
    torch_threads: Steps = 0  # CPU threads for torch; 0: every core
    run_dir: str = ""  # run folder; "" -> runs/<run_name>
    run_name: str = ""  # "" -> <preset>-<symbols>-<timestamp>
    checkpoint_every: Count = 10  # updates between checkpoints/last.pt (also written at the end)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps


if set(PRESETS) != set(typing.get_args(Preset)):
    raise RuntimeError("config.Preset must list exactly the names in PRESETS")


# --------------------------------------------------------------------------- coercion

SECTIONS = ("env", "data", "portfolio")
RULES_SECTION = "rules"  # keys three deep: rules.<rule>.<key> (RuleSettings.set)
# Settings of the one-field validators an override goes through as it is set.
FIELD_RULES = ConfigDict(allow_inf_nan=False)
# Errors that break a field's stated range or choices: the message says the requirement.
_REQUIREMENT_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal",
                       "literal_error", "string_pattern_mismatch", "too_short", "too_long"}


def _section_class(section: str | None) -> type:
    if section == "env":
        return EnvConfig
    return {"data": DataConfig, "portfolio": PortfolioSettings, None: TrainConfig}[section]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _union_args(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) \
        else (hint,)


def _env_hint(name: str) -> Any:
    """An env key's type: the trainer's limits (ENV_FIELD_TYPES), else EnvConfig's own
    annotation where it is made of plain types (a cost model or other object is handed to
    EnvConfig.validate unchanged)."""
    if name in ENV_FIELD_TYPES:
        return ENV_FIELD_TYPES[name]
    hint = _hints(EnvConfig)[name]
    args = _union_args(hint)
    scalars = (int, float, str, bool, type(None))
    tuples = [a for a in args if typing.get_origin(a) is tuple]
    if not all(a in scalars or a in tuples for a in args) or not all(
            x in scalars or x is Ellipsis for t in tuples for x in typing.get_args(t)):
        return Any
    extras: list[Any] = []
    if type(None) in args:
        extras.append(BeforeValidator(none_word))
    if tuples:
        extras.append(BeforeValidator(listify))
    if int in args and float not in args:
        extras.append(BeforeValidator(integer_text))
    return Annotated[(hint, *extras)] if extras else hint


@functools.cache
def _field(section: str | None, name: str) -> tuple[Any, TypeAdapter]:
    """A key's annotated type and the pydantic validator built from it."""
    hint = _env_hint(name) if section == "env" else _hints(_section_class(section))[name]
    return hint, TypeAdapter(hint, config=FIELD_RULES)


def _split(hint: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, a, b]`` -> (T, [a, b]); anything else -> (it, [])."""
    if typing.get_origin(hint) is Annotated:
        base, *meta = typing.get_args(hint)
        return base, meta
    return hint, []


def _requirement(hint: Any) -> str:
    """What a field must be, in words: its Rule, else from its Literal choices or bounds."""
    base, meta = _split(hint)
    rules = [m for m in meta if isinstance(m, Rule)]
    if rules:
        return rules[0].text
    args = []
    for arg in _union_args(base):  # Optional[Annotated[float, Field(gt=0)]]: its bounds too
        arg, inner = _split(arg)
        args.append(arg)
        meta += inner
    suffix = " or null" if type(None) in args else ""
    choices = [c for a in args if typing.get_origin(a) is Literal for c in typing.get_args(a)]
    if choices:
        words = [str(c) for c in choices]
        return "must be " + (", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1
                             else words[0]) + suffix
    bounds: dict[str, Any] = {}
    for m in meta:
        for c in (m.metadata if isinstance(m, FieldInfo) else [m]):
            for attr in ("gt", "ge", "lt", "le"):
                if getattr(c, attr, None) is not None:
                    bounds[attr] = getattr(c, attr)
    low = ("(", bounds["gt"]) if "gt" in bounds else ("[", bounds["ge"]) if "ge" in bounds \
        else None
    high = (bounds["lt"], ")") if "lt" in bounds else (bounds["le"], "]") if "le" in bounds \
        else None
    if low and high:
        return f"must lie in {low[0]}{low[1]}, {high[0]}{high[1]}" + suffix
    if low:
        return f"must be {'>' if low[0] == '(' else '>='} {low[1]}" + suffix
    if high:
        return f"must be {'<' if high[1] == ')' else '<='} {high[0]}" + suffix
    return "is invalid" + suffix


def _config_error(error: dict[str, Any], key: str, hint: Any, value: Any) -> ConfigError:
    """One pydantic error -> ConfigError naming the dotted key and the value as given."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "value_error" and isinstance(ctx.get("error"), ConfigError):
        return ctx["error"]
    if kind == "config_rule":
        words = error["msg"]
    elif kind in _REQUIREMENT_ERRORS or (error["loc"] and any(
            isinstance(m, Rule) for m in getattr(hint, "__metadata__", ()))):
        words = _requirement(hint)  # a bad item of a list: say what the list must be
    else:
        words = TYPE_WORDS.get(kind, f"is invalid ({error['msg']})")
    return ConfigError(f"config key {key!r} {words}, got {value!r}")


def _coerce(key: str, field_: tuple[Any, TypeAdapter], value: Any) -> Any:
    hint, adapter = field_
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise _config_error(exc.errors(include_url=False)[0], key, hint, value) from None


def _target(config: TrainConfig, dotted_key: str) -> tuple[Any, str | None, str]:
    """The object a dotted key lives on, its section (None: top level) and its field name."""
    parts = dotted_key.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] not in SECTIONS):
        raise ConfigError(f"unknown config key {dotted_key!r}")
    section = parts[0] if len(parts) == 2 else None
    name = parts[-1]
    target = getattr(config, section) if section else config
    names = sorted(f.name for f in dataclasses.fields(target))
    if name not in names or (section is None and name in (*SECTIONS, RULES_SECTION)):
        known = ([f"{section}.{n}" for n in names] if section else
                 [n for n in names if n not in (*SECTIONS, RULES_SECTION)]
                 + [f"{g}.*" for g in sorted(SECTIONS)] + ["rules.<rule>.*"])
        raise ConfigError(f"unknown config key {dotted_key!r}; known keys: {', '.join(known)}")
    return target, section, name


def _flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    """``{"env": {"window": 16}}`` -> ``{"env.window": 16}`` (only the sections nest)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        full = f"{prefix}{key}".strip()
        if isinstance(value, dict) and not prefix and key in SECTIONS:
            flat.update(_flatten(value, full + "."))
        elif isinstance(value, dict) and not prefix and key == RULES_SECTION:
            for rule, params in value.items():  # rules: {momentum: {lookback: 126}}
                if not isinstance(params, dict):
                    raise ConfigError(f"config key 'rules.{rule}' needs a mapping of the "
                                      f"rule's keys to values, got {params!r}")
                flat.update({f"rules.{rule}.{k}": v for k, v in params.items()})
        else:
            flat[full] = value
    return flat


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Set (possibly nested or dotted) keys on ``config`` in place, each coerced to its
    field's type and range first (ConfigError naming the key); returns it."""
    for key, value in _flatten(overrides).items():
        if key.startswith(RULES_SECTION + "."):
            config.rules.set(key[len(RULES_SECTION) + 1:], value)
            continue
        target, section, name = _target(config, key)
        setattr(target, name, _coerce(key, _field(section, name), value))
    return config


def _parse_scalar(text: str) -> Any:
    """A ``--set`` value: YAML scalars and lists (``16``, ``true``, ``[64, 64]``, ``null``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_set_options(items: list[str]) -> dict[str, Any]:
    """``["env.window=16", "hidden_sizes=[64,64]"]`` -> ``{"env.window": 16, ...}``."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set needs key=value, got {item!r}")
        overrides[key.strip()] = _parse_scalar(text)
    return overrides


def preset_config(name: str = DEFAULT_PRESET) -> TrainConfig:
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

    A ``preset`` key inside the file applies when no preset is passed explicitly, and
    :data:`fastrl.presets.DEFAULT_PRESET` when neither names one.
    """
    file_values = load_config_file(config_file) if config_file else {}
    file_values = dict(file_values)
    file_preset = file_values.pop("preset", None)
    config = preset_config(preset or file_preset or DEFAULT_PRESET)
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


@functools.cache
def _config_adapter() -> TypeAdapter:
    return TypeAdapter(TrainConfig)


def _check(condition: bool, key: str, requirement: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"config key {key!r} {requirement}, got {value!r}")


def validate_config(config: TrainConfig) -> None:
    """Raise ConfigError naming the first invalid key: every field against its annotated
    type and range (pydantic), then the rules that relate several keys."""
    try:
        _config_adapter().validate_python(config)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        names = [part for part in error["loc"] if isinstance(part, str)]
        section = names[0] if len(names) > 1 and names[0] in SECTIONS else None
        name = names[1] if section else names[0] if names else ""
        if not name:
            raise ConfigError(f"invalid config: {error['msg']}") from None
        owner = getattr(config, section) if section else config
        hint = _field(section, name)[0] if section != "env" else Any
        raise _config_error(error, f"{section}.{name}" if section else name, hint,
                            getattr(owner, name, None)) from None
    c = config
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
    _check(c.lr_min <= c.learning_rate, "lr_min", "must lie in [0, learning_rate]", c.lr_min)
    _check(c.lr_schedule != "piecewise" or bool(c.lr_points), "lr_points",
           "must list [step, value] points when lr_schedule is piecewise", c.lr_points)
    c.portfolio.check_data(c.data)
    e = c.env
    c.portfolio.check_anchor(e.action_mode, len(c.data.symbols))
    if e.action == "discrete":
        _check(len(e.position_levels) >= 2, "env.position_levels",
               "must hold at least two levels", e.position_levels)
    else:
        _check(e.min_pos < e.max_pos, "env.min_pos", "must be below env.max_pos", e.min_pos)


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
    result["rules"] = config.rules.to_dict()
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
