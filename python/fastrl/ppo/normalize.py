"""Running observation normalisation and return-based reward scaling (SB3 VecNormalize style).

Both live on the training device and are saved in checkpoints, so a loaded agent sees
observations scaled exactly as during training.
"""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Mean and variance over every batch seen so far (parallel Welford / Chan update).

    ``members=P`` keeps P independent statistics (a population's, see
    :class:`fastrl.ppo.population.Population`): buffers gain a leading [P] axis and ``update`` takes
    [P, B, ...] batches, reducing over B.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4,
                 members: int | None = None) -> None:
        super().__init__()
        lead = () if members is None else (int(members),)
        self.batch_dim = len(lead)
        self.register_buffer("mean", torch.zeros(lead + tuple(shape), dtype=torch.float64))
        self.register_buffer("var", torch.ones(lead + tuple(shape), dtype=torch.float64))
        self.register_buffer("count", torch.full(lead, float(epsilon), dtype=torch.float64))
        self._centred: torch.Tensor | None = None  # scratch for update(), not state

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Fold ``batch`` [B, ...] ([P, B, ...] with members) in. The batch's own moments are
        taken in its dtype (no float64 copy of the batch); they are combined with the
        running ones in float64."""
        # Two passes (mean, then the mean square about it) into a reused scratch tensor:
        # no allocation per call, and no per-element Welford recurrence over the rows
        # (torch.var_mean's).
        dim = self.batch_dim
        batch_mean = batch.mean(dim, keepdim=True)
        if self._centred is None or self._centred.shape != batch.shape \
                or self._centred.dtype != batch.dtype or self._centred.device != batch.device:
            self._centred = torch.empty_like(batch)
        centred = torch.sub(batch, batch_mean, out=self._centred)
        batch_var = centred.square_().mean(dim).to(torch.float64)
        batch_mean = batch_mean.squeeze(dim).to(torch.float64)
        batch_count = batch.shape[self.batch_dim]
        count = self.count.view(self.count.shape + (1,) * (self.mean.ndim - self.count.ndim))
        delta = batch_mean - self.mean
        total = count + batch_count
        self.mean.add_(delta * (batch_count / total))
        m2 = self.var * count + batch_var * batch_count
        m2 += delta.square() * (count * batch_count / total)
        self.var.copy_(m2 / total)
        self.count.add_(batch_count)


def _member_view(stacked: nn.Module, single: nn.Module, m: int, copy: bool) -> nn.Module:
    """``single`` with every persistent buffer replaced by ``stacked``'s row ``m`` (a view, so
    writes go to the stack, or a copy)."""
    for name, tensor in stacked.state_dict().items():
        *path, attr = name.split(".")
        owner = single.get_submodule(".".join(path))
        owner._buffers[attr] = tensor[m].clone() if copy else tensor[m]
    return single


class ObservationNormaliser(nn.Module):
    """(obs - mean) / sqrt(var + eps), clipped to +-``clip``; ``enabled=False`` passes through.

    The statistics are float64 for stable accumulation; a float32 copy of the scale and
    shift is refreshed after each update so the hot path is one fused multiply-add.
    ``members=P`` keeps P normalisers ([P, D] statistics, [P, n, D] observations, each
    member's rows into its own statistics); :meth:`member` is one of them as a plain one.
    """

    def __init__(self, obs_dim: int, clip: float = 10.0, enabled: bool = True,
                 members: int | None = None) -> None:
        super().__init__()
        self.enabled = bool(enabled)
        self.clip = float(clip)
        self.obs_dim = int(obs_dim)
        self.members = members
        lead = () if members is None else (int(members),)
        self.stats = RunningMeanStd((obs_dim,), members=members)
        self.register_buffer("shift", torch.zeros(lead + (obs_dim,), dtype=torch.float32))
        self.register_buffer("scale", torch.ones(lead + (obs_dim,), dtype=torch.float32))

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        if not self.enabled:
            return
        self.stats.update(obs)
        self._refresh()

    def _refresh(self) -> None:
        self.scale.copy_((self.stats.var + 1e-8).rsqrt().to(torch.float32))
        self.shift.copy_(self.stats.mean.to(torch.float32))

    def _rows(self, value: torch.Tensor) -> torch.Tensor:
        # [P, D] -> [P, 1, D] so it meets [P, n, D] observations
        return value if self.members is None else value.unsqueeze(-2)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return obs
        return ((obs - self._rows(self.shift)) * self._rows(self.scale)).clamp_(-self.clip,
                                                                                self.clip)

    @torch.no_grad()
    def normalise_into(self, obs: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``forward(obs)`` written into ``out`` in place (the rollout's hot path)."""
        if not self.enabled:
            return out.copy_(obs)
        torch.sub(obs, self._rows(self.shift), out=out)
        return out.mul_(self._rows(self.scale)).clamp_(-self.clip, self.clip)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._refresh()
        return result

    @torch.no_grad()
    def copy_member(self, source: int, target: int) -> None:
        for value in self.state_dict().values():
            value[target].copy_(value[source])

    def member(self, m: int, copy: bool = False) -> ObservationNormaliser:
        """Member m as a plain normaliser: a view of its rows (``copy``: a copy of them)."""
        single = ObservationNormaliser(self.obs_dim, clip=self.clip, enabled=self.enabled)
        return _member_view(self, single, m, copy)

    @torch.no_grad()
    def select(self, members: torch.Tensor) -> ObservationNormaliser:
        """A normaliser of ``members`` (an index tensor, C of them) for [C, n, D]
        observations: a copy of their scale and shift as they are now (it does not update)."""
        chosen = ObservationNormaliser(self.obs_dim, clip=self.clip, enabled=self.enabled,
                                       members=int(members.numel()))
        chosen.to(self.shift.device)
        chosen.shift.copy_(self.shift.index_select(0, members))
        chosen.scale.copy_(self.scale.index_select(0, members))
        return chosen


class RewardScaler(nn.Module):
    """Divides rewards by the running std of each env's discounted return.

    Log-return rewards are ~1e-2, which leaves value targets tiny next to the policy
    terms; scaling (not centring) keeps the reward's sign and the optimal policy.
    ``members=P``: P scalers over [P, n] rewards, one statistic per member; ``gamma`` may
    then be a sequence of P discounts, one per member (a float when they share one).
    """

    def __init__(self, num_envs: int, gamma: float | list[float], clip: float = 10.0,
                 enabled: bool = True, members: int | None = None):
        super().__init__()
        self.enabled = bool(enabled)
        self.member_gamma: list[float] | None = None
        if isinstance(gamma, (list, tuple)):
            if members is None or len(gamma) != int(members):
                raise ValueError(f"RewardScaler: {len(gamma)} gammas for members={members}")
            self.member_gamma = [float(g) for g in gamma]
            gamma = self.member_gamma[0]
        self.gamma = float(gamma)
        self.clip = float(clip)
        self.num_envs = int(num_envs)
        self.members = members
        lead = () if members is None else (int(members),)
        self.stats = RunningMeanStd((), members=members)
        # discounted returns belong to env rows (exploit does not copy them)
        self.register_buffer("returns", torch.zeros(lead + (num_envs,), dtype=torch.float64))
        self.register_buffer("_scaled", torch.zeros(lead + (num_envs,), dtype=torch.float64),
                             persistent=False)
        # per-member discounts as a [P, 1] float64 buffer (not saved: the config has them)
        self.register_buffer("_gammas", None if self.member_gamma is None else torch.tensor(
            self.member_gamma, dtype=torch.float64).unsqueeze(-1), persistent=False)

    @torch.no_grad()
    def forward(self, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """Scale one step's rewards [N]; ``dones`` [N] ends the discounted sums after it."""
        out = torch.empty(rewards.shape, dtype=torch.float32, device=rewards.device)
        return self.scale_into(rewards, dones, out)

    @torch.no_grad()
    def scale_into(self, rewards: torch.Tensor, dones: torch.Tensor,
                   out: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` written into ``out`` (float32 [N], or [P, n]) in place."""
        if not self.enabled:
            return out.copy_(rewards)
        self.returns.mul_(self.gamma if self._gammas is None else self._gammas).add_(rewards)
        self.stats.update(self.returns)
        self.returns.masked_fill_(dones, 0.0)
        std = torch.sqrt(self.stats.var + 1e-8)
        if self.members is not None:
            std = std.unsqueeze(-1)
        scaled = torch.div(rewards, std, out=self._scaled)
        return out.copy_(scaled.clamp_(-self.clip, self.clip))

    @torch.no_grad()
    def copy_member(self, source: int, target: int) -> None:
        """The statistics only: the running returns describe ``target``'s own envs."""
        for value in self.stats.state_dict().values():
            value[target].copy_(value[source])

    def member(self, m: int, copy: bool = False) -> RewardScaler:
        """Member m as a plain scaler (a view of its rows, or with ``copy`` a copy)."""
        gamma = self.gamma if self.member_gamma is None else self.member_gamma[m]
        single = RewardScaler(self.num_envs, gamma, clip=self.clip, enabled=self.enabled)
        return _member_view(self, single, m, copy).to(self.returns.device)
