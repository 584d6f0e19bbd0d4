"""BatchedAdam: the stacked optimiser of the engine's P members (one step for all of them)."""

from __future__ import annotations

from typing import Any

import torch


class BatchedAdam:
    """Adam / AdamW over stacked [P, ...] parameters with a [P] learning-rate tensor.

    torch.optim takes one lr per parameter group, so P members would need P groups and a
    Python loop; here every op runs on the stacked tensors. The arithmetic follows
    torch.optim.AdamW (decoupled decay ``p *= 1 - lr * wd``) or Adam (L2 added to the
    gradient), with weight decay on weight matrices only (per member ndim >= 2), as
    :func:`fastrl.ppo.update.make_optimizer` does. ``active`` [P] bool skips members (their
    target-KL stop fired): their parameters, moments and step counts stay as they are.
    ``weight_decay``: one float for every member, or a sequence of P (members of a batched
    study); members that share one value run the scalar arithmetic, so a one-member
    optimiser is unchanged bit for bit.
    """

    def __init__(self, params: dict[str, torch.Tensor], name: str,
                 weight_decay: float | list[float] | tuple[float, ...], eps: float,
                 betas: tuple[float, float] = (0.9, 0.999)) -> None:
        if name not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adamw' or 'adam', got {name!r}")
        self.params = params
        self.decoupled = name == "adamw"
        first = next(iter(params.values()))
        decays = ([float(weight_decay)] * first.shape[0]
                  if isinstance(weight_decay, (int, float)) else [float(w) for w in weight_decay])
        if len(decays) != first.shape[0]:
            raise ValueError(f"weight_decay: {len(decays)} values for {first.shape[0]} members")
        # one value shared by every member: a float (torch.optim's scalar arithmetic);
        # else a [P] tensor
        self.weight_decay: float = max(decays)
        self.member_decay: torch.Tensor | None = None
        if len(set(decays)) > 1:
            self.member_decay = torch.tensor(decays, dtype=torch.float32, device=first.device)
        self.eps = float(eps)
        self.beta1, self.beta2 = betas
        self.step_count = torch.zeros(first.shape[0], dtype=torch.float64, device=first.device)
        self.exp_avg = {k: torch.zeros_like(v, memory_format=torch.preserve_format)
                        for k, v in params.items()}
        self.exp_avg_sq = {k: torch.zeros_like(v, memory_format=torch.preserve_format)
                           for k, v in params.items()}
        # the step's temporaries, allocated once: a step allocates no tensor the size of
        # the weights
        self._scratch = {k: torch.empty_like(v, memory_format=torch.preserve_format)
                         for k, v in params.items()}

        # On the CPU: torch's fused Adam(W) kernel, one pass over each tensor (torch.optim's
        # arithmetic, to float32 rounding), called on each member's slices, one call for the
        # members that share a learning rate, step count and decay. The kernel is
        # elementwise, so a member's update does not depend on the other members: a member
        # of P rounds exactly as a lone one. On CUDA the stacked loop runs.
        self.fused = first.device.type == "cpu"
        self.groups = [(names, decay) for names, decay in (
            ([k for k in params if self.decays(k)], self.weight_decay),
            ([k for k in params if not self.decays(k)], 0.0)) if names]

    def decays(self, name: str) -> bool:
        return self.params[name].ndim - 1 >= 2 and self.weight_decay > 0

    @torch.no_grad()
    def _fused_step(self, grads: dict[str, torch.Tensor], lr: torch.Tensor,
                    members: list[int]) -> None:
        """The fused kernel on ``members``' slices (step counts already advanced)."""
        kernel = torch._fused_adamw_ if self.decoupled else torch._fused_adam_
        steps = self.step_count.to(torch.float32)  # exact below 2**24 updates
        rates, counts = lr.tolist(), steps.tolist()
        decays = ([self.weight_decay] * len(rates) if self.member_decay is None
                  else self.member_decay.tolist())
        together: dict[tuple[float, float, float], list[int]] = {}
        for m in members:
            together.setdefault((rates[m], counts[m], decays[m]), []).append(m)
        for (rate, _, member_decay), group in together.items():
            step = steps[group[0]]
            for names, decay in self.groups:
                tensors: list[list[torch.Tensor]] = [[], [], [], []]
                for k in names:
                    for m in group:
                        param, grad = self.params[k][m], grads[k][m]
                        if grad.stride() != param.stride():  # one flat walk: same strides
                            grad = self._scratch[k][m].copy_(grad)
                        for out, value in zip(tensors, (param, grad, self.exp_avg[k][m],
                                                        self.exp_avg_sq[k][m]), strict=True):
                            out.append(value)
                kernel(*tensors, [], [step] * len(tensors[0]), lr=rate, beta1=self.beta1,
                       beta2=self.beta2, weight_decay=member_decay if decay else 0.0,
                       eps=self.eps, amsgrad=False, maximize=False)

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], lr: torch.Tensor,
             active: torch.Tensor | None = None) -> None:
        """One update; ``lr`` float32 [P]; ``active`` None means every member."""
        if self.fused:
            members = (list(range(self.step_count.shape[0])) if active is None
                       else active.nonzero().squeeze(1).tolist())
            if members:
                self.step_count[members] += 1.0
                self._fused_step(grads, lr, members)
            return
        subset = None
        if active is not None:
            self.step_count.add_(active.to(torch.float64))
            subset = active.nonzero().squeeze(1)
            if subset.numel() == 0:
                return
            if subset.numel() == active.numel():
                subset = None
        else:
            self.step_count.add_(1.0)
        steps = self.step_count.clamp(min=1.0)
        # bias corrections in float64 (torch computes them as Python floats)
        bias1 = 1.0 - self.beta1 ** steps
        bias2_sqrt = (1.0 - self.beta2 ** steps).sqrt()
        step_size = (lr.to(torch.float64) / bias1).to(torch.float32)
        lr32 = lr.to(torch.float32)
        decay = self.member_decay
        if subset is not None:  # only the members still training: gathered, updated, put back
            lr32, step_size, bias2_sqrt = (x.index_select(0, subset)
                                           for x in (lr32, step_size, bias2_sqrt))
            decay = None if decay is None else decay.index_select(0, subset)
        for name, param in self.params.items():
            tensors = (param, grads[name], self.exp_avg[name], self.exp_avg_sq[name])
            if subset is None:
                self._adam(name, *tensors, self._scratch[name], lr32, step_size, bias2_sqrt,
                           decay)
                continue
            param_s, grad_s, avg_s, avg_sq_s = (x.index_select(0, subset) for x in tensors)
            self._adam(name, param_s, grad_s, avg_s, avg_sq_s, torch.empty_like(param_s), lr32,
                       step_size, bias2_sqrt, decay)
            for full, part in ((param, param_s), (self.exp_avg[name], avg_s),
                               (self.exp_avg_sq[name], avg_sq_s)):
                full.index_copy_(0, subset, part)

    def _adam(self, name: str, param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
              exp_avg_sq: torch.Tensor, scratch: torch.Tensor, lr32: torch.Tensor,
              step_size: torch.Tensor, bias2_sqrt: torch.Tensor,
              decay: torch.Tensor | None) -> None:
        """One Adam(W) step in place on stacked [M, ...] tensors with [M] rates."""
        shape = (-1,) + (1,) * (param.ndim - 1)
        if self.decays(name):
            if self.decoupled:
                rate = lr32 * (self.weight_decay if decay is None else decay)
                param.mul_(1.0 - rate.view(shape))
            elif decay is None:
                grad = grad.add(param, alpha=self.weight_decay)
            else:  # addcmul rounds as add(alpha=) does: shared values match
                grad = torch.addcmul(grad, param, decay.view(shape))
        exp_avg.lerp_(grad, 1.0 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1.0 - self.beta2)
        # param -= step_size * exp_avg / (sqrt(exp_avg_sq) / bias2_sqrt + eps)
        denom = torch.sqrt(exp_avg_sq, out=scratch)
        denom.div_(bias2_sqrt.to(param.dtype).view(shape)).add_(self.eps)
        ratio = torch.div(exp_avg, denom, out=denom)
        param.addcmul_(ratio, (-step_size).view(shape))

    def member_state(self, m: int) -> dict[str, Any]:
        """Member m's step count and moments (copies): a one-member optimiser's state."""
        return {"step_count": self.step_count[m].clone(),
                "exp_avg": {k: v[m].detach().clone() for k, v in self.exp_avg.items()},
                "exp_avg_sq": {k: v[m].detach().clone() for k, v in self.exp_avg_sq.items()}}

    @torch.no_grad()
    def load_member_state(self, m: int, state: dict[str, Any]) -> None:
        """Write a :meth:`member_state` into member m (every key and shape checked first)."""
        for name in ("exp_avg", "exp_avg_sq"):
            missing = sorted(set(self.params) - set(state[name]))
            if missing:
                raise KeyError(f"optimizer state: {name} lacks {missing}")
            for key, value in getattr(self, name).items():
                if tuple(state[name][key].shape) != tuple(value.shape[1:]):
                    raise ValueError(f"optimizer state: {name}.{key} has shape "
                                     f"{tuple(state[name][key].shape)}, expected "
                                     f"{tuple(value.shape[1:])}")
        self.step_count[m] = float(state["step_count"])
        for name in ("exp_avg", "exp_avg_sq"):
            for key, value in getattr(self, name).items():
                value[m].copy_(state[name][key])


__all__ = ["BatchedAdam"]
