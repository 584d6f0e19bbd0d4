"""The report files exist, the PNGs are images of the expected size and not blank; every
Sharpe has its error bars (the numbers fastrl.stats gives for the same returns), the verdict
heads the report and the CLI table, and the per-bar CSVs reproduce the tables."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastrl._core")

from fastrl import stats  # noqa: E402
from fastrl.data.block import MarketBlock  # noqa: E402
from fastrl.env_config import EnvConfig  # noqa: E402
from fastrl.evaluate import evaluate_agent  # noqa: E402
from fastrl.markets.results import BOOTSTRAP_SEED  # noqa: E402
from fastrl.metrics import sharpe_ratio  # noqa: E402
from fastrl.reports.format import (  # noqa: E402
    format_active,
    format_interval,
    format_probability,
    format_se,
)
from fastrl.reports.plots import figure_size_px, read_training_metrics  # noqa: E402
from fastrl.reports.single import write_report  # noqa: E402
from fastrl.strategies import COMBINED  # noqa: E402

WINDOW = 4


def _market(timestamps: bool = True) -> MarketBlock:
    rng = np.random.default_rng(3)
    segments = []
    for k, n in enumerate((45, 35)):
        close = 100.0 * np.cumprod(1.0 + rng.normal(0.0, 0.01, n))
        segment = {
            "symbol": f"SYM{k}",
            "open": close * (1.0 + rng.normal(0.0, 0.003, n)),
            "close": close,
            "features": rng.normal(size=(n, 2)),
        }
        if timestamps:
            days = np.datetime64("2024-03-01") + np.arange(n).astype("timedelta64[D]")
            segment["timestamps"] = days.astype("datetime64[ns]")
        segments.append(segment)
    return MarketBlock.from_segments(segments, meta={"context_rows": WINDOW - 1})


def _training_metrics(path: Path) -> Path:
    lines = [json.dumps({"event": "start", "config": {}, "total_timesteps": 1000, "time": 0.0})]
    for i in range(10):
        record = {
            "global_step": 100 * (i + 1),
            "update": i + 1,
            "charts/episode_return": 0.01 * i,
            "losses/entropy": 1.0 - 0.05 * i,
            "losses/approx_kl": 0.01,
            "charts/learning_rate": 1e-3 / (i + 1),
            "charts/clip_range": 0.3 - 0.01 * i,
        }
        if i % 3 == 0:
            record["val/sharpe"] = 0.1 * i
        lines.append(json.dumps(record))
    lines.append('{"global_step": 11')  # a line cut off mid-write is skipped
    path.write_text("\n".join(lines) + "\n")
    return path


def _check_png(path: Path, size: tuple[int, int]) -> None:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = mpimg.imread(path)
    assert (pixels.shape[1], pixels.shape[0]) == size
    rgb = pixels[..., :3]
    assert float(rgb.std()) > 0.01  # not a blank canvas
    # plotted lines: a fair share of pixels is neither white nor near-white
    assert float(np.mean(rgb.min(axis=2) < 0.9)) > 0.01


@pytest.mark.parametrize("timestamps", [True, False])
def test_report_files_and_images(tmp_path: Path, timestamps: bool):
    market = _market(timestamps)
    policy = lambda obs: (obs[:, 0] > 0).astype(np.int64)  # noqa: E731 (long/flat: nse_delivery)
    result = evaluate_agent(policy, market, EnvConfig(window=WINDOW), info={"test_days": 30})
    files = write_report(
        result, tmp_path / "run", training_metrics=_training_metrics(tmp_path / "metrics.jsonl")
    )
    assert set(files.images) == {"equity", "drawdown", "positions", "training"}
    for name, path in files.images.items():
        panels, columns = (6, 2) if name == "training" else (2, 1)
        _check_png(path, figure_size_px(panels, columns))

    markdown = files.markdown.read_text()
    for text in ("## SYM0", "## SYM1", "## Combined", "| Sharpe |", "buy & hold", "equity.png",
                 "| Sharpe std. error |", "| Sharpe 90% interval |", "| P(Sharpe > 0) (PSR) |",
                 "| Mean return over buy & hold |"):
        assert text in markdown
    assert "Test days per symbol: 30" in markdown
    sharpe = result.metrics("SYM0", "agent").sharpe
    assert f"| Sharpe | {sharpe:.3f} |" in markdown

    page = files.html.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 4
    assert "<img" in page and 'src="equity.png"' not in page  # nothing to fetch
    assert page.count("<table>") == 3

    data = json.loads(files.json.read_text())
    assert data["metrics"]["SYM0"]["agent"]["sharpe"] == pytest.approx(sharpe)
    assert data["env_config"]["random_start"] is False
    assert files.returns_csv.is_file() and files.trades_csv.is_file()


def test_report_without_training_metrics(tmp_path: Path):
    result = evaluate_agent(lambda obs: np.full(obs.shape[0], 1), _market(), EnvConfig(window=4))
    files = write_report(result, tmp_path, training_metrics=tmp_path / "missing.jsonl")
    assert set(files.images) == {"equity", "drawdown", "positions"}
    assert not (tmp_path / "training.png").exists()
    assert files.markdown.exists() and files.html.exists()


def test_read_training_metrics_skips_events_and_broken_lines(tmp_path: Path):
    records = read_training_metrics(_training_metrics(tmp_path / "m.jsonl"))
    assert [r["update"] for r in records] == list(range(1, 11))


# --- uncertainty: computed once in the backtest layer, printed everywhere -------------------


@pytest.fixture(scope="module")
def evaluated():
    policy = lambda obs: (obs[:, 0] > 0).astype(np.int64)  # noqa: E731  (long or flat)
    return evaluate_agent(policy, _market(), EnvConfig(window=WINDOW), info={"test_days": 30})


def _equity_returns(equity: np.ndarray) -> np.ndarray:
    return equity[1:] / equity[:-1] - 1.0


def _library(agent_returns: np.ndarray, bench_returns: np.ndarray):
    """What fastrl.stats says about these two series (the seed the backtest layer uses)."""
    return (
        stats.sharpe_stats(agent_returns, "1d", seed=BOOTSTRAP_SEED),
        stats.sharpe_stats(bench_returns, "1d", seed=BOOTSTRAP_SEED),
        stats.prob_agent_beats(agent_returns, bench_returns, "1d"),
    )


def _csv_combined_equity(frame, strategy: str, initial: float) -> np.ndarray:
    """The equal-capital portfolio rebuilt from test_returns.csv with pandas alone: every
    symbol's equity on the union of timestamps, held after its last mark. Both test symbols
    start on the same day, so the portfolio starts at their summed initial cash."""
    rows = frame[frame["strategy"] == strategy]
    wide = rows.pivot(index="timestamp", columns="symbol", values="equity").sort_index().ffill()
    return np.concatenate([[initial * wide.shape[1]], wide.sum(axis=1).to_numpy()])


def test_uncertainty_is_what_the_stats_library_gives_for_the_returns(evaluated, tmp_path):
    import pandas as pd

    files = write_report(evaluated, tmp_path)
    frame = pd.read_csv(files.returns_csv, parse_dates=["timestamp"])
    series = {}
    for symbol in evaluated.symbols:
        series[symbol] = [_equity_returns(evaluated.get(symbol, s).equity)
                          for s in ("agent", "buy_and_hold")]
    series[COMBINED] = [
        _equity_returns(_csv_combined_equity(frame, s, evaluated.initial_cash))
        for s in ("agent", "buy_and_hold")
    ]
    data = json.loads(files.json.read_text())
    markdown = files.markdown.read_text()
    for symbol, (agent_returns, bench_returns) in series.items():
        agent, bench, versus = _library(agent_returns, bench_returns)
        got = evaluated.uncertainty(symbol)
        for name, expected in (("agent", agent), ("buy_and_hold", bench)):
            for key, value in expected.as_dict().items():
                assert got.sharpe[name].as_dict()[key] == (
                    value if isinstance(value, str) else pytest.approx(value, rel=1e-9)), key
            assert expected.sharpe == pytest.approx(evaluated.metrics(symbol, name).sharpe)
        assert got.vs_buy_and_hold == versus
        assert got.verdict == stats.verdict(versus, agent=got.verdict.split(" beats")[0]
                                            .removeprefix("no evidence that "))
        # report.json carries the same numbers
        saved = data["uncertainty"][symbol]
        assert saved["sharpe"]["agent"]["se"] == pytest.approx(agent.se)
        assert saved["sharpe"]["buy_and_hold"]["ci_low"] == pytest.approx(bench.ci_low)
        assert saved["sharpe"]["agent"]["psr"] == pytest.approx(agent.psr)
        assert saved["agent_vs_buy_and_hold"]["probability"] == pytest.approx(versus.probability)
        assert saved["agent_vs_buy_and_hold"]["p_value"] == pytest.approx(versus.p_value)
        assert saved["verdict"] == got.verdict
        # and report.md prints them, in the agent and buy & hold columns
        assert (f"| Sharpe std. error | {format_se(agent)} | {format_se(bench)} | - |"
                in markdown)
        assert saved["sharpe"]["agent"]["se_method"] == agent.se_method
        assert (f"| Sharpe 90% interval | {format_interval(agent.ci_low, agent.ci_high)} | "
                f"{format_interval(bench.ci_low, bench.ci_high)} | - |") in markdown
        assert (f"| P(Sharpe > 0) (PSR) | {format_probability(agent.psr)} | "
                f"{format_probability(bench.psr)} | - |") in markdown
        assert f"| Mean return over buy & hold | {format_active(versus)} |" in markdown
        assert f"Verdict: {got.verdict}." in markdown
    assert data["verdict"] == evaluated.verdict == evaluated.uncertainty(COMBINED).verdict
    assert markdown.splitlines()[2] == f"**Verdict: {evaluated.verdict}.**"
    assert evaluated.verdict in files.html.read_text()
    assert "the agent (all symbols, equal capital)" in evaluated.verdict


def test_csv_has_a_row_per_step_and_reproduces_the_sharpe(evaluated, tmp_path):
    import pandas as pd

    files = write_report(evaluated, tmp_path)
    frame = pd.read_csv(files.returns_csv, parse_dates=["timestamp"])
    assert len(frame) == sum(b.num_steps for b in evaluated.backtests)
    for column in ("timestamp", "symbol", "strategy", "step", "equity", "return", "position",
                   "cost"):
        assert column in frame.columns, column
    for (symbol, strategy), rows in frame.groupby(["symbol", "strategy"]):
        backtest = evaluated.get(symbol, strategy)
        assert list(rows["step"]) == list(range(backtest.num_steps))
        assert list(rows["timestamp"]) == list(pd.to_datetime(backtest.timestamps[1:]))
        equity = np.concatenate([[evaluated.initial_cash], rows["equity"].to_numpy()])
        np.testing.assert_allclose(rows["return"], _equity_returns(equity), rtol=1e-12,
                                   atol=1e-15)
        assert sharpe_ratio(rows["return"].to_numpy(), "1d") == pytest.approx(
            evaluated.metrics(symbol, strategy).sharpe, rel=1e-9, abs=1e-12)
        assert rows["cost"].sum() == pytest.approx(backtest.metrics.costs_paid)
    for strategy in ("agent", "buy_and_hold"):
        combined = _equity_returns(_csv_combined_equity(frame, strategy, evaluated.initial_cash))
        assert sharpe_ratio(combined, "1d") == pytest.approx(
            evaluated.metrics(COMBINED, strategy).sharpe, rel=1e-9)

    trades = pd.read_csv(files.trades_csv)
    for symbol in evaluated.symbols:
        for strategy in ("agent", "buy_and_hold"):
            rows = trades[(trades["symbol"] == symbol) & (trades["strategy"] == strategy)]
            records = evaluated.get(symbol, strategy).trades
            assert len(rows) == len(records)
            np.testing.assert_allclose(rows["pnl"], records.pnl, rtol=1e-12)
            assert list(rows["entry_step"]) == records.entry_step.tolist()
    assert set(trades["direction"]) <= {"long", "short"}


def test_cli_table_shows_error_bars_and_the_verdict(evaluated):
    from rich.console import Console

    from fastrl.cli.evaluate import show
    from fastrl.config import TrainConfig
    from fastrl.markets import SingleMarket

    console = Console(file=io.StringIO(), width=250)
    show(SingleMarket(TrainConfig()), evaluated, console)
    printed = console.file.getvalue()
    combined = evaluated.uncertainty(COMBINED)
    agent = combined.sharpe["agent"]
    for text in ("Sharpe std. error", "Sharpe 90% interval", "P(Sharpe > 0) (PSR)",
                 "Mean return over buy & hold", format_se(agent),
                 format_interval(agent.ci_low, agent.ci_high), format_probability(agent.psr),
                 format_active(combined.vs_buy_and_hold)):
        assert text in printed, text
    assert printed.rstrip().splitlines()[-1] == f"verdict: {evaluated.verdict}"


def _oracle_market(n: int = 80) -> MarketBlock:
    """One symbol whose only feature is the sign of the next close-to-close move."""
    rng = np.random.default_rng(11)
    moves = rng.normal(0.0, 0.01, n)
    close = 100.0 * np.cumprod(1.0 + moves)
    ahead = np.append(np.sign(np.diff(close)), 0.0)
    days = np.datetime64("2024-01-01") + np.arange(n).astype("timedelta64[D]")
    segment = {"symbol": "ORACLE", "open": close, "close": close, "features": ahead[:, None],
               "timestamps": days.astype("datetime64[ns]")}
    return MarketBlock.from_segments([segment], meta={"context_rows": WINDOW - 1})


def test_verdict_says_beats_for_a_clear_edge_and_no_evidence_for_a_copy():
    market = _oracle_market()
    config = EnvConfig(window=WINDOW, execution="close", cost="zero")
    latest = WINDOW - 1  # the newest bar's feature in the observation window
    # long before every rise, short before every fall: an edge no bootstrap can miss
    oracle = evaluate_agent(lambda obs: np.where(obs[:, latest] > 0, 2, 0), market, config)
    versus = oracle.uncertainty(COMBINED).vs_buy_and_hold
    assert versus.p_value < 0.001
    active = oracle.get("ORACLE", "agent").returns - oracle.get("ORACLE", "buy_and_hold").returns
    assert versus.mean_active == pytest.approx(np.mean(active))
    assert oracle.verdict == ("the agent on ORACLE beats buy-and-hold on these 76 days at 90% "
                              "confidence: its mean return over buy-and-hold is "
                              f"{100 * np.mean(active):+.3f}% a day "
                              f"({100 * 252 * np.mean(active):+.1f}% a year), one-sided p < 0.001")
    assert oracle.uncertainty("ORACLE").sharpe["agent"].psr > 0.999
    # always long: the same bars as buy-and-hold, so nothing to test and no claim
    copy = evaluate_agent(lambda obs: np.full(obs.shape[0], 2), market, config)
    np.testing.assert_allclose(copy.get("ORACLE", "agent").equity,
                               copy.get("ORACLE", "buy_and_hold").equity, rtol=1e-12)
    assert copy.verdict == ("no evidence that the agent on ORACLE beats buy-and-hold on these "
                            "76 days: they differ on none of them")
    assert math.isclose(copy.uncertainty(COMBINED).vs_buy_and_hold.p_value, 1.0)
