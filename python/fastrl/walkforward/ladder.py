"""The walk-forward's ladder: where an agent stands among the classical rules on the same days.

For one agent config, every rung (:mod:`fastrl.walkforward.rungs`) is compared with the
agent on the pooled records, bar by bar on the same days, by :func:`fastrl.ladder.ladder_of`
(the one ladder of fastrl-train, the tuner and the benches): the mean of agent - rung, its
one-sided lower bound and P(agent > rung), Holm-adjusted across the traded rungs. The
verdict names the strongest rung (highest pooled Sharpe) the agent beats after Holm, or says
it beats none.

Volatility-targeting is also shown at buy-and-hold's volatility: its pooled returns scaled
ex post by sd(buy-and-hold) / sd(voltarget) over the same days, a paper leverage that is not
traded (its Sharpe is voltarget's; its difference a year is not). That row is shown with its
raw figures only: it is not in Holm's family and is never beaten.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from fastrl.ladder import ladder_of, with_matched_volatility
from fastrl.walkforward.analysis import pooled


def ladder(agent: str, record: pd.DataFrame, rungs: Mapping[str, pd.DataFrame], freq: str,
           benchmark: str) -> dict[str, Any]:
    """The ladder of one agent config (JSON-ready, :meth:`fastrl.ladder.Ladder.as_dict`
    with ``verdict`` = its line): ``record`` its walk-forward record, ``rungs`` each rung's
    record on its days (``benchmark`` the record's benchmark among them), voltarget also at
    matched volatility as a paper row."""
    agent_pool = pooled(record)["agent_return"]
    returns: dict[str, tuple[np.ndarray, float]] = {}
    for name, rung_record in rungs.items():
        pool = pooled(rung_record)["agent_return"]
        if not pool.index.equals(agent_pool.index):
            raise ValueError(f"rung {name} and {agent} cover different days")
        values = pool.to_numpy()
        returns[name] = (values, float(np.prod(1.0 + values) - 1.0))
    paper = with_matched_volatility(returns, benchmark)
    result = ladder_of(agent_pool.to_numpy(), returns, freq, agent=agent, paper=paper,
                       benchmark=benchmark, agent_sharpe=True).as_dict()
    return {**result, "benchmark": benchmark, "verdict": result["line"]}


__all__ = ["ladder"]
