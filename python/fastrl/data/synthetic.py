"""Seeded synthetic markets: GBM, regime switching, a planted, learnable signal, and null
markets resampled from real bars (``block_bootstrap``).

All generators return ``symbol -> DataFrame`` in the layout of :func:`load_bars`
(DatetimeIndex, float64 open/high/low/close/volume) on a business-day calendar; 5-minute
markets use 75-bar NSE sessions (09:15-15:25). Each bar's open equals the previous close
unless ``gap_fraction`` moves part of the variance into an opening gap, so a decision at
bar ``t`` filled at ``open[t+1]`` earns the whole next-bar return.

Planted signal (``planted_signal``): per symbol, an observed signal ``s_t ~ N(0, 1)``
(AR(1) with ``persistence`` phi, stationary) is published at bar ``t``'s close in the column
``signal``, and the next bar's log return is

    r_{t+1} = sigma_bar * (rho * s_t + sqrt(1 - rho^2) * eps_{t+1}),   eps ~ N(0, 1) iid,

so ``corr(s_t, r_{t+1}) = rho = signal_strength``. The oracle that holds ``sign(s_t)`` over
bar ``t + 1`` (what a discrete short/flat/long agent can do) earns per bar a log return with
mean ``sigma_bar * rho * sqrt(2/pi)`` and standard deviation
``sigma_bar * sqrt(1 - 2 rho^2 / pi)``, hence the cost-free annualised oracle Sharpe

    rho * sqrt(2/pi) / sqrt(1 - 2 rho^2 / pi) * sqrt(bars per year)

(:func:`planted_oracle_sharpe`), independent of sigma and phi. Trading costs lower it; a
larger ``persistence`` lowers the turnover the oracle needs.

Block bootstrap (``block_bootstrap``): whole real days in a shuffled order. See
:func:`block_bootstrap`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from fastrl.data.loaders import available, load_bars
from fastrl.data.splits import MarketSplits, build_market_from_bars
from fastrl.data.validate import FREQS, check_choice, validate_bars
from fastrl.features_long import DEFAULT_FEATURE_SETS

BARS_PER_DAY = {"1d": 1, "5min": 75}
BARS_PER_YEAR = {"1d": 252, "5min": 252 * 75}
KINDS = ("gbm", "regime_switching", "planted_signal", "block_bootstrap")
BOOTSTRAP_SYMBOLS = ("BPCL", "HDFCLIFE")  # block_bootstrap's default sources: fastrl-train's
SESSION_START = pd.Timedelta(hours=9, minutes=15)


def trading_timestamps(
    n_bars: int, freq: str = "1d", start: str = "2020-01-01"
) -> pd.DatetimeIndex:
    """``n_bars`` bar timestamps on business days (5-minute bars: 75 per session)."""
    check_choice("freq", freq, FREQS)
    per_day = BARS_PER_DAY[freq]
    n_days = -(-n_bars // per_day)
    days = pd.bdate_range(start, periods=n_days).as_unit("ns")
    if per_day == 1:
        return pd.DatetimeIndex(days, name="timestamp")
    offsets = SESSION_START + pd.to_timedelta(np.arange(per_day) * 5, unit="min")
    stamps = (days.to_numpy()[:, None] + offsets.to_numpy()[None, :]).ravel()[:n_bars]
    return pd.DatetimeIndex(stamps, name="timestamp")


def _check_sizes(n_symbols: int, n_bars: int) -> None:
    if not isinstance(n_symbols, (int, np.integer)) or n_symbols < 1:
        raise ValueError(f"n_symbols must be a positive integer, got {n_symbols!r}")
    if not isinstance(n_bars, (int, np.integer)) or n_bars < 2:
        raise ValueError(f"n_bars must be an integer >= 2, got {n_bars!r}")


def _symbols(n_symbols: int) -> list[str]:
    width = max(3, len(str(n_symbols - 1)))
    return [f"SYN{i:0{width}d}" for i in range(n_symbols)]


def _bars_from_log_returns(
    log_returns: np.ndarray,
    stamps: pd.DatetimeIndex,
    rng: np.random.Generator,
    *,
    s0: float,
    gap_fraction: float,
    sigma_bar: float,
) -> pd.DataFrame:
    """OHLCV for one symbol from per-bar close-to-close log returns."""
    if not 0.0 <= gap_fraction < 1.0:
        raise ValueError(f"gap_fraction must be in [0, 1), got {gap_fraction}")
    n = log_returns.shape[0]
    log_close = math.log(s0) + np.cumsum(log_returns)
    close = np.exp(log_close)
    prev_close = np.concatenate([[s0], close[:-1]])
    # the gap takes gap_fraction of each bar's move; the rest happens between open and close
    open_ = prev_close * np.exp(gap_fraction * log_returns)
    wick = np.abs(rng.standard_normal((2, n))) * (0.5 * sigma_bar)
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.round(np.exp(rng.normal(np.log(1e5), 0.5, n)))
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=stamps
    )


def _per_bar(freq: str, mu: float, sigma: float) -> tuple[float, float]:
    """Annual drift/vol -> per-bar drift of the log price and per-bar vol."""
    bars = BARS_PER_YEAR[freq]
    sigma_bar = sigma / math.sqrt(bars)
    return mu / bars - 0.5 * sigma_bar**2, sigma_bar


def gbm(
    n_symbols: int = 1,
    n_bars: int = 1000,
    *,
    freq: str = "1d",
    mu: float = 0.05,
    sigma: float = 0.2,
    seed: int = 0,
    s0: float = 100.0,
    gap_fraction: float = 0.0,
    start: str = "2020-01-01",
) -> dict[str, pd.DataFrame]:
    """Independent geometric Brownian motions (``mu``, ``sigma`` annualised)."""
    _check_sizes(n_symbols, n_bars)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    stamps = trading_timestamps(n_bars, freq, start)
    drift, sigma_bar = _per_bar(freq, mu, sigma)
    rng = np.random.default_rng(seed)
    out = {}
    for symbol in _symbols(n_symbols):
        log_returns = drift + sigma_bar * rng.standard_normal(n_bars)
        out[symbol] = _bars_from_log_returns(
            log_returns, stamps, rng, s0=s0, gap_fraction=gap_fraction, sigma_bar=sigma_bar
        )
    return out


def regime_switching(
    n_symbols: int = 1,
    n_bars: int = 1000,
    *,
    freq: str = "1d",
    regimes: Sequence[tuple[float, float]] = ((0.3, 0.15), (-0.4, 0.35)),
    stay_probability: float = 0.99,
    seed: int = 0,
    s0: float = 100.0,
    gap_fraction: float = 0.0,
    start: str = "2020-01-01",
) -> dict[str, pd.DataFrame]:
    """Markov regime switching between (annual drift, annual vol) pairs.

    Each bar the regime stays with ``stay_probability`` and otherwise jumps to one of the
    other regimes uniformly. The hidden regime index is kept in a ``regime`` column (not a
    feature unless asked for) so tests and plots can use it.
    """
    _check_sizes(n_symbols, n_bars)
    if len(regimes) < 2:
        raise ValueError("regime_switching needs at least two (mu, sigma) regimes")
    if not 0.0 <= stay_probability <= 1.0:
        raise ValueError(f"stay_probability must be in [0, 1], got {stay_probability}")
    if any(sigma <= 0 for _, sigma in regimes):
        raise ValueError("every regime's sigma must be positive")
    params = np.array([_per_bar(freq, mu, sigma) for mu, sigma in regimes])
    n_regimes = len(regimes)
    stamps = trading_timestamps(n_bars, freq, start)
    rng = np.random.default_rng(seed)
    out = {}
    for symbol in _symbols(n_symbols):
        switch = rng.random(n_bars) >= stay_probability
        jumps = rng.integers(1, n_regimes, n_bars)  # move by 1..K-1: always a different regime
        state = np.empty(n_bars, dtype=np.int64)
        current = int(rng.integers(n_regimes))
        for t in range(n_bars):  # a Markov chain: each state depends on the previous one
            if switch[t]:
                current = (current + int(jumps[t])) % n_regimes
            state[t] = current
        drift, sigma_bar = params[state, 0], params[state, 1]
        log_returns = drift + sigma_bar * rng.standard_normal(n_bars)
        frame = _bars_from_log_returns(
            log_returns,
            stamps,
            rng,
            s0=s0,
            gap_fraction=gap_fraction,
            sigma_bar=float(params[:, 1].mean()),
        )
        frame["regime"] = state.astype(np.float64)
        out[symbol] = frame
    return out


def planted_oracle_sharpe(signal_strength: float, freq: str = "1d") -> float:
    """Annualised cost-free Sharpe of holding sign(signal) (see the module docstring)."""
    check_choice("freq", freq, FREQS)
    rho = float(signal_strength)
    per_bar = rho * math.sqrt(2 / math.pi) / math.sqrt(1 - 2 * rho**2 / math.pi)
    return per_bar * math.sqrt(BARS_PER_YEAR[freq])


def planted_signal(
    n_symbols: int = 1,
    n_bars: int = 1000,
    signal_strength: float = 0.1,
    seed: int = 0,
    *,
    freq: str = "1d",
    sigma: float = 0.2,
    persistence: float = 0.0,
    s0: float = 100.0,
    start: str = "2020-01-01",
) -> tuple[dict[str, pd.DataFrame], float]:
    """Bars whose next return is partly predictable from the observed ``signal`` column.

    Returns ``(bars, oracle_sharpe)``: ``bars`` as from :func:`load_bars` plus a float64
    ``signal`` column; ``oracle_sharpe`` from :func:`planted_oracle_sharpe`.
    """
    _check_sizes(n_symbols, n_bars)
    if not 0.0 <= signal_strength < 1.0:
        raise ValueError(f"signal_strength must be in [0, 1), got {signal_strength}")
    if not 0.0 <= persistence < 1.0:
        raise ValueError(f"persistence must be in [0, 1), got {persistence}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    stamps = trading_timestamps(n_bars, freq, start)
    sigma_bar = sigma / math.sqrt(BARS_PER_YEAR[freq])
    rho = float(signal_strength)
    rng = np.random.default_rng(seed)
    out = {}
    for symbol in _symbols(n_symbols):
        innovations = rng.standard_normal(n_bars)
        signal = _ar1(innovations, persistence)
        noise = rng.standard_normal(n_bars)
        log_returns = sigma_bar * math.sqrt(1 - rho**2) * noise
        log_returns[1:] += sigma_bar * rho * signal[:-1]
        frame = _bars_from_log_returns(
            log_returns, stamps, rng, s0=s0, gap_fraction=0.0, sigma_bar=sigma_bar
        )
        frame["signal"] = signal
        out[symbol] = frame
    return out, planted_oracle_sharpe(rho, freq)


def _ar1(innovations: np.ndarray, persistence: float) -> np.ndarray:
    """Stationary unit-variance AR(1) driven by ``innovations`` (starts stationary)."""
    if persistence == 0.0:
        return innovations.copy()
    scale = math.sqrt(1 - persistence**2)
    values = innovations.tolist()  # a true recursion: a plain loop over floats is fastest here
    for t in range(1, len(values)):
        values[t] = persistence * values[t - 1] + scale * values[t]
    return np.asarray(values, dtype=np.float64)


def bootstrap_bars(
    bars: pd.DataFrame,
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
    *,
    n_bars: int | None = None,
    block_length: float | None = None,
    start: str = "2020-01-01",
) -> tuple[pd.DataFrame, float]:
    """One symbol's daily bars rebuilt from a stationary block bootstrap of its own days.

    Each real day ``t >= 1`` becomes the tuple (open, high, low, close) / close[t-1] plus
    its volume. Days are drawn in blocks of geometric length with mean ``block_length``
    (Politis & Romano's stationary bootstrap: arch's ``StationaryBootstrap``, which wraps
    around the end of the history), and prices are rebuilt from the first real close by
    chaining the drawn close ratios; each drawn day's open/high/low are its ratios times
    the new previous close. A day keeps its shape (gap, range, body) and volume, so every
    bar is as valid as the real one (high/low are still widened to cover open and close
    against rounding). Returns ``(bars, block_length used)``.

    ``block_length`` None: :func:`fastrl.stats.bootstrap_block_length` of the daily log
    returns, the largest Politis-White estimate over the returns and their squares, so
    volatility clustering survives. ``n_bars`` None: as many bars as real days after the
    first, on the real calendar; otherwise ``n_bars`` business days from ``start`` (more
    than the history: independent draws are concatenated).
    """
    from arch.bootstrap import StationaryBootstrap

    if len(bars) < 3:
        raise ValueError(f"bootstrap_bars needs at least 3 bars, got {len(bars)}")
    prices = bars[["open", "high", "low", "close"]].to_numpy(dtype=np.float64)
    if not (np.all(np.isfinite(prices)) and np.all(prices > 0)):
        raise ValueError("bootstrap_bars needs finite, positive prices (validate the bars)")
    ratios = prices[1:] / prices[:-1, 3:4]  # (days, 4): open/high/low/close over prev close
    volume = bars["volume"].to_numpy(dtype=np.float64)[1:] if "volume" in bars else None
    days = ratios.shape[0]
    if block_length is None:
        # lazy: fastrl.stats loads arch and scipy, which only this bootstrap needs
        from fastrl.stats import bootstrap_block_length

        block_length = bootstrap_block_length(np.log(ratios[:, 3]))
    if not block_length >= 1.0:
        raise ValueError(f"block_length must be at least 1 bar, got {block_length}")
    length = days if n_bars is None else int(n_bars)
    if length < 2:
        raise ValueError(f"n_bars must be an integer >= 2, got {n_bars!r}")
    sampler = StationaryBootstrap(float(block_length), np.arange(days),
                                  seed=np.random.default_rng(seed))
    index = np.concatenate([sampler.update_indices() for _ in range(-(-length // days))])
    drawn = ratios[index[:length]]
    close = prices[0, 3] * np.cumprod(drawn[:, 3])
    previous = np.concatenate([[prices[0, 3]], close[:-1]])
    open_, high, low, close = (previous * drawn[:, k] for k in range(4))
    stamps = (pd.DatetimeIndex(bars.index[1:], name="timestamp") if n_bars is None
              else trading_timestamps(length, "1d", start))
    frame = pd.DataFrame({
        "open": open_,
        "high": np.maximum.reduce([high, open_, close]),
        "low": np.minimum.reduce([low, open_, close]),
        "close": close,
        "volume": volume[index[:length]] if volume is not None else np.full(length, np.nan),
    }, index=stamps)
    return frame, float(block_length)


def block_bootstrap(
    n_symbols: int | None = None,
    n_bars: int | None = None,
    *,
    symbols: Sequence[str] | None = None,
    freq: str = "1d",
    seed: int = 0,
    source: str = "bundled",
    block_length: float | None = None,
    start: str = "2020-01-01",
) -> dict[str, pd.DataFrame]:
    """Null markets: real daily bars of ``symbols`` resampled in blocks (:func:`bootstrap_bars`).

    Volatility, fat tails and clustering are the real series'; the order of the blocks is
    random, so nothing an agent learns from the training years carries over to the test
    days beyond the dependence inside a block. What stays:

    - the drift: buy-and-hold earns the real average return, as does an agent that holds;
    - the dependence within a block (mean ``block_length`` days), real short-range
      autocorrelation and volatility clustering included; a policy that times it (or
      steps out of high-volatility stretches, which raises a Sharpe ratio when the mean
      does not rise with the volatility) can beat buy-and-hold a little, as on real bars;
    - not the cross-correlation of symbols: each symbol is resampled on its own.

    Symbols keep their source names, so a config that names them runs on the null copy
    unchanged. ``symbols`` None: the first ``n_symbols`` of BPCL, HDFCLIFE, then the
    other symbols of ``source`` alphabetically (default: BPCL and HDFCLIFE). Each symbol
    draws from its own stream of ``seed`` (``SeedSequence(seed).spawn``), and the frame's
    ``attrs`` record the source symbol, block length and seed. Daily bars only: a
    5-minute day would need whole sessions as the resampled unit.
    """
    check_choice("freq", freq, FREQS)
    if freq != "1d":
        raise ValueError("block_bootstrap resamples whole days: freq must be '1d'")

    if symbols is None:
        pool = [*BOOTSTRAP_SYMBOLS, *(s for s in available("1d", source)
                                     if s not in BOOTSTRAP_SYMBOLS)]
        count = len(BOOTSTRAP_SYMBOLS) if n_symbols is None else n_symbols
        _check_sizes(count, 2)
        if count > len(pool):
            raise ValueError(f"n_symbols={count} but source {source!r} holds {len(pool)}")
        symbols = pool[:count]
    symbols = list(symbols)
    if n_symbols is not None and n_symbols != len(symbols):
        raise ValueError(f"n_symbols={n_symbols} but {len(symbols)} symbols were named")
    if n_bars is not None:
        _check_sizes(len(symbols), n_bars)
    real = load_bars(symbols, "1d", source)
    streams = np.random.SeedSequence(seed).spawn(len(symbols))
    out = {}
    for symbol, stream in zip(symbols, streams, strict=True):
        frame, block = bootstrap_bars(real[symbol], stream, n_bars=n_bars,
                                      block_length=block_length, start=start)
        frame.attrs = {"source_symbol": symbol, "block_length": block, "seed": int(seed)}
        out[symbol] = frame
    return out


def build_synthetic_market(
    kind: str = "planted_signal",
    n_symbols: int = 2,
    n_bars: int | None = 2000,
    test_days: int = 60,
    val_days: int = 0,
    window: int = 32,
    seed: int = 0,
    freq: str = "1d",
    normaliser_state: dict | None = None,
    feature_sets: Sequence[str] = DEFAULT_FEATURE_SETS,
    **kind_kwargs,
) -> MarketSplits:
    """A synthetic market through the same validation/feature/split path as real data.

    ``normaliser_state``: as for :func:`fastrl.data.build_market` (the features of another
    split of the same bars, normalised as that split's agent was trained).

    For ``planted_signal`` the ``signal`` column is kept as an extra (normalised) feature
    so the env observes it, and ``summary["oracle_sharpe"]`` holds the oracle Sharpe.
    ``block_bootstrap`` takes its keywords (``symbols``, ``source``, ``block_length``);
    ``n_bars`` None keeps each symbol's real calendar.
    """
    check_choice("kind", kind, KINDS)
    oracle = None
    extra: tuple[str, ...] = ()
    if kind == "gbm":
        bars = gbm(n_symbols, n_bars, freq=freq, seed=seed, **kind_kwargs)
    elif kind == "regime_switching":
        bars = regime_switching(n_symbols, n_bars, freq=freq, seed=seed, **kind_kwargs)
    elif kind == "block_bootstrap":
        bars = block_bootstrap(n_symbols, n_bars, freq=freq, seed=seed, **kind_kwargs)
    else:
        bars, oracle = planted_signal(n_symbols, n_bars, seed=seed, freq=freq, **kind_kwargs)
        extra = ("signal",)
    validated = {
        symbol: validate_bars(
            frame.reset_index(), file_label=f"synthetic {symbol}", freq=freq, extra_columns=extra
        ).bars
        for symbol, frame in bars.items()
    }
    synthetic = {
        "kind": kind,
        "n_symbols": int(n_symbols),
        "n_bars": None if n_bars is None else int(n_bars),
        "seed": int(seed),
        "params": {k: v for k, v in kind_kwargs.items()},
        "oracle_sharpe": oracle,
    }
    market = build_market_from_bars(
        validated,
        freq,
        test_days=test_days,
        val_days=val_days,
        window=window,
        extra_columns=extra,
        normaliser_state=normaliser_state,
        source=f"synthetic:{kind}",
        meta={"synthetic": synthetic},
        feature_sets=feature_sets,
    )
    market.summary["synthetic"] = synthetic
    market.summary["oracle_sharpe"] = oracle
    return market
