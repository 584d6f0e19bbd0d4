"""A walk-forward run's settings: the command's flags, recorded as ``walkforward.json``.

``--resume DIR`` reads them back; a key a run recorded before it existed takes the flag's
default. Values are typed here (a bad one is a ConfigError naming the key); their ranges are
checked where they are used (:meth:`fastrl.walkforward.plan.WalkForwardSpec.resolved`,
:func:`fastrl.walkforward.run.check_run_arguments`), whose messages name the flag.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from fastrl.typed_settings import Settings
from fastrl.walkforward.plan import DEFAULT_STEP


class WalkForwardSettings(Settings):
    """fastrl-walkforward's flags as one run records them (None: the config's value)."""

    label: ClassVar[str] = "walk-forward setting"

    # data and config, as fastrl-train
    symbols: list[str] | None = None
    portfolio: bool = False
    freq: Literal["1d", "5min"] | None = None
    data: str | None = None  # a source word or a file/folder path (absolute)
    test_days: int | None = None
    through_test: bool = False
    preset: str | None = None
    # the preset a config without one started from when the run began: a run recorded
    # before the key existed began when fast was the default
    default_preset: str = "fast"
    config: str | None = None  # a preset name or a config file (absolute path)
    timesteps: int | None = None
    num_envs: int | None = None
    seed: int | None = None
    device: str | None = None
    # the walk-forward protocol
    start: str | None = None
    step: int = DEFAULT_STEP
    train_window: str | int | None = "expanding"  # "expanding" or a number of days
    val_days: int | None = None
    embargo: int | None = None
    min_train_days: int | None = None
    late_listings: Literal["error", "join"] = "error"
    warm_start: bool = False
    compare: list[str] | None = None  # presets or config files (absolute paths)
    seeds: int = 1
    ensemble: int | None = None  # members per window (config key ensemble)
    workers: int  # processes training windows at once
    threads: int = 1  # torch threads per window
    # how windows train (results are the same either way): a run recorded before the key
    # existed trained each window alone and resumes as auto (the population)
    engine: Literal["auto", "population", "pool"] = "auto"
    max_members: int | None = None  # windows per population (None: sized to the memory)
    repair_ticks: bool = False
    set_options: list[str] = Field(default_factory=list)  # --set KEY=VALUE, every config


__all__ = ["WalkForwardSettings"]
