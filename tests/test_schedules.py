"""Schedules give the specified values at step 0, the warmup end, midpoints and ends."""

from __future__ import annotations

import math

import pytest
import torch

from fastrl.ppo.schedules import (
    ScheduleSpec,
    ScheduleTensors,
    linear_schedule,
    warmup_cosine_schedule,
)


def fast_spec(**changes) -> ScheduleSpec:
    values = dict(
        learning_rate=1e-3, lr_schedule="cosine", lr_warmup_steps=10_000, lr_min=1e-5,
        total_timesteps=110_000, ent_coef=0.1, ent_coef_final=0.01, ent_coef_decay_steps=50_000,
        clip_range=0.3, clip_range_final=0.1, clip_range_decay_steps=30_000,
    )
    values.update(changes)
    return ScheduleSpec(**values)


def test_entropy_coefficient_decays_from_0_1_to_0_01_over_50k_steps():
    spec = fast_spec()
    assert spec.ent_coef_at(0) == pytest.approx(0.1)
    assert spec.ent_coef_at(25_000) == pytest.approx(0.055)
    assert spec.ent_coef_at(50_000) == pytest.approx(0.01)
    assert spec.ent_coef_at(1_000_000) == pytest.approx(0.01)


def test_clip_range_decays_from_0_3_to_0_1_over_30k_steps():
    spec = fast_spec()
    assert spec.clip_range_at(0) == pytest.approx(0.3)
    assert spec.clip_range_at(15_000) == pytest.approx(0.2)
    assert spec.clip_range_at(30_000) == pytest.approx(0.1)
    assert spec.clip_range_at(40_000) == pytest.approx(0.1)


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    spec = fast_spec()
    assert spec.learning_rate_at(0) == 0.0
    assert spec.learning_rate_at(5_000) == pytest.approx(5e-4)
    assert spec.learning_rate_at(10_000) == pytest.approx(1e-3)
    # halfway through the decay the cosine is at the mean of peak and floor
    assert spec.learning_rate_at(60_000) == pytest.approx((1e-3 + 1e-5) / 2)
    quarter = 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi / 4))
    assert spec.learning_rate_at(35_000) == pytest.approx(quarter)
    assert spec.learning_rate_at(110_000) == pytest.approx(1e-5)
    assert spec.learning_rate_at(500_000) == pytest.approx(1e-5)


def test_learning_rate_is_monotone_after_warmup():
    spec = fast_spec()
    values = [spec.learning_rate_at(s) for s in range(10_000, 110_001, 1_000)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_constant_schedules_for_the_baseline_preset():
    spec = fast_spec(lr_schedule="constant", learning_rate=1e-4, ent_coef=0.01,
                     ent_coef_decay_steps=0, clip_range=0.2, clip_range_final=0.2,
                     clip_range_decay_steps=0)
    for step in (0, 10_000, 60_000, 10**7):
        assert spec.learning_rate_at(step) == pytest.approx(1e-4)
        assert spec.ent_coef_at(step) == pytest.approx(0.01)
        assert spec.clip_range_at(step) == pytest.approx(0.2)


def test_pure_helpers_edge_cases():
    assert linear_schedule(10, 1.0, 0.0, 0) == 0.0
    assert linear_schedule(-5, 1.0, 0.0, 10) == 1.0
    # a run that ends inside the warmup keeps the peak after the warmup
    assert warmup_cosine_schedule(200, 1.0, 0.1, 100, 50) == 1.0
    # no warmup: the cosine starts at the peak
    assert warmup_cosine_schedule(0, 1.0, 0.1, 0, 100) == pytest.approx(1.0)


def test_schedule_tensors_are_updated_in_place():
    tensors = ScheduleTensors(fast_spec())
    lr, ent, clip = tensors.learning_rate, tensors.ent_coef, tensors.clip_range
    ids = (lr.data_ptr(), ent.data_ptr(), clip.data_ptr())
    values = tensors.set_step(15_000)
    assert (lr.data_ptr(), ent.data_ptr(), clip.data_ptr()) == ids
    assert float(clip) == pytest.approx(0.2)
    assert values["clip_range"] == pytest.approx(0.2)
    assert float(lr) == pytest.approx(fast_spec().learning_rate_at(15_000), rel=1e-6)
    assert lr.dtype == torch.float32 and lr.dim() == 0
    restored = ScheduleTensors(fast_spec())
    restored.load_state_dict(tensors.state_dict())
    assert float(restored.ent_coef) == float(ent)
