"""A single-symbol run's held-out test block: the test split its config describes, rebuilt
with the checkpoint's feature normaliser (on the training data, or on newer bars from a
replacement ``data`` path whose test rows must be bars the agent never saw)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fastrl.data.block import MarketBlock
from fastrl.data.splits import build_market
from fastrl.markets.results import EvaluationError


def test_block(agent: Any, symbols: list[str] | tuple[str, ...] | None, days: int | None,
               data: str | os.PathLike | None, load: Callable[[], Any]
               ) -> tuple[MarketBlock, dict[str, Any]]:
    """(the test block, what the report says about it): ``days`` (default: the training's)
    may not exceed the training's test days on the training data, since more days would
    reach back into bars the agent trained or was tuned on. ``load``: the run's splits as
    training built them (the synthetic market is regenerated, not rebuilt from bars)."""
    data_config = agent.config.data
    trained_days = int(data_config.test_days)
    days = trained_days if days is None else int(days)
    if days < 1:
        raise EvaluationError(f"--test-days must be >= 1, got {days}")
    if data is not None and not Path(data).exists():
        raise EvaluationError(f"data path {data} does not exist")
    if data is None and days > trained_days:
        raise EvaluationError(
            f"--test-days {days} exceeds the {trained_days} test days held out in training: "
            f"the extra days were used for training or validation; use at most {trained_days} "
            "(or --data with newer bars)"
        )
    market = build_test_block(agent, symbols, days, data, load)
    context = int(market.meta.get("context_rows", 0))
    info = {
        "symbols": list(market.symbols),
        "test_days": days,
        "data": str(data) if data is not None else data_config.source,
        "held_out_check": market.meta.get(
            "held_out_check", "test days lie inside the training run's held-out test split"
        ),
        "test_bars": {
            market.symbols[s]: [
                stamp(market, int(market.offsets[s]) + context),
                stamp(market, int(market.offsets[s + 1]) - 1),
            ]
            for s in range(market.num_segments)
        },
    }
    return market, info


def build_test_block(
    agent: Any,
    symbols: list[str] | tuple[str, ...] | None,
    days: int,
    data: str | os.PathLike | None,
    load: Callable[[], Any],
) -> MarketBlock:
    """The test split the agent's config describes, with its training feature normaliser."""
    config = agent.config
    data_config = config.data
    if data is None and data_config.source == "synthetic":
        if symbols:
            raise EvaluationError("a run on the synthetic market evaluates all its symbols")
        if days != data_config.test_days:
            # another split would refit the feature normaliser on other training rows
            raise EvaluationError(
                f"a synthetic-market run is evaluated on its own {data_config.test_days} "
                f"test days, not {days}"
            )
        # the same seed regenerates the same bars, split and normaliser as in training
        try:
            return load().test
        except ValueError as exc:
            raise EvaluationError(str(exc)) from exc
    trained_symbols = tuple(data_config.symbols)
    chosen = tuple(symbols) if symbols else trained_symbols
    unknown = [s for s in chosen if s not in trained_symbols]
    if unknown:
        raise EvaluationError(
            f"the checkpoint was trained on symbols {list(trained_symbols)}, not {unknown}"
        )
    state = agent.feature_state
    # on the training data every symbol splits on the training symbols' common calendar, so a
    # subset is evaluated on the same test days it was held out on; the market feature sets
    # read every trained symbol (the universe), so new data must hold them all
    universe = {"market", "xs_rank"} & set(data_config.features)
    try:
        splits = build_market(
            list(chosen if data is not None and not universe else trained_symbols),
            freq=data_config.freq,
            source=str(data) if data is not None else data_config.source,
            test_days=days,
            val_days=0 if data is not None else data_config.val_days,
            window=config.env.window,
            normaliser_state=state,
            repair_ticks=data_config.repair_ticks,
            feature_sets=data_config.features,
        )
    except (ValueError, OSError) as exc:  # data errors name the file, row and column
        raise EvaluationError(str(exc)) from exc
    if data is not None:
        test = segments_of(splits.test, chosen)
        check_held_out(agent, test, state)
        return test
    return segments_of(splits.test, chosen)


def segments_of(block: MarketBlock, symbols: tuple[str, ...]) -> MarketBlock:
    """The segments of ``symbols`` from ``block``, in that order."""
    if tuple(symbols) == block.symbols:
        return block
    keep = [block.segment(block.symbols.index(symbol)) for symbol in symbols]
    segments = [{"symbol": symbol, **{key: None if getattr(block, key) is None
                                      else getattr(block, key)[rows]
                                      for key in ("open", "close", "features", "timestamps",
                                                  "high", "low")}}
                for symbol, rows in zip(symbols, keep, strict=True)]
    return MarketBlock.from_segments(segments, block.feature_names, block.freq, block.meta)


def check_held_out(agent: Any, market: MarketBlock, normaliser_state: Any) -> None:
    """Raises when replacement data's test rows start before the training test split did.

    The training split is rebuilt from the training source; rows before its first test
    day were trained or validated on. Without the training source nothing can be checked
    and ``market.meta["held_out_check"]`` says so.
    """
    config = agent.config
    data_config = config.data
    try:
        training = build_market(
            list(data_config.symbols),  # the training split: the trained symbols' calendar
            freq=data_config.freq,
            source=data_config.source,
            test_days=data_config.test_days,
            val_days=data_config.val_days,
            window=config.env.window,
            normaliser_state=normaliser_state,
            repair_ticks=data_config.repair_ticks,
            feature_sets=data_config.features,
        )
    except (ValueError, OSError) as exc:
        market.meta["held_out_check"] = f"not verified: training data unavailable ({exc})"
        return
    held_out = training.summary["date_ranges"]["test"]
    context = int(market.meta.get("context_rows", 0))
    for s, symbol in enumerate(market.symbols):
        first = np.datetime64(stamp(market, int(market.offsets[s]) + context))
        since = np.datetime64(held_out[symbol][0])
        if first < since:
            raise EvaluationError(
                f"the test days of {symbol} in the given data start on {str(first)[:10]}, but "
                f"the agent trained or was validated on bars up to the day before "
                f"{str(since)[:10]}; use fewer --test-days or newer data"
            )
    market.meta["held_out_check"] = "test days start on or after the training test split"


def stamp(market: MarketBlock, row: int) -> str | None:
    if market.timestamps is None:
        return None
    return str(np.asarray(market.timestamps)[int(row)])


__all__ = ["build_test_block", "check_held_out", "segments_of", "test_block"]
