"""Loading bars: bundled sets, every user-file path, validation errors and explicit repairs."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastrl.data import DataValidationError, available, load_bars, load_bars_report

FIXTURES = Path(__file__).parent / "fixtures"
DAILY = FIXTURES / "daily"
INTRADAY = FIXTURES / "intraday_5min"


def raw(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write(frame: pd.DataFrame, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, **kwargs)
    return path


def expected_adjusted(path: Path) -> pd.DataFrame:
    """Independent reference: the provider's adj_close/close factor applied to each row."""
    frame = pd.read_csv(path)
    factor = frame["adj_close"] / frame["close"]
    out = pd.DataFrame(
        {c: frame[c] * factor for c in ("open", "high", "low", "close")}
        | {"volume": frame["volume"] / factor}
    )
    out.index = pd.DatetimeIndex(pd.to_datetime(frame["date"]).to_numpy("datetime64[ns]"))
    return out


# --- bundled data ---------------------------------------------------------------------


def test_available_lists_bundled_symbols_per_freq():
    listing = available()
    assert set(listing) == {"1d", "5min"}
    assert len(listing["1d"]) == 30 and len(listing["5min"]) == 12
    for freq in ("1d", "5min"):
        assert {"BPCL", "HDFCLIFE"} <= set(listing[freq])
        assert available(freq) == listing[freq]


def test_bundled_bpcl_hdfclife_daily_match_the_data_readme():
    bars = load_bars(["BPCL", "HDFCLIFE"])
    bpcl, life = bars["BPCL"], bars["HDFCLIFE"]
    assert (len(bpcl), len(life)) == (4398, 1231)
    assert bpcl.index[0] == pd.Timestamp("2005-01-03")
    assert bpcl.index[-1] == pd.Timestamp("2022-11-09")
    assert life.index[0] == pd.Timestamp("2017-11-17")
    assert life.index[-1] == pd.Timestamp("2022-11-15")
    for frame in bars.values():
        assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
        assert (frame.dtypes == np.float64).all()
        assert frame.index.is_monotonic_increasing and frame.index.is_unique
        assert frame.index.dtype == "datetime64[ns]"
    # back-adjusted: the last bar keeps its traded prices (adj_close == close there)
    assert bpcl.iloc[-1].tolist() == [310.15, 311.65, 306.05, 306.8, 137119.0]
    assert life["close"].iloc[-1] == 533.05


def test_bundled_bpcl_bonus_issues_do_not_look_like_crashes():
    close = load_bars("BPCL")["BPCL"]["close"]
    moves = np.log(close).diff()
    for day in ("2012-07-13", "2016-07-13", "2017-07-13"):
        assert abs(moves.loc[day]) < 0.1, day  # raw close falls 33-51% on these days


def test_bundled_5min_sessions_and_symbol_case():
    bars = load_bars("bpcl", "5min")["BPCL"]
    assert len(bars) == 18354
    per_day = bars.groupby(bars.index.normalize()).size()
    assert len(per_day) == 247
    assert per_day.loc["2023-11-12"] == 12  # Diwali muhurat session is kept
    assert bars.index[0] == pd.Timestamp("2023-07-03 09:15")  # +05:30 wall-clock time kept


def test_bundled_glitch_bar_is_refused_by_default_and_dropped_on_request():
    with pytest.raises(DataValidationError) as info:
        load_bars("HDFCBANK", "5min")
    message = str(info.value)
    assert "HDFCBANK.csv.gz" in message and "row 18055" in message and "'open'" in message
    report = load_bars_report("HDFCBANK", "5min", on_bad_rows="drop")
    assert len(report.bars["HDFCBANK"]) == 18354 - 1
    (issue,) = report.dropped["HDFCBANK"]
    assert (issue.row, issue.column) == (18055, "open")
    assert pd.Timestamp("2024-06-25 09:15") not in report.bars["HDFCBANK"].index


def test_unknown_symbol_lists_what_is_available():
    with pytest.raises(ValueError, match="unknown symbol NOPE.*available: .*BPCL.*HDFCLIFE"):
        load_bars(["BPCL", "NOPE"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"freq": "1h"}, "freq must be one of"),
        ({"on_bad_rows": "fill"}, "on_bad_rows must be one of"),
        ({"adjust": "dividends"}, "adjust must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_bars("BPCL", **kwargs)


# --- user files: every loader path on real slices -------------------------------------


def test_folder_of_csv_files_matches_the_provider_adjustment():
    bars = load_bars(["BPCL", "HDFCLIFE"], source=DAILY)
    for symbol in ("BPCL", "HDFCLIFE"):
        expected = expected_adjusted(DAILY / f"{symbol}.csv")
        pd.testing.assert_frame_equal(bars[symbol], expected, check_names=False, rtol=1e-12)


def test_freq_subfolders_are_chosen_by_freq(tmp_path):
    shutil.copytree(DAILY, tmp_path / "daily")
    shutil.copytree(INTRADAY, tmp_path / "intraday_5min")
    assert available("1d", tmp_path) == ["BPCL", "HDFCLIFE", "TATAMOTORS"]
    assert available("5min", tmp_path) == ["BPCL", "HDFCBANK"]
    bars = load_bars("BPCL", "5min", tmp_path)["BPCL"]
    assert len(bars) == 687 and bars.index[0] == pd.Timestamp("2023-11-06 09:15")


def test_single_file_gzip_and_parquet_give_the_same_bars(tmp_path):
    reference = load_bars("BPCL", source=DAILY / "BPCL.csv")["BPCL"]
    gz = tmp_path / "BPCL.csv.gz"
    with open(DAILY / "BPCL.csv", "rb") as src, gzip.open(gz, "wb") as dst:
        dst.write(src.read())
    pd.testing.assert_frame_equal(load_bars("BPCL", source=gz)["BPCL"], reference)
    parquet = tmp_path / "BPCL.parquet"
    frame = pd.read_csv(DAILY / "BPCL.csv", parse_dates=["date"]).set_index("date")
    frame.to_parquet(parquet)  # the timestamp is the index, as pandas users write it
    pd.testing.assert_frame_equal(load_bars("BPCL", source=parquet)["BPCL"], reference)


def test_common_spellings_bom_semicolons_day_first_any_order(tmp_path):
    reference = load_bars("BPCL", source=DAILY)["BPCL"]
    frame = raw(DAILY / "BPCL.csv")
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%d-%m-%Y")
    frame = frame.rename(
        columns={"date": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close"}
    )
    frame = frame.rename(columns={"adj_close": "Adj Close", "volume": "Volume"})
    frame = frame.sample(frac=1.0, random_state=0)  # any row order
    path = write(frame, tmp_path / "BPCL.csv", sep=";", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    report = load_bars_report("BPCL", source=path)
    pd.testing.assert_frame_equal(report.bars["BPCL"], reference)
    assert report.resorted == ["BPCL"]


def test_time_zone_aware_timestamps_become_exchange_local(tmp_path):
    frame = raw(INTRADAY / "BPCL.csv")
    utc = pd.to_datetime(frame["timestamp"]).dt.tz_convert("UTC")
    frame["timestamp"] = utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = write(frame, tmp_path / "BPCL.csv")
    bars = load_bars("BPCL", "5min", path)["BPCL"]
    pd.testing.assert_frame_equal(bars, load_bars("BPCL", "5min", INTRADAY)["BPCL"])
    assert bars.index[0] == pd.Timestamp("2023-11-06 09:15")


def test_separate_date_and_time_columns_and_missing_volume(tmp_path):
    frame = raw(INTRADAY / "BPCL.csv")
    stamps = pd.to_datetime(frame["timestamp"])
    frame.insert(0, "Date", stamps.dt.strftime("%d/%m/%Y"))
    frame.insert(1, "Time", stamps.dt.strftime("%H:%M"))
    frame = frame.drop(columns=["timestamp", "volume"])
    bars = load_bars("BPCL", "5min", write(frame, tmp_path / "BPCL.csv"))["BPCL"]
    assert bars["volume"].isna().all()
    assert bars.index[0] == pd.Timestamp("2023-11-06 09:15")


def test_long_format_file_with_symbol_column(tmp_path):
    frames = []
    for symbol in ("BPCL", "HDFCLIFE"):
        frame = raw(DAILY / f"{symbol}.csv")
        frame.insert(0, "Ticker", symbol)
        frames.append(frame)
    path = write(pd.concat(frames), tmp_path / "prices.csv")
    assert available("1d", path) == ["BPCL", "HDFCLIFE"]
    bars = load_bars(["HDFCLIFE", "BPCL"], source=path)
    reference = load_bars(["BPCL", "HDFCLIFE"], source=DAILY)
    for symbol in reference:
        pd.testing.assert_frame_equal(bars[symbol], reference[symbol])
    # rows are numbered as in the file, not within the symbol's selection
    broken = pd.concat(frames).reset_index(drop=True)
    row = len(frames[0]) + 5  # 0-based position inside the HDFCLIFE part
    broken.loc[row, "close"] = "-1"
    with pytest.raises(DataValidationError, match=rf"row {row + 1} \(line {row + 2}\)"):
        load_bars("HDFCLIFE", source=write(broken, tmp_path / "broken.csv"))


def test_split_column_is_used_when_adj_close_is_absent(tmp_path):
    frame = raw(DAILY / "BPCL.csv").drop(columns=["adj_close"])
    bars = load_bars_report("BPCL", source=write(frame, tmp_path / "BPCL.csv"))
    assert bars.adjustment["BPCL"] == "split"
    close = bars.bars["BPCL"]["close"]
    # before the 2.0 bonus every price is halved; after it prices are as traded
    assert close.loc["2012-07-12"] == pytest.approx(784.8993 / 2)
    assert close.loc["2012-07-13"] == pytest.approx(386.7497)
    assert abs(np.log(close).diff().loc["2012-07-13"]) < 0.1
    unadjusted = load_bars("BPCL", source=tmp_path / "BPCL.csv", adjust="none")["BPCL"]
    assert np.log(unadjusted["close"]).diff().loc["2012-07-13"] < -0.6


def test_unflagged_split_is_handled_through_adj_close():
    # TATAMOTORS 2011-09-12: prices fall to 1/5 with split = 1 on every row
    frame = pd.read_csv(DAILY / "TATAMOTORS.csv")
    assert (frame["split"] == 1.0).all()
    close = load_bars("TATAMOTORS", source=DAILY)["TATAMOTORS"]["close"]
    assert abs(np.log(close).diff().loc["2011-09-12"]) < 0.1
    raw_close = load_bars("TATAMOTORS", source=DAILY, adjust="split")["TATAMOTORS"]["close"]
    assert np.log(raw_close).diff().loc["2011-09-12"] < -1.5


def test_zero_volume_bars_are_valid(tmp_path):
    frame = raw(DAILY / "BPCL.csv")
    frame.loc[10, "volume"] = "0"
    bars = load_bars("BPCL", source=write(frame, tmp_path / "BPCL.csv"))["BPCL"]
    assert bars["volume"].iloc[10] == 0.0


# --- validation errors name file, row and column --------------------------------------


def broken_copy(tmp_path: Path, edit) -> Path:
    frame = raw(DAILY / "BPCL.csv")
    edit(frame)
    return write(frame, tmp_path / "BPCL.csv")


@pytest.mark.parametrize(
    ("column", "index", "value", "problem"),
    [
        ("close", 4, "", "missing price"),
        ("open", 7, "abc", "not a number: 'abc'"),
        ("high", 2, "inf", "infinite price"),
        ("low", 9, "0", "non-positive price 0.0"),
        ("close", 11, "-5.0", "non-positive price -5.0"),
        ("date", 3, "2012-13-45", "unparseable timestamp '2012-13-45'"),
        ("date", 6, "", "unparseable timestamp"),
        ("high", 20, "1.0", "high 1.0 is below low"),
        ("volume", 15, "-3", "negative volume -3.0"),
        ("adj_close", 17, "0", "non-positive adjusted close 0.0"),
    ],
)
def test_each_bad_value_is_named(tmp_path, column, index, value, problem):
    frame = raw(DAILY / "BPCL.csv")
    frame.loc[index, column] = value
    path = write(frame, tmp_path / "BPCL.csv")
    with pytest.raises(DataValidationError) as info:
        load_bars("BPCL", source=path)
    row = index + 1  # 1-based data row; the header is line 1, so the row sits on line row + 1
    expected_column = "timestamp" if column == "date" else column
    (issue,) = info.value.issues
    assert (issue.row, issue.column) == (row, expected_column)
    assert problem in issue.problem
    assert f"{path}, row {row} (line {row + 1}), column '{expected_column}'" in str(info.value)
    # the same file loads with that one row dropped when asked
    report = load_bars_report("BPCL", source=path, on_bad_rows="drop")
    assert len(report.bars["BPCL"]) == len(frame) - 1
    assert [i.row for i in report.dropped["BPCL"]] == [row]


def test_open_outside_range_is_named_and_dropped_on_request(tmp_path):
    def edit(frame):
        frame.loc[30, "open"] = str(float(frame.loc[30, "high"]) + 5)

    path = broken_copy(tmp_path, edit)
    with pytest.raises(DataValidationError, match=r"row 31 .*'open': open .* outside \[low"):
        load_bars("BPCL", source=path)
    report = load_bars_report("BPCL", source=path, on_bad_rows="drop")
    assert len(report.bars["BPCL"]) == 269 - 1
    assert [(i.row, i.column) for i in report.dropped["BPCL"]] == [(31, "open")]


def test_real_close_outside_range_in_5min_fixture():
    # HDFCBANK 2024-06-25 09:15: O 1671.1 H 1687.6 L 1674.85 C 1687.5 (open below low)
    with pytest.raises(DataValidationError) as info:
        load_bars("HDFCBANK", "5min", INTRADAY)
    (issue,) = info.value.issues
    assert issue.column == "open" and issue.row == 376 and "1671.1" in issue.problem


def test_missing_column_lists_accepted_spellings(tmp_path):
    path = write(raw(DAILY / "BPCL.csv").drop(columns=["low"]), tmp_path / "BPCL.csv")
    with pytest.raises(DataValidationError, match="missing required column 'low'.*has columns"):
        load_bars("BPCL", source=path, on_bad_rows="drop")  # never repairable


def test_repeated_session_from_the_source_is_refused_then_dropped():
    path = FIXTURES / "oddities" / "BPCL_5min_repeated_session.csv"
    with pytest.raises(DataValidationError) as info:
        load_bars("BPCL_5min_repeated_session", "5min", path)
    assert len(info.value.issues) == 75
    assert all("exact duplicate of row" in i.problem for i in info.value.issues)
    report = load_bars_report("BPCL_5min_repeated_session", "5min", path, on_bad_rows="drop")
    bars = report.bars["BPCL_5min_repeated_session"]
    assert len(bars) == 450 - 75 and bars.index.is_unique
    assert (bars.groupby(bars.index.normalize()).size() == 75).all()


def test_conflicting_duplicate_timestamps_drop_every_copy(tmp_path):
    frame = raw(DAILY / "BPCL.csv")
    copy = frame.iloc[[40]].copy()
    copy["close"] = str(float(copy["close"].iloc[0]) + 0.05)
    path = write(pd.concat([frame, copy]), tmp_path / "BPCL.csv")
    with pytest.raises(DataValidationError, match="duplicate date .* with different values"):
        load_bars("BPCL", source=path)
    report = load_bars_report("BPCL", source=path, on_bad_rows="drop")
    assert sorted(i.row for i in report.dropped["BPCL"]) == [41, 270]
    assert pd.Timestamp(frame.loc[40, "date"]) not in report.bars["BPCL"].index


def test_intraday_file_loaded_as_daily_is_refused():
    with pytest.raises(DataValidationError, match="several bars on one date"):
        load_bars("BPCL", "1d", INTRADAY)


def test_daily_file_loaded_as_5min_is_refused():
    with pytest.raises(DataValidationError, match="look like daily bars"):
        load_bars("BPCL", "5min", DAILY / "BPCL.csv")


def test_mixed_naive_and_zoned_timestamps_are_refused(tmp_path):
    frame = raw(INTRADAY / "BPCL.csv")
    frame.loc[5, "timestamp"] = frame.loc[5, "timestamp"][:-6]
    with pytest.raises(DataValidationError, match="row 6 .*mix time-zone-aware and naive"):
        load_bars("BPCL", "5min", write(frame, tmp_path / "BPCL.csv"))


def test_empty_file_and_missing_source(tmp_path):
    path = write(raw(DAILY / "BPCL.csv").iloc[:0], tmp_path / "BPCL.csv")
    with pytest.raises(DataValidationError, match="no data rows"):
        load_bars("BPCL", source=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_bars("BPCL", source=tmp_path / "nowhere")


def test_errors_list_many_issues_compactly(tmp_path):
    def edit(frame):
        frame.loc[:24, "close"] = "-1"

    with pytest.raises(DataValidationError) as info:
        load_bars("BPCL", source=broken_copy(tmp_path, edit))
    assert len(info.value.issues) == 25
    assert "... and 15 more" in str(info.value)
    assert "on_bad_rows='drop'" in str(info.value)


def test_semicolon_file_with_decimal_commas(tmp_path):
    frame = raw(DAILY / "HDFCLIFE.csv")
    for column in ("open", "high", "low", "close", "adj_close", "dividend", "split"):
        frame[column] = frame[column].str.replace(".", ",", regex=False)
    path = write(frame, tmp_path / "HDFCLIFE.csv", sep=";")
    pd.testing.assert_frame_equal(
        load_bars("HDFCLIFE", source=path)["HDFCLIFE"],
        load_bars("HDFCLIFE", source=DAILY)["HDFCLIFE"],
    )


def test_two_columns_with_one_meaning_are_refused(tmp_path):
    frame = raw(DAILY / "BPCL.csv")
    frame.insert(0, "Timestamp", frame["date"])
    with pytest.raises(DataValidationError, match="both 'Timestamp' and 'date' look like"):
        load_bars("BPCL", source=write(frame, tmp_path / "BPCL.csv"))


@pytest.mark.parametrize("name,content,message", [
    ("EMPTY", b"", "No columns to parse"),
    ("BINARY", b"date,open\n\xff\xfe,1\n", "utf-8"),
])
def test_unreadable_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / f"{name}.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{name}.csv: cannot read this file as bars: .*{message}"):
        load_bars([name], source=tmp_path)
