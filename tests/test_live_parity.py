"""Train/serve parity: a paper replay of the test days equals the backtest of that checkpoint.

fastrl-paper trades the test window session by session (each session built only from the
bars up to it) into a journal; the backtest steps the same checkpoint through the same days
at once. Every position, fill, fill price, share count, cost and equity must be equal bit
for bit: the live path drives the same simulator (fastrl.live.decide).

One figure differs in the last float, by design, and is compared to 1e-12 relative: the
portfolio's ``turnover`` (traded notional / equity before the step). The backtest divides
by its running equity mark (cash + shares x mark summed symbol by symbol in a loop), the
one-step replay by ``simulate``'s opening value of the carried holding (cash +
``np.sum(shares x mark)``): the same number summed in another order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fastrl.cli.paper import main as paper_main
from fastrl.live.journal import Journal

from live_runs import backtest, column, first_session, train_run

pytest.importorskip("fastrl._core")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("live-parity")
    return {kind: train_run(kind, folder) for kind in ("daily", "intraday", "portfolio")}


def paper(run_dir, journal_path, start: str, capsys, *extra: str) -> list[dict]:
    code = paper_main([str(run_dir), "--bars", "bundled", "--from", start, "--journal",
                       str(journal_path), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    return Journal.open(str(journal_path)).rows("steps")


@pytest.mark.parametrize("kind", ["daily", "intraday"])
def test_single_symbol_paper_equals_the_backtest_bit_for_bit(runs, kind, tmp_path, capsys):
    bt = backtest(runs[kind])
    rows = paper(runs[kind], tmp_path / "journal.db", first_session(bt), capsys)
    assert len([r for r in rows if r["symbol"] == "BPCL"]) == bt.num_steps
    stamps = [pd.Timestamp(t) for t in bt.timestamps[1:]]
    assert [pd.Timestamp(r["marked_at"]) for r in rows] == stamps
    for key, expected in (("equity", bt.equity[1:]), ("position", bt.positions),
                          ("shares", bt.shares_held), ("cost", bt.step_costs),
                          ("fill_price", bt.fill_prices)):
        np.testing.assert_array_equal(column(rows, "BPCL", key), expected, err_msg=key)
    np.testing.assert_array_equal(column(rows, "BPCL", "trades") > 0, bt.fills)
    assert bt.fills.sum() >= 3, "the agent must trade for parity to mean anything"
    if kind == "intraday":
        # square-off included: flat at every session's last mark, never carried overnight
        day = np.array([t.normalize() for t in stamps])
        last_of_day = np.append(day[1:] != day[:-1], True)
        assert np.all(bt.positions[last_of_day] == 0)
        assert set(np.unique(bt.positions)) >= {-1.0, 1.0}
    # fastrl-eval's backtest closes the last position: the same path less that one cost
    closed = backtest(runs[kind], liquidate=True)
    equity = column(rows, "BPCL", "equity")
    np.testing.assert_array_equal(equity[:-1], closed.equity[1:-1])
    assert equity[-1] - closed.liquidation_cost == closed.equity[-1]


def test_portfolio_paper_equals_the_backtest(runs, tmp_path, capsys):
    bt = backtest(runs["portfolio"])
    rows = paper(runs["portfolio"], tmp_path / "journal.db", first_session(bt), capsys)
    np.testing.assert_array_equal(column(rows, "PORTFOLIO", "equity"), bt.equity[1:])
    np.testing.assert_array_equal(column(rows, "PORTFOLIO", "cost"), bt.step_costs)
    np.testing.assert_array_equal(column(rows, "PORTFOLIO", "trades"), bt.legs)
    np.testing.assert_allclose(column(rows, "PORTFOLIO", "turnover"), bt.turnover,
                               rtol=1e-12, atol=0)  # summation order: see the module doc
    for a, symbol in enumerate(bt.symbols):
        np.testing.assert_array_equal(column(rows, symbol, "position"), bt.weights[:, a],
                                      err_msg=symbol)
        shares = column(rows, symbol, "shares")
        assert np.all(shares == np.trunc(shares))  # whole shares
    assert column(rows, "PORTFOLIO", "cash")[-1] == bt.final_cash
    np.testing.assert_array_equal([column(rows, s, "shares")[-1] for s in bt.symbols],
                                  bt.final_shares)
    assert bt.legs.sum() >= 3
