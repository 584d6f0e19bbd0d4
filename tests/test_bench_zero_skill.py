"""bench/zero_skill.py and the calibration rows built on it: zero-skill timers judged by
the library's own verdicts, and the trained walk-forward null runs' settings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from bench_modules import load_bench
from fastrl import stats as fstats
from fastrl.data import load_bars


@pytest.fixture(scope="module")
def zero_skill():
    return load_bench("zero_skill")


@pytest.fixture(scope="module")
def calibration():
    return load_bench("calibration")


@pytest.fixture(scope="module")
def config(zero_skill):
    return zero_skill.default_config()


def test_the_timer_ignores_observations_and_holds_geometric_spells(zero_skill, config):
    timer = zero_skill.RandomTimer(3, config.env)
    levels = np.asarray(config.env.position_levels)
    assert levels[timer.off] == levels.min() and levels[timer.on] == levels.max()
    path = np.stack([timer(np.zeros((4, 7))) for _ in range(4000)])  # [steps, rows]
    assert path.dtype == np.int64 and set(np.unique(path)) == {timer.off, timer.on}
    switches = np.mean(path[1:] != path[:-1])
    assert switches == pytest.approx(1.0 / timer.mean_spell, rel=0.15)
    assert 0.35 < np.mean(path == timer.on) < 0.65  # long about half the time
    same = zero_skill.RandomTimer(3, config.env)
    assert np.array_equal(same(np.ones((4, 7))), path[0])  # observations change nothing
    # a symbol joining a walk-forward: the rows there keep their spells, the new one starts
    grown = timer(np.zeros((6, 7)))
    assert grown.shape == (6,)
    assert zero_skill.MEAN_SPELL[0] <= timer.mean_spell <= zero_skill.MEAN_SPELL[1]


def test_sentence_claims_reads_the_verdict(zero_skill):
    for p, claims in ((0.03, True), (0.09, True), (0.2, False), (0.9, False)):
        comparison = fstats.AgentVsBenchmark(1 - p, p, 1.0, 0.5, 30, "1d", 1e-3, 0.252,
                                             5e-4, 2.0, 29, 30, 3, "iid")
        assert zero_skill.sentence_claims(fstats.verdict(comparison)) == claims
    nan = float("nan")
    short = fstats.AgentVsBenchmark(nan, nan, 1.0, 0.5, 3, "1d", nan, nan, nan, nan, 0, 3, 0,
                                    "none")
    assert not zero_skill.sentence_claims(fstats.verdict(short))


def test_a_30_day_draw_is_judged_by_the_library_verdict(zero_skill, config, monkeypatch):
    draw = zero_skill.draw_30d_null(config, 0)
    assert draw == zero_skill.draw_30d_null(config, 0)  # draw i is always the same
    assert draw["n"] >= config.data.test_days - 1 and draw["p_value"] is not None
    assert draw["claims_edge"] == (draw["p_value"] <= 1 - 0.9)
    # the claim comes from fastrl.stats, not from a rule of the bench's own: a verdict that
    # always finds an edge makes every draw claim one
    real = fstats.prob_agent_beats

    def sure(agent, bench, freq="1d", **kwargs):
        return dataclasses.replace(real(agent, bench, freq, **kwargs), probability=1.0,
                                   p_value=0.0)

    monkeypatch.setattr(fstats, "prob_agent_beats", sure)
    assert zero_skill.draw_30d_null(config, 0)["claims_edge"]
    bars = load_bars(["BPCL", "INFY"], "1d", "bundled")
    assert zero_skill.draw_30d_real(bars, config, 0)["claims_edge"]


def test_a_walk_forward_draw_trades_every_window_and_takes_the_pooled_verdict(
        zero_skill, config, monkeypatch):
    bars = load_bars(["BPCL", "INFY"], "1d", "bundled")
    spec = zero_skill.walkforward_spec("2022-03-01")
    draw = zero_skill._walkforward(bars, config, spec, seed=1)
    assert draw["windows"] >= 2 and draw["first_traded"] >= "2022-03-01"
    assert draw["n"] > 100 and draw["claims_edge"] == (draw["p_value"] <= 1 - 0.9)
    assert "beats buy-and-hold" in draw["verdict"]
    real = fstats.prob_agent_beats

    def sure(agent, bench, freq="1d", **kwargs):
        return dataclasses.replace(real(agent, bench, freq, **kwargs), probability=1.0,
                                   p_value=0.0)

    monkeypatch.setattr(fstats, "prob_agent_beats", sure)
    assert zero_skill._walkforward(bars, config, spec, seed=1)["claims_edge"]


def test_run_draws_rejects_unknown_kinds(zero_skill):
    with pytest.raises(ValueError, match="unknown zero-skill kinds"):
        zero_skill.run_draws({"30d/nul": 3})


def test_the_calibration_table_has_the_zero_skill_and_walk_forward_rows(calibration,
                                                                         zero_skill):
    draws = {"30d/real": [{"claims_edge": i == 0, "p_value": 0.05 if i == 0 else 0.5,
                           "mean_spell": 10.0, "sharpe_agent": float(i),
                           "sharpe_buy_and_hold": 1.0} for i in range(4)],
             "wf/null": [{"claims_edge": False, "p_value": 0.7, "mean_spell": 8.0}]}
    timers = zero_skill.summarise(draws, 0.1, calibration.rate_summary)
    assert timers["30d/real"]["claims"]["count"] == 1 and timers["wf/null"]["claims"]["n"] == 1
    wf_runs = [{"data_seed": 2000 + i, "claims_edge": i == 1, "p_value": 0.05 if i else 0.4,
                "sharpe_agent": 0.2, "sharpe_buy_and_hold": 0.3, "seconds": 120.0,
                "verdict_agrees": True} for i in range(3)]
    walkforward = calibration.summarise_walkforward(wf_runs)
    assert walkforward["false_positive"]["count"] == 1 and walkforward["median_run_minutes"] == 2
    plan = {"level": 0.9, "strengths": [], "symbols": ["BPCL", "HDFCLIFE"], "oracle_markets": 1}
    results = {**calibration.summarise({}, plan), "walkforward": walkforward,
               "zero_skill": timers}
    wf_settings = calibration.walkforward_plan(calibration.parse_args([]))
    payload = {"settings": {"level": 0.9, "preset": "fast", "hidden_sizes": [64, 64],
                            "timesteps": 200_000, "test_days": 30,
                            "symbols": ["BPCL", "HDFCLIFE"], "study": calibration.STUDY,
                            "walkforward": wf_settings,
                            "zero_skill": {"mean_spell_days": [5.0, 20.0], "wf_min_years": 3.0,
                                           "seconds": 120.0}},
               "results": results, "wall_seconds": 60.0, "machine": {"cores": 2}}
    text = calibration.markdown(payload)
    assert ("| zero-skill timer, real bars: 30-day verdict claims an edge | 1 of 4 | 25% |"
            in text)
    assert "| 0.50 | +1.50 / +1.00 |" in text  # median p, median Sharpe agent / B&H
    assert "| zero-skill timer, null markets: walk-forward pooled verdict claims an edge | " \
           "0 of 1 | 0% |" in text
    assert "through fastrl-walkforward (4 windows): pooled verdict claims an edge | 1 of 3 |" \
        in text
    assert "30d/null" not in text and "null markets: 30-day" not in text  # not drawn


def test_the_new_rows_leave_the_recorded_runs_valid(calibration):
    """The walk-forward runs sign their own records: the 41 recorded runs keep theirs."""
    recorded = Path(calibration.__file__).parent / "results" / "calibration_runs.jsonl"
    signatures = {json.loads(line)["signature"] for line in recorded.read_text().splitlines()}
    args = calibration.parse_args([])
    assert signatures == {calibration.make_plan(args)["signature"]}
    wf = calibration.walkforward_plan(args)
    assert wf["signature"] not in signatures and wf["markets"] == calibration.WALKFORWARD["markets"]
    more = calibration.walkforward_plan(calibration.parse_args(["--walkforward-markets", "30"]))
    assert more["signature"] == wf["signature"]  # more markets: the same records, resumed
    assert args.timer_draws == calibration.TIMER_DRAWS
    with pytest.raises(SystemExit):
        calibration.parse_args(["--quick", "--timers-only"])
    with pytest.raises(SystemExit):
        calibration.parse_args(["--timer-draws", "-1"])
