"""bench/anchored.py chooses on the selection windows only, with the rule its docstring states."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench_modules import load_bench


@pytest.fixture(scope="module")
def anchored():
    return load_bench("anchored")


def scores(bench, **changes: float) -> dict[str, float]:
    out = {name: 0.0 for name in bench.candidate_sets()}
    out["fast"] = -0.05
    out.update({f"+{k}": v for k, v in changes.items()})
    return out


def test_a_component_is_kept_when_it_beats_the_default_and_only_the_better_reward(anchored):
    got = anchored.choose(scores(anchored, anchored=0.01, active=-0.01, vol_scaled=-0.02,
                                 features=-0.06, ensemble=-0.05))
    # active and vol_scaled both beat fast's -5%: only the better reward is kept
    assert got == ["anchored", "active"]
    assert anchored.choose(scores(anchored, anchored=-0.06, active=-0.06, vol_scaled=-0.07,
                                  features=-0.05, ensemble=-0.09)) == []  # a tie is not kept


def record(days: pd.DatetimeIndex, windows: np.ndarray, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(days)
    return pd.DataFrame({"time": days, "symbol": "A", "window": windows,
                         "agent_return": rng.normal(0.0, 0.01, n),
                         "bh_return": rng.normal(0.0, 0.01, n), "position": rng.uniform(0, 1, n),
                         "cost_frac": rng.uniform(0, 1e-4, n), "bh_cost_frac": 1e-3})


def test_the_selection_rows_never_read_the_report_windows(anchored):
    days = pd.bdate_range("2016-01-01", periods=240)
    windows = np.repeat(np.arange(4), 60)
    rungs = ["buy_and_hold", "voltarget"]
    agent = record(days, windows, 0)
    rung_records = {name: record(days, windows, k + 1).assign(
        agent_return=lambda f: f["bh_return"]) for k, name in enumerate(rungs)}
    rung_records["buy_and_hold"]["agent_return"] = agent["bh_return"]
    before = anchored.row(agent, rung_records, [0, 1], "single")
    later = windows >= 2
    changed = agent.copy()
    changed.loc[later, ["agent_return", "position"]] *= 3.0
    changed_rungs = {name: r.assign(agent_return=np.where(later, 0.5, r["agent_return"]))
                     for name, r in rung_records.items()}
    assert anchored.row(changed, changed_rungs, [0, 1], "single") == before
    assert anchored.row(changed, changed_rungs, [2, 3], "single") != anchored.row(
        agent, rung_records, [2, 3], "single")


def test_a_window_that_straddles_the_date_is_in_neither_set(anchored):
    from types import SimpleNamespace

    spans = [("2016-06-01", "2016-12-30"), ("2016-12-30", "2017-01-02"),
             ("2017-01-02", "2017-06-30")]
    windows = [SimpleNamespace(index=i, first_traded=pd.Timestamp(a),
                               last_traded=pd.Timestamp(b)) for i, (a, b) in enumerate(spans)]
    assert anchored.split_windows(windows, "2017-01-01") == ([0], [2])
