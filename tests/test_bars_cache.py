"""The bars cache (load_bars_report(cache=...)): the same arrays as parsing, a changed file
parsed again, bad files never served from it."""

from __future__ import annotations

import pandas as pd
import pytest

from fastrl.data.loaders import BUNDLED_DIR, load_bars_report

SYMBOLS = ["BPCL", "HDFCLIFE", "INFY"]


def assert_same(a, b) -> None:
    assert list(a.bars) == list(b.bars)
    for symbol in a.bars:
        pd.testing.assert_frame_equal(a.bars[symbol], b.bars[symbol], check_exact=True)
        assert a.bars[symbol].attrs == b.bars[symbol].attrs
    assert (a.files, a.adjustment, a.resorted) == (b.files, b.adjustment, b.resorted)


@pytest.mark.parametrize("freq", ["1d", "5min"])
def test_a_cached_load_is_the_parsed_one(tmp_path, freq):
    symbols = SYMBOLS if freq == "1d" else ["BPCL"]
    parsed = load_bars_report(symbols, freq, "bundled", "raise")
    first = load_bars_report(symbols, freq, "bundled", "raise", cache=tmp_path)
    again = load_bars_report(symbols, freq, "bundled", "raise", cache=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == len(symbols)
    assert_same(parsed, first)
    assert_same(parsed, again)


def test_a_changed_file_is_parsed_again_and_a_bad_one_refused(tmp_path):
    cache, feed = tmp_path / "cache", tmp_path / "feed"
    feed.mkdir()
    frame = pd.read_csv(BUNDLED_DIR / "daily" / "BPCL.csv.gz")
    frame.iloc[:-1].to_csv(feed / "BPCL.csv", index=False)
    short = load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    frame.to_csv(feed / "BPCL.csv", index=False)  # one bar appended
    longer = load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    assert len(longer.bars["BPCL"]) == len(short.bars["BPCL"]) + 1
    assert_same(longer, load_bars_report(["BPCL"], "1d", feed, "raise"))
    assert len(list(cache.glob("*.npz"))) == 1  # one slot per file: overwritten
    bad = frame.copy()
    bad.loc[len(bad) - 1, "close"] = -1.0
    bad.to_csv(feed / "BPCL.csv", index=False)
    with pytest.raises(ValueError, match="non-positive price"):
        load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    unsorted = frame.iloc[[*range(len(frame) - 2), len(frame) - 1, len(frame) - 2]]
    unsorted.to_csv(feed / "BPCL.csv", index=False)
    for _ in range(2):  # parsed, then from the cache: still reported as re-sorted
        assert load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache).resorted == ["BPCL"]
