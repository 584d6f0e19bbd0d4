"""The clipped PPO objective, the target-KL rule, autocast, and a plain single-network loop.

:func:`clipped_objective` is the loss every PPO update in fastrl computes: the engine
(:class:`fastrl.ppo.population.Population`, which the Trainer runs with one member) calls it
on [P, minibatch] tensors, one loss per member. :class:`PPOLoss`, :func:`ppo_update` and
:func:`make_optimizer` are the textbook single-network loop (nn.Module, torch.optim, one
backward) over the same objective: no run uses them; they are the reference the engine is
tested against (tests/test_pbt.py), as reference.py is for the simulator.

KL rule (CleanRL's): each minibatch's loss also returns the estimator ``approx_kl =
mean((r - 1) - log r)`` (Schulman's k3, always >= 0) of KL(old || current) measured on that
minibatch before its gradient step. After each epoch the last minibatch's value is compared
with ``target_kl``; if it is larger, the remaining epochs are skipped (one host sync per
epoch, not per minibatch).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from fastrl.ppo.network import ActorCritic

STAT_NAMES = ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac")


class PPOLoss(nn.Module):
    """Clipped surrogate + value loss - entropy bonus, and the minibatch statistics.

    ``clip_range``, ``ent_coef``, ``vf_coef`` and ``clip_range_vf`` arrive as 0-d tensors so
    a compiled version of this module keeps one graph while schedules and hyperparameters
    move.
    """

    def __init__(self, agent: ActorCritic, clip_vloss: bool = False, norm_adv: bool = True) -> None:
        super().__init__()
        self.agent = agent
        self.clip_vloss = bool(clip_vloss)
        self.norm_adv = bool(norm_adv)

    def forward(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        old_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        old_values: torch.Tensor,
        clip_range: torch.Tensor,
        ent_coef: torch.Tensor,
        vf_coef: torch.Tensor,
        clip_range_vf: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scalar loss and a [5] tensor of STAT_NAMES (detached)."""
        logprobs, entropy, values = self.agent.evaluate(obs, actions)
        return clipped_objective(logprobs, entropy, values, old_logprobs, advantages, returns,
                                 old_values, clip_range, ent_coef, vf_coef, clip_range_vf,
                                 norm_adv=self.norm_adv, clip_vloss=self.clip_vloss)


def clipped_objective(
    logprobs: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor,
    clip_range: torch.Tensor,
    ent_coef: torch.Tensor,
    vf_coef: torch.Tensor,
    clip_range_vf: torch.Tensor,
    *,
    norm_adv: bool,
    clip_vloss: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate + value loss - entropy bonus over the last axis, and its statistics.

    Inputs are [mb] with 0-d coefficients (loss 0-d, stats [5]) or [P, mb] with [P]
    coefficients, one row per member (loss [P], stats [P, 5]); STAT_NAMES order.
    """
    clip = clip_range.unsqueeze(-1)
    logratio = logprobs - old_logprobs
    ratio = logratio.exp()
    if norm_adv:
        advantages = ((advantages - advantages.mean(-1, keepdim=True))
                      / (advantages.std(-1, keepdim=True) + 1e-8))
    clipped_ratio = torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    policy_loss = torch.max(-advantages * ratio, -advantages * clipped_ratio).mean(-1)
    if clip_vloss:
        clip_vf = clip_range_vf.unsqueeze(-1)
        clipped_values = old_values + torch.clamp(values - old_values, -clip_vf, clip_vf)
        value_loss = 0.5 * torch.max((values - returns).square(),
                                     (clipped_values - returns).square()).mean(-1)
    else:
        value_loss = 0.5 * (values - returns).square().mean(-1)
    entropy_mean = entropy.mean(-1)
    loss = policy_loss - ent_coef * entropy_mean + vf_coef * value_loss
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - logratio).mean(-1)
        clipfrac = ((ratio - 1.0).abs() > clip).float().mean(-1)
        stats = torch.stack([policy_loss.detach(), value_loss.detach(), entropy_mean.detach(),
                             approx_kl, clipfrac], dim=-1)
    return loss, stats


@dataclass
class UpdateResult:
    """Means over the minibatches actually applied, and the epochs run."""

    stats: dict[str, float]
    epochs: int
    minibatches: int


def default_amp(device: torch.device) -> bool:
    """bf16 autocast by default on CUDA, and on CPUs whose oneDNN has native bf16 kernels
    (AVX512-BF16 / AMX). Elsewhere bf16 is emulated and fp32 stays the default.

    bench/convergence.py compares what bf16 and fp32 learn on the planted-signal market
    (its results in bench/results).
    """
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_native_bf16()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU's oneDNN has native bf16 kernels (AVX512-BF16 / AMX); the tests'
    ``--default-amp`` option replaces it to run the bf16 default on any CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_context(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``amp`` is on, else a no-op context."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def ppo_update(
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: list[torch.nn.Parameter],
    batch: dict[str, torch.Tensor],
    *,
    n_epochs: int,
    minibatch_size: int,
    max_grad_norm: float,
    target_kl: float | None,
    clip_range: torch.Tensor,
    ent_coef: torch.Tensor,
    vf_coef: torch.Tensor,
    clip_range_vf: torch.Tensor | None = None,
    amp: bool = False,
    generator: torch.Generator | None = None,
) -> UpdateResult:
    """Run up to ``n_epochs`` shuffled passes over ``batch`` (see the module doc for the KL
    rule). Minibatch order draws from ``generator`` (on the batch's device)."""
    clip_range_vf = clip_range if clip_range_vf is None else clip_range_vf
    obs = batch["obs"]
    device = obs.device
    batch_size = obs.shape[0]
    if batch_size % minibatch_size:
        raise ValueError(
            f"minibatch_size {minibatch_size} must divide the batch size {batch_size}"
        )
    per_epoch = batch_size // minibatch_size
    totals = torch.zeros(len(STAT_NAMES), dtype=torch.float32, device=device)
    epochs_run = 0
    for _ in range(n_epochs):
        order = torch.randperm(batch_size, device=device, generator=generator)
        epoch_stats = torch.zeros_like(totals)
        for start in range(0, batch_size, minibatch_size):
            index = order[start : start + minibatch_size]
            with autocast_context(device, amp):
                loss, stats = loss_fn(
                    obs[index],
                    batch["actions"][index],
                    batch["logprobs"][index],
                    batch["advantages"][index],
                    batch["returns"][index],
                    batch["values"][index],
                    clip_range,
                    ent_coef,
                    vf_coef,
                    clip_range_vf,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(parameters, max_grad_norm)
            optimizer.step()
            epoch_stats += stats.float()
        totals += epoch_stats
        epochs_run += 1
        if target_kl is not None and float(stats[STAT_NAMES.index("approx_kl")]) > target_kl:
            break
    means = (totals / (epochs_run * per_epoch)).tolist()
    return UpdateResult(
        stats=dict(zip(STAT_NAMES, means, strict=True)),
        epochs=epochs_run,
        minibatches=epochs_run * per_epoch,
    )


def make_optimizer(
    parameters: list[torch.nn.Parameter],
    name: str,
    learning_rate: torch.Tensor,
    weight_decay: float,
    eps: float,
    device: torch.device,
) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay) or Adam, reading its lr from the schedule tensor.

    Weight decay applies to weight matrices only: biases and the Gaussian head's log_std
    (1-d parameters) are not pulled towards zero. On CUDA the fused kernel is used (one
    launch for every parameter).
    """
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kwargs: dict = {"lr": learning_rate, "eps": eps}
    if device.type == "cuda":
        kwargs["fused"] = True
    if name == "adamw":
        return torch.optim.AdamW(groups, **kwargs)
    if name == "adam":
        return torch.optim.Adam(groups, **kwargs)
    raise ValueError(f"optimizer must be 'adamw' or 'adam', got {name!r}")
