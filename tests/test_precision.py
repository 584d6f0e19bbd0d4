"""One inference precision from validation to serving.

The trainer validates (and so picks ``best.pt``) in its own precision: bf16 autocast when it
runs with ``amp``, fp32 without. Its checkpoints record that precision and every serving path
acts in it: load_agent (fastrl-eval's backtest, fastrl-signal, fastrl-paper) and the
walk-forward's frozen window policies. bf16 autocast is emulated on a CPU without native
bf16, so both precisions are tested on any machine.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from fastrl.markets import market_for
from fastrl.markets.single import SingleMarket
from fastrl.markets.single.backtest import evaluate_agent
from fastrl.ppo.agent import Agent
from fastrl.ppo.checkpoint import CheckpointError, load_agent, load_checkpoint
from fastrl.ppo.hooks import Hook, RunFolderHook, ValidationHook
from fastrl.ppo.trainer import Trainer
from test_ppo_trainer import market, tiny_config  # noqa: F401 (market is a fixture)

pytest.importorskip("fastrl._core")
pytestmark = pytest.mark.precision

AMP = {"false": "fp32", "true": "bf16"}


class RecordValidatedPositions(Hook):
    """The positions of the validation backtest each improving update was chosen on, as
    Trainer.validate computed them (its market's evaluate call, recorded)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[list[np.ndarray]] = []
        self.positions: list[np.ndarray] | None = None
        original = SingleMarket.evaluate

        def recording(*args, **kwargs):
            result = original(*args, **kwargs)
            self.calls.append([b.positions.copy() for b in result.backtests])
            return result

        monkeypatch.setattr(SingleMarket, "evaluate", recording)

    def on_step(self, trainer: Trainer, row: dict) -> None:
        if row.get("val/improved"):
            self.positions = self.calls[-1]


@pytest.mark.parametrize("amp", list(AMP))
def test_the_served_policy_is_the_one_validation_chose(market, tmp_path, monkeypatch,  # noqa: F811
                                                      amp):
    """best.pt, loaded as every serving path loads it, trades the validation days exactly as
    the trainer's validation did when it chose that checkpoint: the same precision, the same
    positions bit for bit, the same Sharpe."""
    config = tiny_config("env.action=continuous", f"amp={amp}", "total_timesteps=256")
    trainer = Trainer(config, market=market, run_dir=tmp_path / "run")
    record = RecordValidatedPositions(monkeypatch)
    trainer.train([ValidationHook(), record, RunFolderHook(tmp_path / "run")])
    monkeypatch.undo()
    assert trainer.agent.precision == AMP[amp] and record.positions is not None
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    assert load_checkpoint(best)["inference_precision"] == AMP[amp]
    agent = load_agent(best)  # as fastrl-eval, fastrl-signal and fastrl-paper load it
    assert agent.precision == AMP[amp]
    served = evaluate_agent(agent, market.val, trainer.env_config, baselines=False)
    for validated, backtest in zip(record.positions, served.backtests, strict=True):
        np.testing.assert_array_equal(backtest.positions, validated)
    assert market_for(config).validation_scores(agent, market.val)["sharpe"] \
        == trainer.best_val_sharpe
    assert np.any(np.abs(record.positions[0]) > 0), "the policy must trade for this to test"


def _bundled_window(amp: str):
    """A tiny walk-forward window trained in the given precision, its result and config."""
    from fastrl.config import build_config, config_to_dict
    from fastrl.data.loaders import load_bars_report
    from fastrl.walkforward.plan import WalkForwardSpec, plan_windows, window_bars
    from fastrl.walkforward.run import train_window

    bars = dict(load_bars_report(["BPCL"], "1d", "bundled").bars)
    spec = WalkForwardSpec(step=63, start="2022-01-03", val_days=40, min_train_days=120)
    window = plan_windows(bars, spec)[0]
    config = build_config("fast", None, {
        "data.symbols": ["BPCL"], "total_timesteps": 256, "num_envs": 4, "num_steps": 32,
        "minibatch_size": 64, "n_epochs": 1, "hidden_sizes": [16, 16], "device": "cpu",
        "torch_threads": 1, "env.action": "continuous", "amp": amp == "true"}, [])
    resolved = spec.resolved("1d")
    result = train_window(config_to_dict(config), window,
                          window_bars(bars, window, "train"), resolved, name="fast",
                          seed_index=0)
    return result, window, bars, config, resolved


@pytest.mark.parametrize("amp", list(AMP))
def test_a_walk_forward_window_trades_the_policy_its_validation_chose(amp):
    from fastrl.walkforward.run import build_agent, train_market, training_config, window_seed

    result, window, bars, config, spec = _bundled_window(amp)
    assert result.policy["inference_precision"] == AMP[amp]
    window_config = training_config(config, window, window_seed(config.seed, 0, window.index),
                                    spec.val_days)
    agent = build_agent(window_config, result.policy)
    assert agent.precision == AMP[amp]
    val = train_market(bars, window, window_config, spec).val
    score = market_for(window_config).validation_scores(agent, val)["sharpe"]
    assert score == result.best_val_sharpe
    # a window saved before the field acts as its config says, as an old checkpoint does
    old = {key: value for key, value in result.policy.items() if key != "inference_precision"}
    assert build_agent(window_config, old).precision == ("bf16" if amp == "true" else "fp32")


def _saved_run(market, tmp_path, *extra: str):  # noqa: F811
    Trainer(tiny_config("total_timesteps=128", *extra), market=market,
            run_dir=tmp_path / "run").train()
    return tmp_path / "run" / "checkpoints" / "final.pt"


@pytest.mark.parametrize(("amp", "served"), [("null", "fp32"), ("true", "bf16")])
def test_a_checkpoint_from_before_the_field_acts_as_its_config_says(market, tmp_path, amp,  # noqa: F811
                                                                   served):
    """Without ``inference_precision`` a checkpoint is served in fp32, unless its config
    turned amp on explicitly (its trainer then validated in bf16)."""
    path = _saved_run(market, tmp_path, f"amp={amp}")
    state = torch.load(path, weights_only=True)
    del state["inference_precision"]
    torch.save(state, path)
    assert load_agent(path).precision == served


def test_an_unknown_precision_is_refused_naming_the_checkpoint(market, tmp_path):  # noqa: F811
    path = _saved_run(market, tmp_path, "amp=false")
    torch.save({**torch.load(path, weights_only=True), "inference_precision": "fp8"}, path)
    with pytest.raises(CheckpointError, match=rf"{path}.*inference_precision 'fp8'.*fp32 or bf16"):
        load_agent(path)
    agent = load_agent(tmp_path / "run")
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, got 'fp16'"):
        Agent(agent.network, agent.obs_normaliser, agent.config, precision="fp16")


class _Planted:
    """Unpickling this would create a file: a weights-only load must refuse it first."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_a_checkpoint_holding_code_is_refused_without_a_hint_to_unguard(tmp_path):
    """A file a weights-only load refuses is a one-line CheckpointError that names it and
    never passes on torch's hint to retry with weights_only=False."""
    marker = tmp_path / "ran"
    planted = tmp_path / "planted.pt"
    torch.save({"format": "fastrl-ppo", "version": 2, "payload": _Planted(marker)}, planted)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path, says in ((planted, "holds a pickled os.makedirs"), (garbage, "is corrupted")):
        for load in (load_agent, load_checkpoint):
            with pytest.raises(CheckpointError) as caught:
                load(path)
            message = str(caught.value)
            assert message.startswith(f"checkpoint {path} {says}"), message
            assert "weights_only" not in message and "trust" not in message, message
            assert "\n" not in message and "\x1b" not in message
    assert not marker.exists()
