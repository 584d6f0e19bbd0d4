"""Bad input to fastrl-paper and fastrl-signal: exit 2, a message naming the problem, and the
journal unchanged (same bytes; no decision written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fastrl.cli.paper import main as paper_main
from fastrl.cli.signal import main as signal_main

from live_runs import backtest, bundled_copy, first_session, train_run

pytest.importorskip("fastrl._core")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A daily run, its feed (bundled BPCL as a CSV file) and a journal of its first sessions."""
    folder = tmp_path_factory.mktemp("live-bad")
    run_dir = train_run("daily", folder)
    start = first_session(backtest(run_dir))
    feed = bundled_copy(["BPCL"], folder / "feed")
    journal = folder / "journal.db"
    assert paper_main([str(run_dir), "--bars", str(feed), "--from", start, "--to",
                       "2022-11-01", "--journal", str(journal), "--quiet"]) == 0
    return {"folder": folder, "run": run_dir, "feed": feed, "journal": journal, "start": start}


def edit_feed(feed: Path, target: Path, change) -> Path:
    """A copy of the feed with ``change(frame) -> frame`` applied to BPCL.csv."""
    shutil.copytree(feed, target)
    frame = pd.read_csv(target / "BPCL.csv")
    change(frame).to_csv(target / "BPCL.csv", index=False)
    return target


def _row(frame: pd.DataFrame, date: str) -> int:
    return int(frame.index[frame["date"] == date][0])


def stale(frame):  # the feed stopped updating two sessions ago
    return frame[frame["date"] <= "2022-11-04"]


def duplicate(frame):
    return pd.concat([frame, frame.tail(1)], ignore_index=True)


def out_of_order(frame):
    rows = list(frame.index)
    a, b = _row(frame, "2022-11-03"), _row(frame, "2022-11-04")
    rows[a], rows[b] = rows[b], rows[a]
    return frame.loc[rows]


def nan_price(frame):
    frame.loc[_row(frame, "2022-11-07"), "close"] = float("nan")
    return frame


def zero_price(frame):
    frame.loc[_row(frame, "2022-11-07"), "open"] = 0.0
    return frame


def gap(frame):  # 60 rows (about 12 weeks) missing before the sessions still to trade
    end = _row(frame, "2022-11-01")
    return frame.drop(index=range(end - 62, end - 2))


def missing_symbol(feed: Path, target: Path) -> Path:
    shutil.copytree(feed, target)
    (target / "BPCL.csv").rename(target / "HPCL.csv")
    return target


def mismatched_run(run_dir: Path, target: Path) -> Path:
    shutil.copytree(run_dir, target)
    config = json.loads((target / "config.json").read_text())
    config["env"]["window"] = 16  # the checkpoint was trained with 8
    (target / "config.json").write_text(json.dumps(config))
    return target


def other_run(run_dir: Path, target: Path) -> Path:
    """The same config, another checkpoint (another training's weights)."""
    import torch

    from fastrl.ppo.checkpoint import atomic_torch_save

    shutil.copytree(run_dir, target)
    for checkpoint in (target / "checkpoints").glob("*.pt"):
        state = torch.load(checkpoint, weights_only=True)
        state["global_step"] = int(state.get("global_step") or 0) + 1
        atomic_torch_save(state, checkpoint)
    return target


CASES = {
    "stale bar": (stale, None, "stale bar"),
    "missing symbol": (None, "symbol", "missing symbol"),
    "duplicate bar": (duplicate, None, "duplicate"),
    "out-of-order bar": (out_of_order, None, "out-of-order bars"),
    "NaN price": (nan_price, None, "missing price"),
    "non-positive price": (zero_price, None, "non-positive price"),
    "gap longer than the look-back": (gap, None, "gap longer than the feature look-back"),
    "checkpoint does not match config": (None, "config", "does not match"),
    "journal of another run": (None, "other", "written by another run"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_names_it_and_leaves_the_journal_unchanged(setup, case, tmp_path,
                                                                     capsys):
    change, special, message = CASES[case]
    run_dir, feed = setup["run"], setup["feed"]
    if change is not None:
        feed = edit_feed(feed, tmp_path / "feed", change)
    elif special == "symbol":
        feed = missing_symbol(feed, tmp_path / "feed")
    elif special == "config":
        run_dir = mismatched_run(run_dir, tmp_path / "run")
    elif special == "other":
        run_dir = other_run(run_dir, tmp_path / "run")
    journal = tmp_path / "journal.db"
    shutil.copy(setup["journal"], journal)
    before = journal.read_bytes()
    extra = ["--to", "2022-11-09"] if case == "stale bar" else []
    code = paper_main([str(run_dir), "--bars", str(feed), "--from", setup["start"],
                       "--journal", str(journal), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("fastrl-paper: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert journal.read_bytes() == before  # no decision written
    # a new journal is not even created
    fresh = tmp_path / "fresh.db"
    if case != "journal of another run":
        assert paper_main([str(run_dir), "--bars", str(feed), "--from", setup["start"],
                           "--journal", str(fresh), "--quiet", *extra]) == 2
        assert not fresh.exists()
        capsys.readouterr()


@pytest.mark.parametrize("case", ["stale bar", "missing symbol", "out-of-order bar",
                                  "checkpoint does not match config"])
def test_signal_refuses_the_same_input(setup, case, tmp_path, capsys):
    change, special, message = CASES[case]
    run_dir, feed = setup["run"], setup["feed"]
    if change is not None:
        feed = edit_feed(feed, tmp_path / "feed", change)
    elif special == "symbol":
        feed = missing_symbol(feed, tmp_path / "feed")
    else:
        run_dir = mismatched_run(run_dir, tmp_path / "run")
    out = tmp_path / "signal.json"
    extra = ["--asof", "2022-11-09"] if case == "stale bar" else []
    code = signal_main([str(run_dir), "--bars", str(feed), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not out.exists()
