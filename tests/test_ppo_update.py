"""The clipped PPO update: lowers the surrogate loss on a fixed batch, KL stop, heads."""

from __future__ import annotations

import pytest
import torch

from fastrl.ppo.network import ActorCritic
from fastrl.ppo.update import PPOLoss, make_optimizer, ppo_update


def fixed_batch(agent: ActorCritic, n: int = 256, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, agent.obs_dim, generator=generator)
    with torch.no_grad():
        actions, logprobs, values = agent.act(obs)
    advantages = torch.randn(n, generator=generator)
    return {"obs": obs, "actions": actions, "logprobs": logprobs, "values": values,
            "advantages": advantages, "returns": values + advantages}


VF = torch.tensor(0.5)


def loss_on(loss_fn: PPOLoss, batch, clip, ent, vf=VF, vclip=None) -> tuple[float, float]:
    with torch.no_grad():
        loss, stats = loss_fn(batch["obs"], batch["actions"], batch["logprobs"],
                              batch["advantages"], batch["returns"], batch["values"], clip, ent,
                              vf, clip if vclip is None else vclip)
    return float(loss), float(stats[0])


@pytest.mark.parametrize("num_actions", [3, 0])
def test_update_lowers_the_surrogate_loss(num_actions):
    torch.manual_seed(0)
    agent = ActorCritic(8, num_actions, (32, 32))
    batch = fixed_batch(agent)
    loss_fn = PPOLoss(agent)
    clip, ent = torch.tensor(0.2), torch.tensor(0.0)
    before_loss, before_policy = loss_on(loss_fn, batch, clip, ent)
    assert before_policy == pytest.approx(-float(
        ((batch["advantages"] - batch["advantages"].mean()) / batch["advantages"].std()).mean()
    ), abs=1e-5)  # ratio 1 on the data's own policy
    lr = torch.tensor(3e-3)
    optimizer = make_optimizer(list(agent.parameters()), "adamw", lr, 0.0, 1e-5,
                               torch.device("cpu"))
    result = ppo_update(loss_fn, optimizer, list(agent.parameters()), batch, n_epochs=4,
                        minibatch_size=64, max_grad_norm=1.0, target_kl=None, clip_range=clip,
                        ent_coef=ent, vf_coef=VF)
    after_loss, after_policy = loss_on(loss_fn, batch, clip, ent)
    assert result.epochs == 4 and result.minibatches == 16
    assert after_policy < before_policy - 0.01
    assert after_loss < before_loss
    assert result.stats["approx_kl"] >= 0.0
    assert 0.0 <= result.stats["clipfrac"] <= 1.0


def test_target_kl_stops_the_epoch_loop():
    torch.manual_seed(1)
    agent = ActorCritic(8, 3, (32, 32))
    batch = fixed_batch(agent)
    loss_fn = PPOLoss(agent)
    optimizer = make_optimizer(list(agent.parameters()), "adam", torch.tensor(5e-2), 0.0, 1e-5,
                               torch.device("cpu"))
    common = dict(n_epochs=10, minibatch_size=32, max_grad_norm=10.0,
                  clip_range=torch.tensor(0.2), ent_coef=torch.tensor(0.0), vf_coef=VF)
    stopped = ppo_update(loss_fn, optimizer, list(agent.parameters()), batch, target_kl=1e-4,
                         **common)
    assert stopped.epochs < 10
    # a loose target lets every epoch run
    agent2 = ActorCritic(8, 3, (32, 32))
    optimizer2 = make_optimizer(list(agent2.parameters()), "adam", torch.tensor(1e-5), 0.0,
                                1e-5, torch.device("cpu"))
    full = ppo_update(PPOLoss(agent2), optimizer2, list(agent2.parameters()),
                      fixed_batch(agent2), target_kl=10.0, **common)
    assert full.epochs == 10


def test_minibatch_size_must_divide_the_batch():
    agent = ActorCritic(4, 2, (8,))
    batch = fixed_batch(agent, n=10)
    optimizer = make_optimizer(list(agent.parameters()), "adam", torch.tensor(1e-3), 0.0, 1e-5,
                               torch.device("cpu"))
    with pytest.raises(ValueError, match="minibatch_size 4"):
        ppo_update(PPOLoss(agent), optimizer, list(agent.parameters()), batch, n_epochs=1,
                   minibatch_size=4, max_grad_norm=1.0, target_kl=None,
                   clip_range=torch.tensor(0.2), ent_coef=torch.tensor(0.0), vf_coef=VF)


def test_value_clipping_limits_the_value_loss_gradient():
    torch.manual_seed(2)
    agent = ActorCritic(4, 2, (16,))
    batch = fixed_batch(agent, n=64)
    batch["returns"] = batch["values"] + 100.0
    clip, ent = torch.tensor(0.2), torch.tensor(0.0)
    plain = PPOLoss(agent, clip_vloss=False)
    clipped = PPOLoss(agent, clip_vloss=True)
    # at the old values both agree
    assert loss_on(plain, batch, clip, ent)[0] == pytest.approx(loss_on(clipped, batch, clip,
                                                                         ent)[0], rel=1e-5)
    # moving every value 50 towards the returns helps the plain loss; the clipped one only
    # credits the first 0.2 of that move
    with torch.no_grad():
        agent.value_head.bias += 50.0
    plain_after = loss_on(plain, batch, clip, ent)[0]
    clipped_after = loss_on(clipped, batch, clip, ent)[0]
    assert clipped_after > plain_after + 1000.0
    # the value clip range is its own value: a wide one credits the whole move
    wide = loss_on(clipped, batch, clip, ent, vclip=torch.tensor(1000.0))[0]
    assert wide == pytest.approx(plain_after, rel=1e-6)
    assert loss_on(clipped, batch, clip, ent, vclip=torch.tensor(0.2))[0] == clipped_after


class ScriptedKL(torch.nn.Module):
    """A loss whose minibatch approx_kl values are scripted: tests the stopping rule alone."""

    def __init__(self, kls: list[float]) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.kls = iter(kls)

    def forward(self, obs, *_):
        kl = next(self.kls)
        return self.weight * 0.0 + obs.sum() * 0.0, torch.tensor([0.0, 0.0, 0.0, kl, 0.0])


def test_target_kl_rule_reads_the_last_minibatch_of_the_epoch():
    batch = {k: torch.zeros(4) for k in ("actions", "logprobs", "advantages", "returns",
                                         "values")}
    batch["obs"] = torch.zeros(4, 1)
    common = dict(n_epochs=5, minibatch_size=2, max_grad_norm=1.0, target_kl=0.1,
                  clip_range=torch.tensor(0.2), ent_coef=torch.tensor(0.0), vf_coef=VF)

    def run(kls):
        loss = ScriptedKL(kls)
        optimizer = torch.optim.SGD(loss.parameters(), lr=0.1)
        return ppo_update(loss, optimizer, list(loss.parameters()), batch, **common).epochs

    # epoch 1: a large KL on the first minibatch but a small last one: CleanRL goes on
    assert run([0.5, 0.01, 0.01, 0.2] + [0.0] * 6) == 2
    # the epoch mean (0.105) exceeds the target, the last minibatch (0.01) does not
    assert run([0.2, 0.01] * 5) == 5


def test_weight_decay_spares_biases_and_log_std():
    agent = ActorCritic(4, 0, (8,))
    params = list(agent.parameters())
    optimizer = make_optimizer(params, "adamw", torch.tensor(0.1), 0.5, 1e-5,
                               torch.device("cpu"))
    with torch.no_grad():
        for p in params:
            p.fill_(1.0)
    before = {name: p.detach().clone() for name, p in agent.named_parameters()}
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()  # a zero gradient: only the decoupled decay moves anything
    for name, p in agent.named_parameters():
        if p.ndim >= 2:
            assert torch.all(p < before[name]), name
        else:
            assert torch.equal(p, before[name]), name


@pytest.mark.parametrize("num_actions", [3, 0])
def test_bf16_heads_run_in_fp32_so_the_first_ratio_is_one(num_actions):
    from fastrl.ppo.update import autocast_context

    agent = ActorCritic(32, num_actions, (256, 256), generator=torch.Generator().manual_seed(0))
    obs = torch.randn(512, 32, generator=torch.Generator().manual_seed(1)) * 3
    cpu = torch.device("cpu")
    with torch.no_grad():
        with autocast_context(cpu, True):
            policy_out, _ = agent(obs)  # the rollout's batch
        dist = agent.distribution(policy_out)
        actions = dist.sample()
        logprobs = dist.log_prob(actions)
    with torch.no_grad(), autocast_context(cpu, True):
        index = torch.randperm(512, generator=torch.Generator().manual_seed(2))[:64]
        new_logprobs, _, _ = agent.evaluate(obs[index], actions[index])  # one minibatch
        assert agent(obs)[0].dtype == torch.float32
    ratio = (new_logprobs - logprobs[index]).exp()
    assert float((ratio - 1).abs().max()) < 1e-3


def test_heads_shapes_init_and_deterministic_actions():
    torch.manual_seed(3)
    discrete = ActorCritic(6, 3, (16, 16), shared_trunk=True)
    obs = torch.randn(5, 6)
    action, logprob, value = discrete.act(obs)
    assert action.shape == (5,) and action.dtype == torch.int64
    assert logprob.shape == (5,) and value.shape == (5,)
    # policy head init gain 0.01 gives a near-uniform policy
    probs = discrete.distribution(discrete(obs)[0]).probs
    assert torch.allclose(probs, torch.full_like(probs, 1 / 3), atol=0.02)
    assert discrete.critic_trunk is None
    continuous = ActorCritic(6, 0, (16,), log_std_init=-1.0)
    mean_action, _, _ = continuous.act(obs, deterministic=True)
    assert mean_action.shape == (5,)
    assert torch.equal(mean_action, continuous(obs)[0].squeeze(-1))
    std = continuous.distribution(continuous(obs)[0]).stddev
    assert torch.allclose(std, torch.full_like(std, torch.e ** -1.0))
    with pytest.raises(ValueError, match="activation"):
        ActorCritic(6, 3, (4,), activation="sigmoidal")


@pytest.mark.precision
def test_bf16_is_the_default_only_where_it_is_native(request):
    from fastrl.ppo.update import default_amp

    assert default_amp(torch.device("cuda")) is True
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    # --default-amp on/off (tests/conftest.py) stands in for a CPU with or without it
    forced = {"on": True, "off": False}.get(request.config.getoption("--default-amp"))
    assert default_amp(torch.device("cpu")) is (native if forced is None else forced)
