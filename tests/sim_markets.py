"""Small random markets for the simulator tests."""

from __future__ import annotations

import numpy as np

from fastrl.data.block import MarketBlock


def random_market(seed: int = 0, lengths: tuple[int, ...] = (120, 80, 200), num_features: int = 3,
                  vol: float = 0.02) -> MarketBlock:
    """Geometric random walks with gappy opens, one segment per length."""
    rng = np.random.default_rng(seed)
    opens, closes = [], []
    for n in lengths:
        log_close = np.log(100.0) + np.cumsum(rng.normal(0.0, vol, n))
        close = np.exp(log_close)
        prev = np.concatenate([[close[0]], close[:-1]])
        opens.append(prev * np.exp(rng.normal(0.0, vol / 2, n)))
        closes.append(close)
    total = int(sum(lengths))
    return MarketBlock(
        symbols=tuple(f"SYM{i}" for i in range(len(lengths))),
        open=np.concatenate(opens),
        close=np.concatenate(closes),
        features=rng.normal(size=(total, num_features)).astype(np.float32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
    )


def constant_market(price: float = 100.0, length: int = 50, num_features: int = 2) -> MarketBlock:
    return MarketBlock(
        symbols=("FLAT",),
        open=np.full(length, price),
        close=np.full(length, price),
        features=np.zeros((length, num_features), np.float32),
        offsets=np.array([0, length]),
    )


def intraday_market(seed: int = 0, sessions: tuple[int, ...] = (2, 3, 1), num_features: int = 3,
                    vol: float = 0.003, keep: float = 0.9) -> MarketBlock:
    """5-minute bars (starts 09:15 .. 15:25 local time) over a few sessions per segment, with
    about 1 - ``keep`` of the bars missing at random so sessions end at odd times."""
    rng = np.random.default_rng(seed)
    day_starts = np.datetime64("2024-01-01T09:15", "ns")
    bar_times = np.arange(75) * np.timedelta64(5, "m")
    opens, closes, stamps, lengths = [], [], [], []
    for k, n_sessions in enumerate(sessions):
        days = [day_starts + np.timedelta64(10 * k + d, "D") for d in range(n_sessions)]
        seg = np.concatenate([day + bar_times[rng.random(75) < keep] for day in days])
        n = len(seg)
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
        prev = np.concatenate([[close[0]], close[:-1]])
        opens.append(prev * np.exp(rng.normal(0.0, vol / 2, n)))
        closes.append(close)
        stamps.append(seg)
        lengths.append(n)
    total = int(sum(lengths))
    return MarketBlock(
        symbols=tuple(f"MIS{i}" for i in range(len(sessions))),
        open=np.concatenate(opens),
        close=np.concatenate(closes),
        features=rng.normal(size=(total, num_features)).astype(np.float32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        timestamps=np.concatenate(stamps),
        freq="5min",
    )
