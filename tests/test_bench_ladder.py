"""bench/ladder.py: the period read from a walk-forward report, and the ladder's figures on two
bundled symbols over half a year against direct rule backtests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastrl._core")

from bench_modules import load_bench  # noqa: E402
from fastrl.data import load_bars  # noqa: E402
from fastrl.data.block import MarketBlock  # noqa: E402
from fastrl.metrics import sharpe_ratio  # noqa: E402
from fastrl.rules import backtest_single, rule_for, rule_names  # noqa: E402

SYMBOLS = ("BPCL", "HDFCLIFE")


@pytest.fixture(scope="module")
def ladder():
    return load_bench("ladder")


@pytest.fixture(scope="module")
def bars():
    return load_bars(list(SYMBOLS))


def test_the_period_is_each_symbols_first_window(ladder):
    payload = {"report": {"windows": [
        {"decision_day": "2021-12-31", "last_traded": "2022-03-31", "symbols": ["BPCL"]},
        {"decision_day": "2022-03-31", "last_traded": "2022-06-30",
         "symbols": ["BPCL", "HDFCLIFE"]}]}}
    period = ladder.walkforward_period(payload)
    assert period.decision_days == {"BPCL": pd.Timestamp("2021-12-31"),
                                    "HDFCLIFE": pd.Timestamp("2022-03-31")}
    assert period.last_day == pd.Timestamp("2022-06-30")
    assert period.first_decision == pd.Timestamp("2021-12-31")


def test_ladder_figures_match_direct_rule_backtests(ladder, bars):
    # HDFCLIFE joins a quarter later, as a late listing joins the walk-forward
    period = ladder.Period({"BPCL": pd.Timestamp("2021-12-31"),
                            "HDFCLIFE": pd.Timestamp("2022-03-31")}, pd.Timestamp("2022-06-30"))
    env_config, portfolio_config = ladder.default_configs()
    result = ladder.ladder(bars, period, env_config, portfolio_config)

    single, portfolio = result["families"]["single"], result["families"]["portfolio"]
    assert list(single["rungs"]) == rule_names("single")
    assert list(portfolio["rungs"]) == rule_names("portfolio")
    for family in (single, portfolio):
        benchmark = family["rungs"][family["benchmark"]]
        assert "versus" not in benchmark  # the benchmark is not tested against itself
        for rung, row in family["rungs"].items():
            if rung == family["benchmark"]:
                continue
            versus = row["versus"]
            # the one-sided 90% bound: above 0 exactly when the rung is ahead at p < 0.10
            assert versus["annual_low"] <= versus["mean_active_annual"]
            assert (versus["annual_low"] > 0) == (versus["p_value"] < 0.10)
            assert "annual_high" not in versus
            assert versus["p_value"] <= versus["p_holm"] <= 1.0
    first = pd.Timestamp("2022-01-03")  # the first session after the decision day
    assert result["period"]["first_traded"] == str(first.date())
    assert result["period"]["days"] == result["period"]["portfolio_days"]

    # the same rule stepped directly from each symbol's decision bar (the earlier bars as
    # history), pooled by hand: the mean return of the symbols trading each day
    cut = {s: f.loc[:"2022-06-30"] for s, f in bars.items()}
    market = MarketBlock.from_bars(cut)
    starts = [market.segment(0).start + cut["BPCL"].index.get_loc(pd.Timestamp("2021-12-31")),
              market.segment(1).start + cut["HDFCLIFE"].index.get_loc(
                  pd.Timestamp("2022-03-31"))]
    direct = backtest_single([rule_for("ma200")], market, env_config, starts)
    returns = pd.concat([pd.Series(b.equity[1:] / b.equity[:-1] - 1.0,
                                   index=pd.DatetimeIndex(b.timestamps[1:]))
                         for b in direct], axis=1)
    assert returns.index[0] == first
    pooled = returns.mean(axis=1)  # NaN (HDFCLIFE before it joins) is left out
    assert result["families"]["single"]["rungs"]["ma200"]["sharpe"]["sharpe"] == \
        pytest.approx(sharpe_ratio(pooled.to_numpy(), "1d"), rel=1e-12)
    assert result["per_symbol_sharpe"]["ma200"]["HDFCLIFE"] == pytest.approx(
        sharpe_ratio(returns[1].dropna().to_numpy(), "1d"), rel=1e-12)
    assert result["families"]["single"]["rungs"]["ma200"]["days"] == len(pooled)


def test_markdown_states_the_one_sided_bound_and_one_minus_p(ladder):
    """A rung ahead of buy-and-hold at one-sided 0.05 < p < 0.10: the table's bound (one-sided
    90%) is above 0, as the raw claim says, and P(rung > benchmark) is 1 - p, raw and after
    Holm (here a family of one)."""
    from fastrl import stats

    days = pd.bdate_range("2020-01-01", periods=500)
    rng = np.random.default_rng(3)
    bench = pd.Series(0.0004 + rng.normal(0.0, 0.01, 500), index=days)
    gap = rng.normal(0.0, 0.005, 500)
    gap = 0.005 * (gap - gap.mean()) / gap.std(ddof=1) + 1.55 * 0.005 / np.sqrt(500)
    rung = bench + gap
    row = ladder.rung_row(rung, bench, is_benchmark=False)
    p = row["versus"]["p_value"]
    assert 0.05 < p < 0.10
    row["versus"]["p_holm"] = float(stats.holm(np.array([p]))[0])
    families = {"single": {"benchmark": "buy_and_hold", "rungs": {
        "buy_and_hold": ladder.rung_row(bench, bench, is_benchmark=True), "ma10": row}}}
    data = {"ladder": {"period": {"symbols": {"X": "2020-01-01"}, "first_traded": "2020-01-02",
                                  "last_traded": "2021-12-01", "days": 500,
                                  "portfolio_days": 500},
                       "families": families,
                       "seconds": {"single_backtests": 1.0, "portfolio_backtests": 1.0,
                                   "statistics": 1.0}},
            "setup": {"env": {"cost": "zerodha", "half_spread_bps": 2.0, "slippage_bps": 1.0,
                              "execution": "next_open", "integer_shares": True},
                      "portfolio": {"integer_shares": True, "trade_band": 0.02}},
            "presets": {}, "seconds": {"wall": 3.0},
            "load_average": {"start": [0.5], "end": [0.5]}, "machine": {"cores": 2}}
    text = ladder.markdown(data)
    assert ("| rung | pooled Sharpe ± SE | rung - benchmark a year [90%] | "
            "P(rung > benchmark) |") in text
    line = next(x for x in text.splitlines() if x.startswith("| ma10 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    low = float(cells[2].split("[")[1].split("%")[0])
    assert low > 0 and cells[2].endswith(", ∞)")
    assert cells[3] == f"{1 - p:.3f} (Holm {1 - p:.3f}), ahead"
    assert "the larger of the Newey-West and i.i.d. SEs" in text
    assert "not a posterior probability" in text


def test_preset_rows_are_the_walkforward_runs_paired_ladders():
    ladder = load_bench("ladder")
    side = {"sharpe": 1.0, "se": 0.3}
    payload = {"report": {
        "configs": {"fast": {"pooled": {"agent": {"sharpe": 0.6, "se": 0.3},
                                        "buy_and_hold": side, "active_annual_mean": -0.15,
                                        "versus": {"p_value": 0.99}, "days": 2600}}},
        "ladders": {"fast": {"line": "fast beats no rung of the ladder", "rungs": [
            {"rung": "momentum", "diff_annual": -0.06, "diff_low": -0.09, "p_value": 0.99,
             "p_holm": 1.0, "paper": False},
            {"rung": "voltarget @ B&H vol", "diff_annual": -0.14, "diff_low": -0.18,
             "p_value": None, "p_holm": None, "paper": True}]}}}}
    rows = ladder.preset_rows({"single": payload})
    row = rows["fast (single)"]
    assert row["ladder_line"] == "fast beats no rung of the ladder"
    assert set(row["rungs"]) == {"momentum", "voltarget @ B&H vol"}
    assert row["rungs"]["voltarget @ B&H vol"]["paper"]
