"""The validation backtests of a population's members (mixed into
:class:`fastrl.ppo.population.Population`, whose ``__init__`` builds every attribute read
here): each member's deterministic policy on its validation block, every member of one
market in one batched env with one forward per bar, members on their own markets (a
walk-forward's windows) one batched backtest per market."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from fastrl.ppo.agent import Agent
from fastrl.ppo.update import autocast_context


class MemberValidation:
    """Validation of the members of :class:`~fastrl.ppo.population.Population`."""

    population: int
    device: torch.device
    amp: bool
    obs_dim: int
    head: Any
    kind: Any
    market: Any
    markets: list[Any] | None
    env_config: Any
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    obs_normaliser: Any
    _stacked_actor_critic: Callable[..., Any]
    member_agent: Callable[..., Agent]

    def validation_agent(self, m: int) -> Agent:
        """Member m's policy as validation acts with it: a copy laid out as load_agent
        builds it (:meth:`member_agent`), in eval mode."""
        agent = self.member_agent(m)
        agent.network.eval()
        return agent

    def greedy_policy(self, members: Sequence[int]) -> Callable[[np.ndarray], np.ndarray]:
        """The deterministic actions of ``members`` (C of them) as one function of raw
        observations [C * S, D] (member ``members[c]``'s rows ``c * S .. c * S + S``), for
        the market's :meth:`~fastrl.markets.base.Market.evaluate_copies`: :meth:`Agent.act`'s
        arithmetic (the member's normaliser, the actor under autocast, the head's
        deterministic action) on the stacked weights, one forward for every member. The
        function acts with the weights the members have now, whatever training does next."""
        index = torch.as_tensor(list(members), dtype=torch.int64, device=self.device)
        head = self.head
        # the members' weights and statistics as they are now (a backtest's policy is fixed)
        normaliser = self.obs_normaliser.select(index)
        with torch.no_grad():
            params = {k: v.detach().index_select(0, index) for k, v in self.params.items()}

        @torch.inference_mode()
        def act(obs: np.ndarray) -> np.ndarray:
            x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
            x = normaliser(x.view(index.numel(), -1, self.obs_dim))
            with autocast_context(self.device, self.amp):
                policy_out, _ = self._stacked_actor_critic(params, self.buffers, x,
                                                           policy_only=True)
            return head.env_actions(head.greedy(policy_out.float().flatten(0, 1)))

        return act

    def validation_evals(self, members: Sequence[int] | None = None, block: Any = None,
                         baselines: bool = False) -> list[Any]:
        """Each member's validation backtest on ``block`` (default the validation block),
        every member in one batched env with one forward per bar (:meth:`greedy_policy`):
        the market's :meth:`~fastrl.markets.base.Market.evaluate_copies`, for a kind that
        backtests several policies in one env (a ValueError from one that does not)."""
        members = list(range(self.population)) if members is None else list(members)
        if not members:
            return []
        if block is None and self.markets is not None:
            return self._per_market(members, lambda group, val: self.validation_evals(
                group, val, baselines))
        block = self.market.val if block is None else block
        return self.kind.evaluate_copies(self.greedy_policy(members), block,
                                         copies=len(members), env_config=self.env_config,
                                         baselines=baselines)

    def validate(self, members: list[int] | None = None, block: Any = None) -> list[float]:
        """Validation Sharpe of each member, the number Trainer.validate gives.

        ``block``: the bars to backtest on, default the validation block
        (``self.market.val``); PBT picks its winner on a later window the same way.
        """
        return [r["sharpe"] for r in self.validation_results(members, block)]

    def validation_results(self, members: list[int] | None = None, block: Any = None
                           ) -> list[dict[str, Any]]:
        """:meth:`validate`'s backtests in full: per member the Sharpe, the total return and
        the per-bar returns the Sharpe comes from (``returns``). The market runs them
        (:meth:`~fastrl.markets.base.Market.member_scores`): the members in one batched env
        (:meth:`validation_evals`) where its backtest can, each the test-days report's
        evaluation of that member alone."""
        members = list(range(self.population)) if members is None else members
        if block is None and self.markets is not None:
            return self._per_market(members, lambda group, val: self.kind.member_scores(
                self, group, val))
        block = self.market.val if block is None else block
        return self.kind.member_scores(self, members, block)

    def member_market(self, m: int) -> Any:
        """The market member m trains and validates on (its own, or the shared one)."""
        return self.market if self.markets is None else self.markets[m]

    def _per_market(self, members: list[int], run: Callable[[list[int], Any], list[Any]]
                    ) -> list[Any]:
        """``run(group, validation block)`` for the members of each market, in one call per
        market; the results in ``members``' order."""
        groups: dict[int, list[int]] = {}
        for m in members:
            groups.setdefault(id(self.markets[m]), []).append(m)
        out: dict[int, Any] = {}
        for group in groups.values():
            out.update(zip(group, run(group, self.markets[group[0]].val), strict=True))
        return [out[m] for m in members]


__all__ = ["MemberValidation"]
