"""The optional yfinance downloader, offline: a fake module stands in for the network."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from fastrl.data import load_bars
from fastrl.data.download import DownloadError, cache_folder, download_bars

FIXTURES = Path(__file__).parent / "fixtures"


def yahoo_frame(symbol: str) -> pd.DataFrame:
    """A real fixture slice laid out like yfinance >= 0.2.48 returns it (MultiIndex columns)."""
    frame = pd.read_csv(FIXTURES / "daily" / f"{symbol}.csv", parse_dates=["date"])
    frame = frame.set_index(pd.DatetimeIndex(frame["date"], name="Date"))
    fields = {
        "adj_close": "Adj Close",
        "close": "Close",
        "high": "High",
        "low": "Low",
        "open": "Open",
        "volume": "Volume",
        "dividend": "Dividends",
        "split": "Stock Splits",
    }
    frame = frame[list(fields)].rename(columns=fields)
    frame["Stock Splits"] = frame["Stock Splits"].where(frame["Stock Splits"] != 1.0, 0.0)
    ticker = f"{symbol}.NS"
    frame.columns = pd.MultiIndex.from_product([frame.columns, [ticker]], names=["Price", "Ticker"])
    return frame


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTRL_DATA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def install_fake(monkeypatch, download) -> list[dict]:
    calls: list[dict] = []

    def recording(ticker, **kwargs):
        calls.append({"ticker": ticker, **kwargs})
        return download(ticker, **kwargs)

    monkeypatch.setitem(sys.modules, "yfinance", types.SimpleNamespace(download=recording))
    return calls


def test_download_caches_and_loads_through_the_validating_loader(cache, monkeypatch):
    calls = install_fake(monkeypatch, lambda ticker, **kw: yahoo_frame(ticker.removesuffix(".NS")))
    paths = download_bars(["BPCL"], "1d")
    assert paths["BPCL"] == cache / "daily" / "BPCL.csv" and paths["BPCL"].exists()
    assert calls[0]["ticker"] == "BPCL.NS" and calls[0]["interval"] == "1d"
    assert calls[0]["auto_adjust"] is False
    bars = load_bars("BPCL", source="yfinance")["BPCL"]
    pd.testing.assert_frame_equal(bars, load_bars("BPCL", source=FIXTURES / "daily")["BPCL"])
    assert len(calls) == 1  # the second request was served from the cache
    download_bars("BPCL", refresh=True)
    assert len(calls) == 2
    assert cache_folder("5min") == cache / "intraday_5min"


def test_offline_gives_a_clear_error_and_writes_nothing(cache, monkeypatch):
    def offline(ticker, **kwargs):
        raise ConnectionError("Failed to resolve 'query1.finance.yahoo.com'")

    install_fake(monkeypatch, offline)
    with pytest.raises(DownloadError, match=r"could not download BPCL\.NS .*offline"):
        download_bars("BPCL")
    assert not (cache / "daily" / "BPCL.csv").exists()


def test_empty_answer_is_an_error(cache, monkeypatch):
    install_fake(monkeypatch, lambda ticker, **kw: pd.DataFrame())
    with pytest.raises(DownloadError, match=r"returned no 5min bars for NOPE\.NS"):
        download_bars("NOPE", "5min")


def test_missing_yfinance_names_the_extra(cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "yfinance", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install 'fastrl\[download\]'"):
        download_bars("BPCL")
