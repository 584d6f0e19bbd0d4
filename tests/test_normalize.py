"""Running statistics: batch by batch equals the moments of everything at once."""

import numpy as np
import pytest
import torch

from fastrl.ppo.normalize import ObservationNormaliser, RunningMeanStd


@pytest.mark.parametrize("members", [None, 3])
def test_running_moments_equal_the_moments_of_all_batches(members):
    rng = np.random.default_rng(7)
    lead = () if members is None else (members,)
    # uneven batch sizes, a large offset (where a one-pass sum of squares loses digits)
    batches = [rng.normal(50.0, 2.0, size=lead + (rows, 4)).astype(np.float32)
               for rows in (5, 64, 1, 300)]
    stats = RunningMeanStd((4,), epsilon=0.0, members=members)
    for batch in batches:
        stats.update(torch.from_numpy(batch))
    axis = 0 if members is None else 1
    everything = np.concatenate(batches, axis=axis).astype(np.float64)
    np.testing.assert_allclose(stats.mean.numpy(), everything.mean(axis), rtol=1e-6)
    np.testing.assert_allclose(stats.var.numpy(), everything.var(axis), rtol=1e-4)
    np.testing.assert_array_equal(stats.count.numpy(), np.full(lead, 370.0))


def test_normaliser_state_dict_holds_no_scratch():
    normaliser = ObservationNormaliser(4, members=2)
    normaliser.update(torch.randn(2, 8, 4))
    assert set(normaliser.state_dict()) == {"shift", "scale", "stats.mean", "stats.var",
                                            "stats.count"}
