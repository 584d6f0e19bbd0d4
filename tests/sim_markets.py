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
