"""Hyperparameter schedules as pure functions of env steps, mirrored into in-place tensors.

The values are pure functions of the global env-step count, so a resumed run recomputes the
exact values of an uninterrupted one from its step count alone. The trainer keeps each value
in a 0-d tensor and updates it with ``fill_`` so a compiled loss (which takes the tensors as
inputs) never sees a new Python constant and never recompiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def linear_schedule(step: int, start: float, end: float, duration: int) -> float:
    """``start`` at step 0, ``end`` from ``duration`` on, linear in between.

    A duration of 0 (or less) means the value is ``end`` from the first step: a constant.
    """
    if duration <= 0 or step >= duration:
        return float(end)
    fraction = max(step, 0) / duration
    return float(start + (end - start) * fraction)


def piecewise_schedule(step: int, points: tuple[tuple[float, float], ...]) -> float:
    """The value of the last (step, value) point at or before ``step`` (points sorted)."""
    value = float(points[0][1])
    for at, point_value in points:
        if step < at:
            break
        value = float(point_value)
    return value


def warmup_cosine_schedule(
    step: int, peak: float, floor: float, warmup_steps: int, total_steps: int
) -> float:
    """Linear warmup from 0 to ``peak`` over ``warmup_steps``, then cosine decay to ``floor``
    at ``total_steps`` (and ``floor`` after it)."""
    if warmup_steps > 0 and step < warmup_steps:
        return float(peak * max(step, 0) / warmup_steps)
    decay_steps = total_steps - warmup_steps
    if decay_steps <= 0:
        return float(peak)  # the run ends inside the warmup: nothing left to decay
    if step >= total_steps:
        return float(floor)
    progress = (step - warmup_steps) / decay_steps
    return float(floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class ScheduleSpec:
    """What the three schedules need; built from a TrainConfig by :meth:`from_config`."""

    learning_rate: float
    lr_schedule: str  # "cosine" (warmup + cosine to lr_min) | "constant"
    lr_warmup_steps: int
    lr_min: float
    total_timesteps: int
    ent_coef: float
    ent_coef_final: float
    ent_coef_decay_steps: int
    clip_range: float
    clip_range_final: float
    clip_range_decay_steps: int
    vf_coef: float = 0.5
    clip_range_vf: float | None = None  # None: the value clip follows clip_range
    # piecewise-constant schedules (lr: lr_schedule "piecewise"; others: when non-empty)
    lr_points: tuple[tuple[float, float], ...] = ()
    ent_coef_points: tuple[tuple[float, float], ...] = ()
    clip_range_points: tuple[tuple[float, float], ...] = ()

    @classmethod
    def from_config(cls, config) -> ScheduleSpec:
        return cls(
            learning_rate=config.learning_rate,
            lr_schedule=config.lr_schedule,
            lr_warmup_steps=config.lr_warmup_steps,
            lr_min=config.lr_min,
            total_timesteps=config.total_timesteps,
            ent_coef=config.ent_coef,
            ent_coef_final=config.ent_coef_final,
            ent_coef_decay_steps=config.ent_coef_decay_steps,
            clip_range=config.clip_range,
            clip_range_final=config.clip_range_final,
            clip_range_decay_steps=config.clip_range_decay_steps,
            vf_coef=config.vf_coef,
            clip_range_vf=config.clip_range_vf,
            lr_points=tuple(map(tuple, getattr(config, "lr_points", ()))),
            ent_coef_points=tuple(map(tuple, getattr(config, "ent_coef_points", ()))),
            clip_range_points=tuple(map(tuple, getattr(config, "clip_range_points", ()))),
        )

    def learning_rate_at(self, step: int) -> float:
        if self.lr_schedule == "constant":
            return float(self.learning_rate)
        if self.lr_schedule == "cosine":
            return warmup_cosine_schedule(
                step, self.learning_rate, self.lr_min, self.lr_warmup_steps, self.total_timesteps
            )
        if self.lr_schedule == "piecewise":
            return piecewise_schedule(step, self.lr_points)
        raise ValueError("lr_schedule must be 'cosine', 'constant' or 'piecewise', "
                         f"got {self.lr_schedule!r}")

    def ent_coef_at(self, step: int) -> float:
        if self.ent_coef_points:
            return piecewise_schedule(step, self.ent_coef_points)
        return linear_schedule(step, self.ent_coef, self.ent_coef_final, self.ent_coef_decay_steps)

    def clip_range_at(self, step: int) -> float:
        if self.clip_range_points:
            return piecewise_schedule(step, self.clip_range_points)
        return linear_schedule(
            step, self.clip_range, self.clip_range_final, self.clip_range_decay_steps
        )

    def values_at(self, step: int) -> dict[str, float]:
        clip_range = self.clip_range_at(step)
        return {
            "learning_rate": self.learning_rate_at(step),
            "ent_coef": self.ent_coef_at(step),
            "clip_range": clip_range,
            "vf_coef": float(self.vf_coef),
            "clip_range_vf": clip_range if self.clip_range_vf is None else self.clip_range_vf,
        }


TENSOR_NAMES = ("learning_rate", "ent_coef", "clip_range", "vf_coef", "clip_range_vf")


class ScheduleTensors:
    """The current schedule values as 0-d float32 tensors on the training device.

    The optimiser holds ``learning_rate`` as its lr tensor and the compiled loss reads
    ``ent_coef``, ``clip_range``, ``vf_coef`` and ``clip_range_vf``; :meth:`set_step`
    refreshes them in place. :meth:`override` pins a value (population-based training
    sets each member's hyperparameters this way): it replaces the schedule from then on.
    """

    def __init__(self, spec: ScheduleSpec, device: torch.device | str = "cpu") -> None:
        self.spec = spec
        self.step = 0
        for name in TENSOR_NAMES:
            setattr(self, name, torch.zeros((), dtype=torch.float32, device=device))
        self.overrides: dict[str, float] = {}
        self.current: dict[str, float] = {}
        self.set_step(0)

    def set_step(self, step: int) -> dict[str, float]:
        """Move every schedule to ``step`` env steps; returns the values as floats."""
        self.step = int(step)
        self.current = {**self.spec.values_at(self.step), **self.overrides}
        for name in TENSOR_NAMES:
            getattr(self, name).fill_(self.current[name])
        return dict(self.current)

    def override(self, **values: float) -> dict[str, float]:
        """Pin the named values (see TENSOR_NAMES) from now on, in place (no recompile)."""
        unknown = sorted(set(values) - set(TENSOR_NAMES))
        if unknown:
            raise ValueError(f"unknown schedule value(s) {unknown}; known: {list(TENSOR_NAMES)}")
        self.overrides.update({k: float(v) for k, v in values.items()})
        return self.set_step(self.step)

    def state_dict(self) -> dict:
        return {"step": self.step, "values": dict(self.current), "overrides": dict(self.overrides)}

    def load_state_dict(self, state: dict) -> None:
        self.overrides = {k: float(v) for k, v in state.get("overrides", {}).items()}
        self.set_step(int(state["step"]))
