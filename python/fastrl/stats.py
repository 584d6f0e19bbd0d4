"""Uncertainty of one record: Sharpe error bars, PSR, and the agent against a benchmark.

Units. ``returns`` are per-bar simple returns (``metrics.returns_from_equity``). A Sharpe
ratio here is either *per bar* (``metrics.sharpe_per_bar``: mean over the ddof=1 standard
deviation, risk-free 0) or *annualised* (per bar x sqrt(``metrics.periods_per_year(freq)``),
the number ``metrics.sharpe_ratio`` prints). Every function says which it takes and returns.

Moments. The Sharpe-ratio variance of Lo (2002) and Mertens (2002), in the form of Bailey &
Lopez de Prado (2012),

    Var(SR) = (1 - skew * SR + (kurt - 1) / 4 * SR**2) / (T - 1),

uses the *non-excess* kurtosis ``kurt`` (3 for a normal distribution, so the bracket is
1 + SR**2 / 2). Written with the excess kurtosis ``k`` the bracket reads
1 - skew * SR + (k + 2) / 4 * SR**2; mixing the two forms is the classic mistake. Skewness and
kurtosis are the moments of the sample itself (scipy's ``bias=True``): for any real
distribution kurt >= 1 + skew**2, so the bracket is never negative, which the
"unbiased" small-sample corrections do not guarantee.

Library choices: scipy for moments and the normal distribution, ``arch`` for the stationary
bootstrap (Politis & Romano 1994) and its block length (Politis & White 2004, corrected by
Patton, Politis & White 2009), and its Bartlett kernel for the Newey-West (1987) long-run
variance.

Short samples. The primitives (``sharpe_se``, ``probabilistic_sharpe_ratio``, the bootstrap)
raise ``ValueError`` when the sample is too short to compute them. The report-facing
summaries (``sharpe_stats``, ``prob_agent_beats``) never raise for shortness: what cannot
be estimated is NaN (``None`` in ``as_dict``) and ``verdict`` says there were too few bars.

The verdict. "Does the agent beat the benchmark" is the one-sided test of the mean active
return (agent minus benchmark, bar by bar; ``mean_test``), not a comparison of Sharpe
ratios: a mostly flat record has a tiny variance, so its Sharpe, and any bootstrap of a
Sharpe difference, claims edges its returns do not support. The Sharpe figures stay, with
error bars, as descriptions. Choosing among many configs or members is
:mod:`fastrl.selection`'s concern.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
from arch.bootstrap import StationaryBootstrap, optimal_block_length
from scipy import special, stats

from fastrl.metrics import EPS, bars_per_day, periods_per_year, sharpe_per_bar, sharpe_ratio

MIN_BARS = 10  # fewer bars than this: no bootstrap, no verdict (arch's block length fails too)
DEFAULT_REPS = 2000  # bootstrap resamples (Sharpe interval and SE) and permutations
DEFAULT_LEVEL = 0.9


# ----------------------------------------------------------------------------- input checks


def as_series(name: str, values: np.ndarray, min_n: int = 1) -> np.ndarray:
    """``values`` as a finite 1-D float64 array of at least ``min_n`` entries; a ValueError
    naming ``name`` and the first bad index otherwise."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-bar returns, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} has a non-finite value at index {bad}: {arr[bad]}")
    if arr.shape[0] < min_n:
        raise ValueError(f"{name} has {arr.shape[0]} entries; at least {min_n} are needed")
    return arr


def _check_level(level: float) -> float:
    if not (isinstance(level, (int, float)) and 0.0 < level < 1.0):
        raise ValueError(f"level must be a probability strictly between 0 and 1, got {level!r}")
    return float(level)


def check_reps(reps: int) -> int:
    """``reps`` (resamples, permutations) as a positive int; a ValueError otherwise."""
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    return int(reps)


# ----------------------------------------------------------------------------- moments


def sharpe_moments(r: np.ndarray) -> tuple[float, float, float]:
    """Per-bar Sharpe, skewness and non-excess kurtosis of a checked series."""
    sr = sharpe_per_bar(r)
    if sr == 0.0:
        # no measurable risk (or zero mean): the moment terms are multiplied by SR = 0
        return 0.0, 0.0, 3.0
    return sr, float(stats.skew(r)), float(stats.kurtosis(r, fisher=False))


def _sharpe_variance_bracket(sharpe: float, skew: float, kurtosis: float) -> float:
    """1 - skew * SR + (kurt - 1) / 4 * SR^2 with non-excess kurtosis; T-1 times Var(SR)."""
    bracket = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    return max(bracket, 0.0)  # >= 0 in exact arithmetic for sample moments; guard rounding


class SharpeSE(NamedTuple):
    """Standard error of the Sharpe ratio, per bar and annualised."""

    per_bar: float
    annual: float


def sharpe_se(returns: np.ndarray, freq: str = "1d") -> SharpeSE:
    """Standard error of the Sharpe ratio (Lo 2002 / Mertens 2002, skew and kurtosis aware).

    sqrt((1 - skew SR + (kurt - 1)/4 SR^2) / (T - 1)) with SR per bar and ``kurt`` the
    non-excess kurtosis; the annualised SE is the per-bar SE x sqrt(bars per year). It
    assumes i.i.d. returns; use ``sharpe_bootstrap_ci`` where serial dependence matters.
    """
    r = as_series("returns", returns, min_n=2)
    scale = math.sqrt(periods_per_year(freq))
    sr, skew, kurt = sharpe_moments(r)
    per_bar = math.sqrt(_sharpe_variance_bracket(sr, skew, kurt) / (r.shape[0] - 1))
    return SharpeSE(per_bar=per_bar, annual=per_bar * scale)


def psr_from_moments(
    sharpe: float, n: int, skew: float, kurtosis: float, sr_benchmark: float = 0.0
) -> float:
    """PSR from the per-bar Sharpe, bar count, skewness and *non-excess* kurtosis.

    Phi((SR - SR*) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1)/4 SR^2)), Bailey & Lopez de
    Prado (2012). ``sr_benchmark`` is per bar, like ``sharpe``.
    """
    if n < 2:
        raise ValueError(f"n must be at least 2 bars, got {n}")
    for name, value in (("sharpe", sharpe), ("skew", skew), ("kurtosis", kurtosis),
                        ("sr_benchmark", sr_benchmark)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    if kurtosis < 1.0:
        raise ValueError(f"kurtosis must be the non-excess kurtosis (>= 1), got {kurtosis}")
    bracket = _sharpe_variance_bracket(sharpe, skew, kurtosis)
    gap = sharpe - sr_benchmark
    if bracket <= EPS:
        # a two-point return distribution at one particular SR: no sampling spread left
        return 1.0 if gap > 0 else (0.0 if gap < 0 else 0.5)
    return float(stats.norm.cdf(gap * math.sqrt(n - 1) / math.sqrt(bracket)))


def probabilistic_sharpe_ratio(
    returns: np.ndarray, sr_benchmark: float = 0.0, *, freq: str | None = None
) -> float:
    """Probability that the true Sharpe exceeds ``sr_benchmark`` (Bailey & Lopez de Prado 2012).

    ``sr_benchmark`` is per bar when ``freq`` is None, annualised when ``freq`` is given.
    """
    r = as_series("returns", returns, min_n=2)
    if freq is not None:
        sr_benchmark = sr_benchmark / math.sqrt(periods_per_year(freq))
    sr, skew, kurt = sharpe_moments(r)
    return psr_from_moments(sr, r.shape[0], skew, kurt, sr_benchmark)


# ----------------------------------------------------------------------------- bootstrap


def bootstrap_block_length(*series: np.ndarray) -> float:
    """Mean block length for a stationary bootstrap of these series (Politis & White).

    The largest of arch's ``optimal_block_length`` over each series and its square: a
    Sharpe ratio depends on the variance too, so volatility clustering, which shows in
    squared returns rather than returns, must survive resampling. Floored at 1 bar (the
    i.i.d. bootstrap; also where the estimate is undefined on short or flat series) and
    capped at a quarter of the sample, so at least a few independent pieces get shuffled.
    """
    n = series[0].shape[0]
    candidates = [1.0]
    if n >= 2 * MIN_BARS:  # arch divides by zero on very short series
        columns = np.column_stack([c for s in series for c in (s, np.square(s - s.mean()))])
        columns = columns[:, np.std(columns, axis=0) > EPS]
        if columns.shape[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                estimates = optimal_block_length(columns)["stationary"].to_numpy()
            candidates.extend(float(b) for b in estimates if math.isfinite(b))
    return float(min(max(candidates), max(1.0, n / 4.0)))


def sharpe_bootstrap(
    returns: np.ndarray,
    freq: str = "1d",
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    *,
    block_length: float | None = None,
) -> np.ndarray:
    """``reps`` annualised Sharpe ratios of stationary-bootstrap resamples of ``returns``.

    arch's ``StationaryBootstrap``, mean block length from ``bootstrap_block_length``
    unless given. Deterministic given ``seed``.
    """
    r = as_series("returns", returns, min_n=MIN_BARS)
    reps = check_reps(reps)
    block = bootstrap_block_length(r) if block_length is None else float(block_length)
    if not block >= 1.0:
        raise ValueError(f"block_length must be at least 1 bar, got {block_length}")
    sampler = StationaryBootstrap(block, r, seed=np.random.default_rng(seed))
    return sampler.apply(lambda x: np.array([sharpe_ratio(x, freq)]), reps=reps)[:, 0]


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def sharpe_bootstrap_ci(
    returns: np.ndarray,
    freq: str = "1d",
    level: float = DEFAULT_LEVEL,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
    *,
    block_length: float | None = None,
) -> tuple[float, float]:
    """Two-sided ``level`` interval for the annualised Sharpe by stationary bootstrap.

    Percentile interval of the Sharpe over the ``reps`` resamples of ``sharpe_bootstrap``.
    """
    level = _check_level(level)
    values = sharpe_bootstrap(returns, freq, reps, seed, block_length=block_length)
    return _percentile_interval(values, level)


# ----------------------------------------------------------------------------- summaries


def _json_number(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


@dataclass(frozen=True)
class SharpeStats:
    """A Sharpe ratio with its error bars; every Sharpe figure annualised.

    ``se`` is the standard error shown: the larger of the Lo/Mertens SE (``se_lo_mertens``)
    and the standard deviation of the stationary-bootstrap Sharpe (``se_bootstrap``);
    ``se_method`` names the one shown ("lo-mertens" or "bootstrap"). Lo/Mertens alone can
    collapse: its variance bracket 1 - skew SR + (kurt - 1)/4 SR^2 nears 0 on a strongly
    skewed record (a mostly flat agent with a few large wins), far below the spread the
    resamples show. ``ci_low``/``ci_high`` are the bootstrap interval at ``level``;
    ``psr`` = Phi(Sharpe / se), the probability that the true Sharpe is above 0 from the
    SE shown (with the Lo/Mertens SE it is Bailey & Lopez de Prado's PSR). NaN where the
    sample is too short (``se``/``psr`` below 2 bars, the bootstrap below ``MIN_BARS``,
    where the SE shown is Lo/Mertens').
    """

    sharpe: float
    se: float
    ci_low: float
    ci_high: float
    psr: float
    n: int
    level: float
    se_method: str = "lo-mertens"
    se_lo_mertens: float = math.nan
    se_bootstrap: float = math.nan

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Plain dict for JSON; NaN (not estimable) becomes None."""
        return {key: _json_number(value) for key, value in asdict(self).items()}


def sharpe_stats(
    returns: np.ndarray,
    freq: str = "1d",
    *,
    level: float = DEFAULT_LEVEL,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
) -> SharpeStats:
    """Fill a :class:`SharpeStats` for one return series; never raises for a short series."""
    r = as_series("returns", returns)
    level = _check_level(level)
    n = int(r.shape[0])
    sharpe = sharpe_ratio(r, freq)
    se = se_lo = se_boot = psr = low = high = math.nan
    method = "lo-mertens"
    if n >= 2:
        se = se_lo = sharpe_se(r, freq).annual
        psr = probabilistic_sharpe_ratio(r)
    if n >= MIN_BARS:
        resamples = sharpe_bootstrap(r, freq, reps, seed)
        low, high = _percentile_interval(resamples, level)
        se_boot = float(np.std(resamples, ddof=1)) if reps > 1 else math.nan
        if se_boot > se_lo:
            se, method = se_boot, "bootstrap"
            psr = float(stats.norm.cdf(sharpe / se))
    return SharpeStats(sharpe=sharpe, se=se, ci_low=low, ci_high=high, psr=psr, n=n,
                       level=level, se_method=method, se_lo_mertens=se_lo,
                       se_bootstrap=se_boot)


def hac_lags(n: int) -> int:
    """Newey-West lags for ``n`` bars: floor(4 (n / 100)^(2/9)), Newey & West's (1994)
    rule of thumb (statsmodels' default too): 3 lags at 33 bars, 4 at 250, 6 at 1,000.

    A fixed rule, not the data-driven bandwidth: on a month of bars the automatic choice
    can reach most of the sample, where the long-run variance collapses towards 0.
    """
    return int(4.0 * (n / 100.0) ** (2.0 / 9.0)) if n > 0 else 0


class MeanTest(NamedTuple):
    """One-sided test of H0: mean <= 0 for one series of per-bar values."""

    mean: float  # per bar
    se: float  # per bar
    t_stat: float
    df: int  # nonzero bars less one
    p_value: float
    nonzero: int  # bars with a value other than 0 (|x| > EPS)
    lags: int
    se_method: str  # "newey-west", "iid" (the larger of the two is used), "none"

    def lower_bound(self, level: float = DEFAULT_LEVEL) -> float:
        """One-sided ``level`` lower confidence bound of the mean (per bar): above 0 exactly
        when ``p_value`` < 1 - ``level``. NaN where there is no test."""
        level = _check_level(level)
        if not (self.df >= 1 and math.isfinite(self.se)):
            return math.nan
        return self.mean - float(special.stdtrit(self.df, level)) * self.se


def mean_test(values: np.ndarray) -> MeanTest:
    """One-sided t-test of H0: mean <= 0, with a serial-dependence-robust standard error.

    SE: the larger of the Newey-West (Bartlett kernel, ``hac_lags`` lags, arch's
    ``covariance.kernel.Bartlett``) and the i.i.d. standard error, both with the n - 1
    divisor. Newey-West alone is noisy on short samples and can fall below the i.i.d. SE
    by chance; the floor keeps the test at least as cautious as the plain t-test, whose
    size is exact for normal i.i.d. data. Reference: Student's t with ``nonzero - 1``
    degrees of freedom. Values within ``EPS`` of 0 count as 0: a series that is mostly 0
    (an agent that mirrors its benchmark most bars) carries only its nonzero bars'
    information, and n - 1 degrees of freedom would then claim too much.

    No test (p = 1, t and SE NaN) with fewer than 2 nonzero bars; a constant nonzero
    series (spread below ``EPS``) has p = 0 when positive, 1 otherwise.
    """
    x = as_series("values", values)
    x = np.where(np.abs(x) > EPS, x, 0.0)
    n = int(x.shape[0])
    nonzero = int(np.count_nonzero(x))
    mean = float(np.mean(x))
    lags = hac_lags(n)
    if nonzero < 2:
        return MeanTest(mean, math.nan, math.nan, 0, 1.0, nonzero, lags, "none")
    spread = float(np.std(x, ddof=1))
    if spread <= EPS:  # no measurable spread (rounding of a constant difference)
        return MeanTest(mean, 0.0, math.nan, nonzero - 1, 0.0 if mean > 0 else 1.0, nonzero,
                        lags, "iid")
    var_iid = spread**2 / n
    var_hac = 0.0
    if lags > 0:
        from arch.covariance.kernel import Bartlett

        # arch's bandwidth L weights lag j by 1 - j / (L + 1): Newey & West's L lags
        var_hac = float(Bartlett(x, bandwidth=lags).cov.long_run[0, 0]) / (n - 1)
    var, method = (var_hac, "newey-west") if var_hac > var_iid else (var_iid, "iid")
    df = nonzero - 1
    se = math.sqrt(var)
    t_stat = mean / se
    # special.stdtr is Student's t CDF: stats.t.sf(t, df) without the distribution overhead
    p_value = float(special.stdtr(df, -t_stat))
    return MeanTest(mean, se, t_stat, df, p_value, nonzero, lags, method)


@dataclass(frozen=True)
class AgentVsBenchmark:
    """Does the agent earn more than the benchmark on the same bars: the mean active return.

    The active return is agent minus benchmark per bar; ``mean_active`` its mean per bar and
    ``mean_active_annual`` that times the bars in a year. ``p_value`` is the one-sided p of
    H0: mean active return <= 0 (:func:`mean_test`: Newey-West SE floored at the i.i.d.
    SE, ``se_method`` says which was larger; Student's t with ``df`` degrees of freedom,
    the bars where the two differ less one). ``probability`` = 1 - ``p_value``, the
    confidence at which the claim would just be made; it is not a probability that the
    agent is better. The Sharpe ratios are annualised and shown for context only: the test
    is on the mean. NaN with fewer than ``MIN_BARS`` bars.
    """

    probability: float
    p_value: float
    sharpe_agent: float
    sharpe_bench: float
    n: int
    freq: str
    mean_active: float
    mean_active_annual: float
    se_active: float  # per bar
    t_stat: float
    df: int
    active_bars: int  # bars where the agent's return differs from the benchmark's
    hac_lags: int
    se_method: str

    def lower_bound(self, level: float = DEFAULT_LEVEL) -> float:
        """One-sided ``level`` lower bound of the mean active return per bar (NaN: no test)."""
        return MeanTest(self.mean_active, self.se_active, self.t_stat, self.df, self.p_value,
                        self.active_bars, self.hac_lags, self.se_method).lower_bound(level)

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Plain dict for JSON; NaN (not estimable) becomes None."""
        return {key: _json_number(value) for key, value in asdict(self).items()}


def prob_agent_beats(
    agent_returns: np.ndarray,
    bench_returns: np.ndarray,
    freq: str = "1d",
) -> AgentVsBenchmark:
    """Test whether the agent's mean return per bar is above the benchmark's, same bars.

    The one-sided test of :func:`mean_test` on the active return ``agent - bench``. Chosen
    over a bootstrap of the Sharpe difference because the verdict must hold its nominal
    rate on the records agents produce: mostly flat, few trades, a month of bars. There a
    Sharpe is driven by a small variance and a percentile bootstrap of it collapses (p = 0
    on a record whose mean edge has t = 1). Chosen over a block bootstrap of the mean
    because that has no small-sample correction and its block length cannot be estimated
    on a month of bars; the t reference with the nonzero bars' degrees of freedom keeps the
    size at or below nominal down to a few bars (``tests/test_stats.py`` simulates it).
    """
    agent = as_series("agent_returns", agent_returns)
    bench = as_series("bench_returns", bench_returns)
    if agent.shape != bench.shape:
        raise ValueError(
            f"agent_returns has {agent.shape[0]} bars but bench_returns has {bench.shape[0]};"
            " they must cover the same bars"
        )
    n = int(agent.shape[0])
    sharpe_agent, sharpe_bench = sharpe_ratio(agent, freq), sharpe_ratio(bench, freq)
    scale = periods_per_year(freq)
    active = agent - bench
    if n < MIN_BARS:
        mean = float(np.mean(active))
        return AgentVsBenchmark(math.nan, math.nan, sharpe_agent, sharpe_bench, n, freq, mean,
                                mean * scale, math.nan, math.nan, 0,
                                int(np.count_nonzero(np.abs(active) > EPS)), hac_lags(n),
                                "none")
    test = mean_test(active)
    return AgentVsBenchmark(1.0 - test.p_value, test.p_value, sharpe_agent, sharpe_bench, n,
                            freq, test.mean, test.mean * scale, test.se, test.t_stat, test.df,
                            test.nonzero, test.lags, test.se_method)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN (no test) stays
    NaN and does not count towards the family."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    m = tested.shape[0]
    running = 0.0
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def _span(n: int, freq: str) -> str:
    per_day = bars_per_day(freq)
    if per_day == 1.0:
        return f"these {n} day{'s' if n != 1 else ''}"
    days = n / per_day
    days_text = f"{days:.0f}" if abs(days - round(days)) < 1e-9 else f"{days:.1f}"
    return f"these {n} bars ({days_text} day{'s' if days_text != '1' else ''})"


def format_p_value(p: float) -> str:
    """"p < 0.001", "p = 0.004" or "p = 0.21": as the verdict prints a p-value."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def verdict(
    comparison: AgentVsBenchmark,
    level: float = DEFAULT_LEVEL,
    *,
    agent: str = "the agent",
    benchmark: str = "buy-and-hold",
) -> str:
    """One line in plain words: the claim (or none), the measure it rests on, its p-value.

    "the agent beats buy-and-hold on these 30 days at 90% confidence: its mean return over
    buy-and-hold is +0.120% a day (+30.2% a year), one-sided p = 0.04" when the one-sided
    p-value of the mean active return is at most 1 - level, "no evidence that the agent
    beats buy-and-hold on these 30 days: its mean return over ..." otherwise; "... they
    differ on only 1 of them" when there is nothing to test, and "too few bars (n=3) to say
    anything ..." below ``MIN_BARS`` bars.
    """
    level = _check_level(level)
    n = comparison.n
    if n < MIN_BARS or not math.isfinite(comparison.p_value):
        return f"too few bars (n={n}) to say anything about whether {agent} beats {benchmark}"
    span = _span(n, comparison.freq)
    if comparison.active_bars < 2:
        return (f"no evidence that {agent} beats {benchmark} on {span}: they differ on "
                f"{'none' if comparison.active_bars == 0 else 'only 1'} of them")
    unit = "day" if bars_per_day(comparison.freq) == 1.0 else "bar"
    measure = (f"its mean return over {benchmark} is {100 * comparison.mean_active:+.3f}% a "
               f"{unit} ({100 * comparison.mean_active_annual:+.1f}% a year), one-sided "
               f"{format_p_value(comparison.p_value)}")
    if comparison.p_value <= 1.0 - level:
        return f"{agent} beats {benchmark} on {span} at {100 * level:g}% confidence: {measure}"
    return f"no evidence that {agent} beats {benchmark} on {span}: {measure}"
