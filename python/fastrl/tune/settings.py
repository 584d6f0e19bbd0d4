"""A study's settings: what every process of a study must agree on (recorded with it).

:class:`ConfirmationSettings` holds what the confirmation reads (the layout of the
confirmation window, the seeds, the objective and the validation grid); PBT's replay builds
one. :class:`StudySettings` adds the search's own keys. Defaults are those a study recorded
before the key existed, so every recorded study still reads.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from fastrl.tune.objective import OBJECTIVES
from fastrl.typed_settings import Settings

Count = Annotated[int, Field(ge=1)]
Days = Annotated[int, Field(ge=0)]


class ConfirmationSettings(Settings):
    """The data, layout, seeds, objective and validation grid of a confirmation."""

    label: ClassVar[str] = "study setting"

    symbols: list[str]
    freq: Literal["1d", "5min"]
    source: str = "bundled"
    val_days: Count
    test_days: Count
    timesteps: Count  # env steps per training run
    seeds: Count  # training seeds per trial and fold
    confirm_days: Days = 0  # 0: the confirmation runs on fold 0's validation window
    confirm_seeds: Count | None = None  # None: ``seeds``
    set_options: list[str] = Field(default_factory=list)  # --set KEY=VALUE, every config
    objective: Literal[OBJECTIVES] = "excess"  # type: ignore[valid-type]
    val_every: Count = 1  # validate after every N updates (with val_interval_steps 0)
    val_interval_steps: Days = 0  # > 0: validate every N env steps, one grid for all

    @property
    def confirmation_seeds(self) -> int:
        """Fresh seeds of each confirmed config."""
        return self.seeds if self.confirm_seeds is None else self.confirm_seeds


class StudySettings(ConfirmationSettings):
    """A study's settings: data, budget, seeds, folds, base config and search space."""

    folds: Count  # walk-forward validation folds
    base_preset: str
    sampler_seed: int | None = None  # None: TPE unseeded
    space: Any = None  # the search space as recorded (fastrl.tune.space.space_to_dict)
    select_until: str | None = None  # --objective walkforward: selection windows end before it
    walkforward: dict | None = None  # its WalkForwardSpec (dataclasses.asdict)


__all__ = ["ConfirmationSettings", "StudySettings"]
