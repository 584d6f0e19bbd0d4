"""bench/walkforward_population.py: the trade check between layouts and its tables."""

from __future__ import annotations

import pandas as pd

from bench_modules import load_bench
from fastrl.walkforward.window import WindowResult


def _run(positions: list[float], chosen: int = 1):
    result = WindowResult(config="fast", seed=0, window=0, policy={}, final=None,
                          chosen_update=chosen, best_val_sharpe=0.1, updates=2, env_steps=64,
                          seconds=1.0, reason="completed")
    record = pd.DataFrame({"position": positions,
                           "agent_equity": [1.0 + 0.01 * i for i in range(len(positions))]})

    class Run:
        trained = {("fast", 0, 0): result}
        records = {("fast", 0): record}

    return Run()


def test_same_trades_sees_a_changed_position_and_a_changed_choice():
    bench = load_bench("walkforward_population")
    base = _run([0.0, 1.0, 1.0])
    same = bench.same_trades(base, _run([0.0, 1.0, 1.0]))
    assert same == {"chosen_updates_equal": True, "positions_equal": True,
                    "max_equity_relative_difference": 0.0}
    assert not bench.same_trades(base, _run([0.0, 0.0, 1.0]))["positions_equal"]
    assert not bench.same_trades(base, _run([0.0, 1.0, 1.0], chosen=2))["chosen_updates_equal"]


def test_the_tables_name_each_layout_and_the_per_member_costs():
    bench = load_bench("walkforward_population")
    data = {"machine": {"cores": 2}, "load_average": {"start": [0.5], "end": [1.0]},
            "setup": {"symbols": 30, "windows": 43, "network": "[64,64]", "config": "fast",
                      "timesteps_per_window": 32768},
            "layouts": [{"layout": "pool, 2 workers", "train_seconds": 130.0},
                        {"layout": "population, 2 workers", "train_seconds": 100.0,
                         "speedup_vs_pool": 1.3, "chosen_updates_equal": True,
                         "positions_equal": False, "max_equity_relative_difference": 0.1}],
            "per_member": {"rows": [{"members": 1, "rollout_ms": 75.0, "update_ms": 557.0,
                                     "validation_ms": 53.0, "total_ms": 685.0}]}}
    text = bench.markdown(data)
    assert "| population, 2 workers | 100.0 | 1.30x | yes | NO | 1.0e-01 |" in text
    assert "| 1 | 75 | 557 | 53 | 685 |" in text
