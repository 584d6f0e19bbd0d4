"""Action heads: one per ActionSpec distribution, scoring as torch.distributions does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

from fastrl.config import build_config
from fastrl.markets import ActionSpec, market_for
from fastrl.ppo.heads import CategoricalHead, Draws, GaussianHead, SimplexHead, head_for


def test_head_for_follows_the_spec_distribution_not_the_market_kind():
    single = build_config("fast", None, {"data.symbols": ["A", "B"]}, [])
    continuous = build_config("fast", None, {"data.symbols": ["A"],
                                             "env.action": "continuous"}, [])
    portfolio = build_config("fast", None, {"data.symbols": ["A", "B"],
                                            "portfolio.enabled": True}, [])
    assert isinstance(head_for(market_for(single).action_spec()), CategoricalHead)
    assert isinstance(head_for(market_for(continuous).action_spec()), GaussianHead)
    head = head_for(market_for(portfolio).action_spec())
    assert isinstance(head, SimplexHead) and head.action_shape == (3,) and head.simplex == 3
    with pytest.raises(ValueError, match="dirichlet"):
        head_for(ActionSpec("dirichlet", 3))  # type: ignore[arg-type]


def _params(k: int) -> dict[str, torch.Tensor]:
    return {"log_std": torch.tensor([[-0.3, 0.2, -1.0][:k], [0.1, -0.5, 0.4][:k]])}


@pytest.mark.parametrize("spec", [ActionSpec("categorical", 3),
                                  ActionSpec("gaussian", 1, low=-0.1, high=0.3),
                                  ActionSpec("simplex", 3, max_weight=0.6)])
def test_heads_score_as_torch_distributions(spec):
    """Two members of four envs: the head's sampled log-probs and its loss log-probs and
    entropies are those of Categorical / Normal / Independent(Normal) on each member."""
    head = head_for(spec)
    gen = torch.Generator().manual_seed(0)
    width = 1 if spec.distribution == "gaussian" else 3
    policy_out = torch.randn((2, 4, width), generator=gen)
    params = _params(width)
    action, logprob = head.sample(policy_out, params, Draws(gen, None, 4))
    assert action.shape == (8, *head.action_shape)
    std = params["log_std"].exp().view(2, 1, -1)
    if spec.distribution == "categorical":
        dist = Categorical(logits=policy_out)
    elif spec.distribution == "gaussian":
        dist = Normal(policy_out.squeeze(-1), std.squeeze(-1).expand(2, 4))
    else:
        dist = Independent(Normal(policy_out, std.expand_as(policy_out)), 1)
    stored = action.view(2, 4, *head.action_shape)
    torch.testing.assert_close(logprob.view(2, 4), dist.log_prob(stored))
    loss_logprob, entropy = head.log_prob_entropy(policy_out, params, stored)
    torch.testing.assert_close(loss_logprob, dist.log_prob(stored))
    torch.testing.assert_close(entropy, dist.entropy())
    env = head.env_actions(head.greedy(policy_out.flatten(0, 1)))
    host = head.host_map(8)(action.to(torch.float64 if head.continuous else torch.int64)
                            .numpy().copy())
    for actions in (env, host):
        if spec.distribution == "categorical":
            assert actions.dtype == np.int64 and set(actions.ravel()) <= {0, 1, 2}
        elif spec.distribution == "gaussian":
            assert actions.dtype == np.float64 and actions.min() >= -0.1 and actions.max() <= 0.3
        else:  # long-only weights over the 2 symbols within the caps
            assert actions.shape[1] == 2 and actions.min() >= 0 and actions.max() <= 0.6


def test_member_draws_are_each_members_own_generator():
    """Independent members draw their rows from their own generators, as alone."""
    probs = torch.full((6, 3), 1 / 3)
    together = Draws(torch.Generator(), [torch.Generator().manual_seed(s) for s in (1, 2)], 3)
    alone = Draws(torch.Generator().manual_seed(2), None, 3)
    assert together.categorical(probs)[3:].tolist() == alone.categorical(probs[3:]).tolist()
