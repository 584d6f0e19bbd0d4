"""A study's settings: what every process of a study must agree on (recorded with it).

:class:`ConfirmationSettings` holds what the confirmation reads (the layout of the
confirmation window, the seeds, the objective and the validation grid); PBT's replay builds
one. :class:`StudySettings` adds the search's own keys. Defaults are those a study recorded
before the key existed, so every recorded study still reads.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from fastrl.tune.objective import OBJECTIVES
from fastrl.typed_settings import Settings

# a study's objectives: the validation curve's (OBJECTIVES) or the walk-forward record's
STUDY_OBJECTIVES = (*OBJECTIVES, "walkforward")
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
    objective: Literal[STUDY_OBJECTIVES] = "excess"  # type: ignore[valid-type]
    # the walk-forward objective: trials trade only the windows that end before this day
    select_until: str | None = None
    # ... of this walk-forward (a resolved fastrl.walkforward.plan.WalkForwardSpec, asdict)
    walkforward: dict[str, Any] | None = Field(default=None, validate_default=True)
    wf_chunks: Count | None = None  # pruning points of a walk-forward trial (None: 4)

    @field_validator("select_until")
    @classmethod
    def _iso_day(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                datetime.date.fromisoformat(value)
            except ValueError:
                raise ValueError("must be a date YYYY-MM-DD") from None
        return value

    @field_validator("walkforward")
    @classmethod
    def _with_walkforward(cls, value: dict[str, Any] | None, info: ValidationInfo
                          ) -> dict[str, Any] | None:
        walkforward = info.data.get("objective") == "walkforward"
        if walkforward != (value is not None) or walkforward != (
                info.data.get("select_until") is not None):
            raise ValueError("is set with select_until for the walkforward objective, and "
                             "only then")
        return value


__all__ = ["STUDY_OBJECTIVES", "ConfirmationSettings", "StudySettings"]
