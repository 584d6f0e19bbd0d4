"""How PBT's winner is judged: the Deflated Sharpe Ratio of the pick over the population,
and the replay's settings (the winner's schedule trained on fresh seeds beside the presets,
scored on window C as the tune study's confirmation).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from fastrl import selection
from fastrl.config import TrainConfig, build_config, resolve_defaults
from fastrl.metrics import sharpe_per_bar
from fastrl.tune.objective import CONFIRM_SEED_BASE
from fastrl.tune.pbt_windows import Windows
from fastrl.tune.settings import ConfirmationSettings

REPLAY_SEEDS = 3  # fresh seeds of the replay (and of each preset beside it)
REPLAY_KEY = "pbt_winner"  # the replayed winner's name among the configs it is compared with
REPLAY_GRID_POINTS = 16  # validation points per replay run (the study's default grid)
DSR_LEVEL = 0.95


def replay_seed_list(run_seed: int, count: int) -> list[int]:
    """``count`` fresh seeds from CONFIRM_SEED_BASE on, skipping the run's own seed."""
    seeds, seed = [], CONFIRM_SEED_BASE
    while len(seeds) < count:
        if seed != int(run_seed):
            seeds.append(seed)
        seed += 1
    return seeds


def winner_dsr(pick: list[dict[str, Any]], winner: int) -> dict[str, Any]:
    """Deflated Sharpe Ratio of the winner's per-bar returns on B against the P members'
    per-bar Sharpes there (n_trials = P), with its reading at DSR_LEVEL."""

    series = [np.asarray(r["returns"], dtype=np.float64) for r in pick]
    sharpes = np.array([sharpe_per_bar(x) for x in series])
    p = len(series)
    out: dict[str, Any] = {"n_trials": p, "bars": int(series[winner].size),
                           "level": DSR_LEVEL, "sharpe_per_bar": sharpes.tolist(),
                           "winner_sharpe_per_bar": float(sharpes[winner])}
    try:
        out["expected_max_sharpe_per_bar"] = selection.expected_max_sharpe(
            float(np.var(sharpes, ddof=1)), p)
        out["dsr"] = float(selection.deflated_sharpe_ratio(series[winner], sharpes, n_trials=p))
    except ValueError as err:
        out["dsr"], out["note"] = None, str(err)
    dsr = out["dsr"]
    out["passes"] = bool(dsr is not None and dsr >= DSR_LEVEL)
    if dsr is None:
        out["reading"] = f"not computed: {out['note']}"
    elif out["passes"]:
        out["reading"] = (f"passes: DSR {dsr:.2f} >= {DSR_LEVEL}, the winner's window-B "
                          f"Sharpe is unlikely to be the luck of the best of {p} members")
    else:
        out["reading"] = (f"does not pass: DSR {dsr:.2f} < {DSR_LEVEL}, the winner's "
                          f"window-B Sharpe is within what the best of {p} members would "
                          "show by luck")
    return out



def replay_settings(config: TrainConfig, windows: Windows, replay_seeds: int,
                    set_options: list[str], objective: str) -> ConfirmationSettings:
    """The confirmation settings the replay reads (layout, seeds, objective, grid)."""
    w = windows
    timesteps = int(config.total_timesteps)
    return ConfirmationSettings(
        symbols=list(config.data.symbols), freq=config.data.freq, source=config.data.source,
        test_days=w.test_days, val_days=w.val_days, confirm_days=w.confirm_days,
        timesteps=timesteps, seeds=replay_seeds, confirm_seeds=replay_seeds,
        set_options=list(set_options), objective=objective, val_every=1,
        val_interval_steps=max(1, timesteps // REPLAY_GRID_POINTS))


def preset_config(config: TrainConfig, set_options: list[str], name: str) -> TrainConfig:
    """Preset ``name`` on ``config``'s data, env, budget and seed with the ``--set`` options
    (the tune study's comparison: only the presets' own hyperparameters differ)."""
    preset = build_config(name, None, {"total_timesteps": int(config.total_timesteps),
                                       "seed": int(config.seed), "patience": 0},
                          list(set_options))
    preset.data = copy.deepcopy(config.data)
    preset.env = copy.deepcopy(config.env)
    return resolve_defaults(preset)


__all__ = ["DSR_LEVEL", "REPLAY_GRID_POINTS", "REPLAY_KEY", "REPLAY_SEEDS", "preset_config",
           "replay_seed_list", "replay_settings", "winner_dsr"]
