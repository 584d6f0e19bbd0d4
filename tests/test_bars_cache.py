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


# ------------------------------------------------------------ a feed that grows by appends


def _feed(tmp_path):
    """A feed folder, a cache folder and the lines of the bundled BPCL file."""
    import gzip

    text = gzip.decompress((BUNDLED_DIR / "daily" / "BPCL.csv.gz").read_bytes())
    lines = text.splitlines(keepends=True)
    feed = tmp_path / "feed"
    feed.mkdir(exist_ok=True)
    return feed, tmp_path / "cache", lines


def _count_full_parses(monkeypatch) -> list:
    import fastrl.data.loaders as loaders

    calls: list = []
    original = loaders.read_table
    monkeypatch.setattr(loaders, "read_table", lambda path: (calls.append(path),
                                                              original(path))[1])
    return calls


@pytest.mark.parametrize("appended", [1, 3])
def test_appended_rows_extend_the_cached_bars_as_a_full_parse_would(tmp_path, monkeypatch,
                                                                    appended):
    feed, cache, lines = _feed(tmp_path)
    (feed / "BPCL.csv").write_bytes(b"".join(lines[:-appended]))
    load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    (feed / "BPCL.csv").write_bytes(b"".join(lines))
    calls = _count_full_parses(monkeypatch)
    grown = load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    assert calls == []  # only the appended rows were read
    full = load_bars_report(["BPCL"], "1d", feed, "raise")
    assert len(calls) == 1
    assert_same(grown, full)
    again = load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)  # a plain hit now
    assert len(calls) == 1
    assert_same(again, full)
    with (feed / "BPCL.csv").open("ab") as handle:  # and it keeps growing
        handle.write(b"2022-12-09,360.0,365.0,355.0,362.0,362.0,1000,0.0,1.0\n")
    assert_same(load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache),
                load_bars_report(["BPCL"], "1d", feed, "raise"))
    assert len(calls) == 2


def test_a_gzip_feed_grows_by_its_decompressed_text(tmp_path, monkeypatch):
    import gzip

    feed, cache, lines = _feed(tmp_path)
    (feed / "BPCL.csv.gz").write_bytes(gzip.compress(b"".join(lines[:-1])))
    load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    (feed / "BPCL.csv.gz").write_bytes(gzip.compress(b"".join(lines)))
    calls = _count_full_parses(monkeypatch)
    grown = load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    assert calls == []
    assert_same(grown, load_bars_report(["BPCL"], "1d", feed, "raise"))


def _appended_line(lines: list[bytes], k: int, **changes) -> bytes:
    """Data line ``k`` (negative: from the end) with some fields replaced."""
    header = lines[0].decode().strip().split(",")
    values = dict(zip(header, lines[k].decode().strip().split(","), strict=True))
    values.update({key: str(value) for key, value in changes.items()})
    return (",".join(values[h] for h in header) + "\n").encode()


def _bad_appends(lines: list[bytes]) -> dict[str, bytes]:
    last = _appended_line(lines, -1)
    date = lines[-1].split(b",")[0].decode()
    return {
        "exact duplicate": last,
        "conflicting duplicate": _appended_line(lines, -1, close=1.0, low=1.0),
        "out of order": _appended_line(lines, -1, date="2022-11-08"),  # before the last
        "an old date again": _appended_line(lines, -1, date="2005-01-03"),
        "NaN price": _appended_line(lines, -1, date=f"{date[:4]}-12-30", close=""),
        "non-positive price": _appended_line(lines, -1, date=f"{date[:4]}-12-30", open=0),
        "another date format": _appended_line(lines, -1, date="30-12-2022"),
    }


@pytest.mark.parametrize("case", ["exact duplicate", "conflicting duplicate", "out of order",
                                  "an old date again", "NaN price", "non-positive price",
                                  "another date format"])
def test_a_bad_appended_row_is_refused_as_a_full_parse_refuses_it(tmp_path, case):
    from fastrl.live.bars import load_live_bars

    feed, cache, lines = _feed(tmp_path)
    assert lines[0].decode().startswith("date,") and lines[-1].startswith(b"2022-11-09,")
    (feed / "BPCL.csv").write_bytes(b"".join(lines))
    load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    with (feed / "BPCL.csv").open("ab") as handle:
        handle.write(_bad_appends(lines)[case])

    def outcome(use_cache: bool):
        try:
            loaded = load_bars_report(["BPCL"], "1d", feed, "raise",
                                      cache=cache if use_cache else None)
        except ValueError as error:
            return ("refused", str(error))
        return ("loaded", loaded)

    cached, parsed = outcome(True), outcome(False)
    assert cached[0] == parsed[0]
    if cached[0] == "refused":
        assert cached[1] == parsed[1]
    else:  # loaded: the same bars, e.g. re-sorted (the live path refuses that, by name)
        assert_same(cached[1], parsed[1])

    class Run:  # what load_live_bars reads of a run
        symbols, freq = ("BPCL",), "1d"

    import os

    messages = []
    for setting in (str(cache), "off"):
        os.environ["FASTRL_BARS_CACHE"] = setting
        try:
            load_live_bars(Run(), feed)
            messages.append(None)
        except Exception as error:  # noqa: BLE001 - compared below
            messages.append(str(error))
        finally:
            del os.environ["FASTRL_BARS_CACHE"]
    assert messages[0] == messages[1]
    assert messages[0] is not None
    assert ("out-of-order" in messages[0]) == (case == "out of order")


def test_a_rewritten_middle_row_or_shorter_file_is_parsed_whole(tmp_path, monkeypatch):
    feed, cache, lines = _feed(tmp_path)
    (feed / "BPCL.csv").write_bytes(b"".join(lines[:-1]))
    load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    middle = len(lines) // 2
    revised = list(lines)
    revised[middle] = _appended_line(lines, middle,
                                     volume=int(float(lines[middle].split(b",")[-1])) + 1)
    assert revised[middle] != lines[middle]
    (feed / "BPCL.csv").write_bytes(b"".join(revised))
    calls = _count_full_parses(monkeypatch)
    rewritten = load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    assert len(calls) == 1  # history changed: not an append, parsed whole
    assert_same(rewritten, load_bars_report(["BPCL"], "1d", feed, "raise"))
    (feed / "BPCL.csv").write_bytes(b"".join(lines[:-5]))  # shorter
    shorter = load_bars_report(["BPCL"], "1d", feed, "raise", cache=cache)
    assert len(calls) == 3
    assert_same(shorter, load_bars_report(["BPCL"], "1d", feed, "raise"))
