"""The ActorCritic over P members' stacked weights ([P, ...] tensors), as batched matmuls,
and the layout those weights are stored in.

Written out rather than ``vmap(functional_call)``: in eager mode each op runs once for
every member, with no per-op vmap dispatch. The arithmetic is ActorCritic.forward's (trunk
under autocast, heads in float32), one member's rows rounding as a lone network's where the
GEMM kernels round each batch alike.
"""

from __future__ import annotations

import torch

# ActorCritic's activations as functions (the stacked forward applies them itself).
STACKED_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu,
                       "silu": torch.nn.functional.silu, "gelu": torch.nn.functional.gelu}


def stacked_actor_critic(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                         obs: torch.Tensor, value_only: bool = False, policy_only: bool = False,
                         *, activation: str, layers: int, shared: bool
                         ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """ActorCritic.forward for every member at once: ``obs`` [P, B, D] through the stacked
    weights with ``baddbmm`` (trunk under autocast, heads in float32). ``activation``,
    ``layers`` (hidden layers per trunk) and ``shared`` (one trunk) are the ActorCritic's.
    ``value_only`` skips a separate actor trunk (policy output None), ``policy_only`` the
    critic (value None). ``buffers`` (the ActorCritic has none) keeps functional_call's
    signature."""
    act = STACKED_ACTIVATIONS[activation]

    def linear(name: str, x: torch.Tensor) -> torch.Tensor:
        weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]
        if weight.shape[1] == 1:
            # one output (the value head, a one-dimensional Gaussian's mean): a batched GEMM
            # of one column rounds otherwise for one member than for several (a matrix-
            # vector kernel), so it is a product and a sum over the last axis instead,
            # which rounds alike for any number of members, forward and backward
            return (x * weight).sum(-1, keepdim=True) + bias.unsqueeze(1)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    def trunk(prefix: str, x: torch.Tensor) -> torch.Tensor:
        for index in range(0, 2 * layers, 2):
            x = act(linear(f"{prefix}.{index}", x))
        return x

    actor = None if value_only and not shared else trunk("actor_trunk", obs)
    critic = None if policy_only else actor if shared else trunk("critic_trunk", obs)
    with torch.autocast(obs.device.type, enabled=False):
        policy_out = None if actor is None else linear("policy_head", actor.float())
        value = None if critic is None else linear("value_head", critic.float()).squeeze(-1)
    return policy_out, value


def select_members(value: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``value.index_select(0, index)`` in ``value``'s layout (differentiable).

    A plain index_select returns the stored-transposed weights (:func:`transposed_layout`)
    contiguous: the members still training would then multiply by ``weight.mT`` through
    other GEMM kernels than when every member trains, and so round otherwise, and a
    member's update would depend on whether another member had stopped.
    """
    if value.ndim == 3 and not value.is_contiguous() and value.mT.is_contiguous():
        return value.mT.index_select(0, index).mT
    return value.index_select(0, index)


def transposed_layout(value: torch.Tensor) -> torch.Tensor:
    """Stacked weight matrices [P, out, in] stored as a transpose of contiguous [P, in, out].

    The stacked forward multiplies by ``weight.mT``, so autograd returns each weight's
    gradient in this layout; with the weights (and so Adam's moments) in it too, Adam's
    elementwise ops run on matching strides and no gradient needs a transposing copy.
    """
    return value.mT.contiguous().mT if value.ndim == 3 else value


__all__ = ["STACKED_ACTIVATIONS", "select_members", "stacked_actor_critic", "transposed_layout"]
