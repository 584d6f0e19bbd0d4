"""fastrl.stats: Sharpe error bars, PSR/DSR, bootstrap intervals, agent-vs-benchmark, PBO."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from fastrl import selection, stats
from fastrl.metrics import periods_per_year, sharpe_ratio
from fastrl.stats import AgentVsBenchmark


def _moments(r: np.ndarray) -> tuple[float, float, float]:
    """Per-bar Sharpe, skew, non-excess kurtosis from raw central moments (independent path)."""
    sr = r.mean() / r.std(ddof=1)
    m2, m3, m4 = (sps.moment(r, moment=k) for k in (2, 3, 4))
    return sr, m3 / m2**1.5, m4 / m2**2


def _comparison(p_value: float, n: int, freq: str = "1d", mean: float = 0.0012
                ) -> AgentVsBenchmark:
    return AgentVsBenchmark(1.0 - p_value, p_value, 1.0, 0.5, n, freq, mean,
                            mean * periods_per_year(freq), 0.001, 1.2, n - 1, n, 3, "iid")


# ----------------------------------------------------------------------------- sharpe_se


def test_se_of_normal_returns_is_lo_formula_with_kurtosis_three() -> None:
    # SR = 1 per bar makes the kurtosis term big: the non-excess form gives 1 + SR^2/2 = 1.5,
    # plugging the excess kurtosis into (kurt - 1)/4 would give 0.75
    rng = np.random.default_rng(1)
    r = rng.normal(0.01, 0.01, 20_000)
    sr = r.mean() / r.std(ddof=1)
    se = stats.sharpe_se(r)
    assert se.per_bar**2 * (r.shape[0] - 1) == pytest.approx(1.0 + sr**2 / 2.0, rel=0.05)
    assert se.annual == pytest.approx(se.per_bar * math.sqrt(252), rel=1e-12)


def test_se_matches_an_independent_moment_computation() -> None:
    rng = np.random.default_rng(2)
    r = 0.002 + 0.01 * (rng.lognormal(0.0, 0.8, 300) - 1.2)  # skewed, fat right tail
    sr, skew, kurt = _moments(r)
    expected = math.sqrt((1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr**2) / (r.shape[0] - 1))
    se = stats.sharpe_se(r, freq="5min")
    assert se.per_bar == pytest.approx(expected, rel=1e-10)
    assert se.annual == pytest.approx(expected * math.sqrt(periods_per_year("5min")), rel=1e-10)


def test_se_tracks_the_monte_carlo_spread_of_skewed_sharpes() -> None:
    # skew -2, kurtosis 9, SR 0.3 per bar: bracket 1.78, against 1.045 if normal and 0.58
    # with the sign of the skew term flipped, so a wrong formula misses by > 20%
    rng = np.random.default_rng(7)
    draws = 0.3 - (rng.exponential(1.0, (3000, 250)) - 1.0)
    sample_sharpes = draws.mean(axis=1) / draws.std(axis=1, ddof=1)
    formula = np.mean([stats.sharpe_se(row).per_bar for row in draws[:200]])
    assert formula == pytest.approx(sample_sharpes.std(), rel=0.08)


def test_se_of_flat_returns_is_the_zero_sharpe_value() -> None:
    se = stats.sharpe_se(np.zeros(26))
    assert se.per_bar == pytest.approx(1.0 / 5.0)


# ----------------------------------------------------------------------------- PSR and DSR


def test_psr_matches_the_formula_and_converts_annual_benchmarks() -> None:
    rng = np.random.default_rng(3)
    r = rng.standard_t(5, 400) * 0.01 + 0.001
    sr, skew, kurt = _moments(r)
    bench = 0.02
    expected = sps.norm.cdf(
        (sr - bench) * math.sqrt(399) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    )
    assert stats.probabilistic_sharpe_ratio(r, bench) == pytest.approx(expected, rel=1e-10)
    annual = bench * math.sqrt(252)
    assert stats.probabilistic_sharpe_ratio(r, annual, freq="1d") == pytest.approx(expected)
    assert stats.probabilistic_sharpe_ratio(r, sr) == pytest.approx(0.5)
    assert stats.probabilistic_sharpe_ratio(r, sr + 0.05) < 0.5 < stats.probabilistic_sharpe_ratio(
        r, sr - 0.05
    )


def test_dsr_published_example() -> None:
    # Bailey & Lopez de Prado (2014), numerical example: annual SR 2.5 over 5 years of daily
    # returns (T = 1250, 250 days a year), skew -3, kurtosis 10, N = 100 trials whose annual
    # Sharpe estimates vary by 0.5: SR0 ~ 0.1132 per day, DSR ~ 0.9004. The figures are as
    # recalled from the paper; the next test checks the same path independently.
    sr0 = selection.expected_max_sharpe(0.5 / 250, 100)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = stats.psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-4)


def test_dsr_matches_an_independent_computation() -> None:
    rng = np.random.default_rng(4)
    winner = rng.normal(0.0015, 0.01, 500)
    trials = rng.normal(0.5, 0.7, 40)  # annualised Sharpes of every trial
    sr, skew, kurt = _moments(winner)
    variance = np.var(trials / math.sqrt(252), ddof=1)
    sr0 = math.sqrt(variance) * (
        (1 - np.euler_gamma) * sps.norm.ppf(1 - 1 / 40)
        + np.euler_gamma * sps.norm.ppf(1 - 1 / (40 * math.e))
    )
    expected = sps.norm.cdf(
        (sr - sr0) * math.sqrt(499) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    )
    got = selection.deflated_sharpe_ratio(winner, trials, freq="1d")
    assert got == pytest.approx(expected, rel=1e-10)
    per_bar = selection.deflated_sharpe_ratio(winner, trials / math.sqrt(252))
    assert per_bar == pytest.approx(got, rel=1e-10)
    # more (effective) trials raise the bar
    more = selection.deflated_sharpe_ratio(winner, trials, freq="1d", n_trials=1000)
    assert more < got < stats.probabilistic_sharpe_ratio(winner)


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_covers_the_true_sharpe_on_iid_series() -> None:
    rng = np.random.default_rng(5)
    true_sharpe = 0.05 * math.sqrt(252)
    covered = 0
    for seed in range(40):
        r = rng.normal(0.0005, 0.01, 500)
        low, high = stats.sharpe_bootstrap_ci(r, reps=300, seed=seed)
        covered += low <= true_sharpe <= high
    # 90% intervals (percentile intervals run a little under: ~0.87 over 300 series) -> about
    # 35 of 40; 30 or fewer would take a broken interval, not bad luck
    assert covered > 30

    long = rng.normal(0.0005, 0.01, 5000)
    low, high = stats.sharpe_bootstrap_ci(long, reps=500, seed=1)
    assert low <= true_sharpe <= high
    # width agrees with the analytic SE of an iid normal series
    se = stats.sharpe_se(long).annual
    assert high - low == pytest.approx(2 * 1.645 * se, rel=0.2)


def test_bootstrap_is_deterministic_given_a_seed() -> None:
    r = np.random.default_rng(6).normal(0.001, 0.01, 200)
    first = stats.sharpe_bootstrap_ci(r, reps=200, seed=11)
    assert stats.sharpe_bootstrap_ci(r, reps=200, seed=11) == first
    assert stats.sharpe_bootstrap_ci(r, reps=200, seed=12) != first


def test_block_length_follows_dependence() -> None:
    rng = np.random.default_rng(8)
    iid = rng.normal(0, 0.01, 2000)
    ar = np.zeros(2000)
    for t in range(1, 2000):
        ar[t] = 0.8 * ar[t - 1] + iid[t]
    assert stats.bootstrap_block_length(iid) < 5 < stats.bootstrap_block_length(ar)
    assert stats.bootstrap_block_length(np.zeros(50)) == 1.0
    assert stats.bootstrap_block_length(iid[:12]) == 1.0  # too short to estimate


# ----------------------------------------------------------------------------- summaries


def test_sharpe_stats_fills_every_field_and_serialises() -> None:
    r = np.random.default_rng(9).normal(0.001, 0.01, 300)
    s = stats.sharpe_stats(r, "1d", reps=300, seed=2)
    assert s.sharpe == sharpe_ratio(r, "1d")
    assert s.se_lo_mertens == stats.sharpe_se(r).annual
    resamples = stats.sharpe_bootstrap(r, reps=300, seed=2)
    assert s.se_bootstrap == pytest.approx(np.std(resamples, ddof=1))
    assert s.se == max(s.se_lo_mertens, s.se_bootstrap)
    assert s.se_method == ("bootstrap" if s.se_bootstrap > s.se_lo_mertens else "lo-mertens")
    assert (s.ci_low, s.ci_high) == stats.sharpe_bootstrap_ci(r, reps=300, seed=2)
    assert s.ci_low < s.sharpe < s.ci_high
    assert s.psr == pytest.approx(sps.norm.cdf(s.sharpe / s.se))
    if s.se_method == "lo-mertens":
        assert s.psr == stats.probabilistic_sharpe_ratio(r)
    assert (s.n, s.level) == (300, 0.9)
    assert json.loads(json.dumps(s.as_dict(), allow_nan=False))["n"] == 300


def test_sharpe_se_shown_is_not_below_what_the_resamples_show_on_a_skewed_record() -> None:
    # a tiny gain most days and a large one every twentieth: skew ~4 at a per-bar Sharpe
    # near 2 / skew, where the Lo/Mertens bracket 1 - skew SR + (kurt - 1)/4 SR^2 nears 0
    rng = np.random.default_rng(0)
    r = 0.0005 + 0.009 * (rng.random(250) < 0.05) + rng.normal(0.0, 1e-4, 250)
    s = stats.sharpe_stats(r)
    assert s.se_lo_mertens < 0.4 * s.se_bootstrap  # collapsed
    assert s.se == s.se_bootstrap and s.se_method == "bootstrap"
    assert s.as_dict()["se_method"] == "bootstrap"
    # on a plain normal record both estimate the same spread, the shown one is the larger
    plain = stats.sharpe_stats(rng.normal(0.0005, 0.01, 250))
    assert plain.se == max(plain.se_lo_mertens, plain.se_bootstrap)
    assert plain.se_bootstrap == pytest.approx(plain.se_lo_mertens, rel=0.25)


def test_sharpe_stats_on_a_short_series_says_not_estimable() -> None:
    short = stats.sharpe_stats(np.array([0.01, -0.02, 0.005]))
    assert short.n == 3 and math.isfinite(short.se) and math.isnan(short.ci_low)
    one = stats.sharpe_stats(np.array([0.01])).as_dict()
    assert one["se"] is None and one["psr"] is None and one["sharpe"] == 0.0
    json.dumps(one, allow_nan=False)


def test_mean_test_sees_a_constant_edge_and_no_edge_in_a_copy() -> None:
    rng = np.random.default_rng(10)
    bench = rng.normal(0.0, 0.01, 250)
    beats = stats.prob_agent_beats(bench + 0.0005, bench)
    # every bar ahead by the same amount: zero variance, a sure edge
    assert beats.p_value == 0.0 and beats.probability == 1.0 and beats.se_active == 0.0
    assert beats.mean_active == pytest.approx(0.0005)
    assert beats.mean_active_annual == pytest.approx(0.0005 * 252)
    assert stats.verdict(beats).startswith("the agent beats buy-and-hold on these 250 days")
    same = stats.prob_agent_beats(bench, bench)
    assert same.p_value == 1.0 and same.active_bars == 0  # no claim
    assert stats.verdict(same) == (
        "no evidence that the agent beats buy-and-hold on these 250 days: they differ on none "
        "of them")
    one = bench.copy()
    one[7] += 0.05
    lone = stats.prob_agent_beats(one, bench)
    assert lone.active_bars == 1 and lone.p_value == 1.0
    assert stats.verdict(lone).endswith("they differ on only 1 of them")
    worse = stats.prob_agent_beats(bench - 0.0005, bench)
    assert worse.p_value == 1.0


def test_mean_test_is_the_t_test_on_iid_data_and_widens_under_dependence() -> None:
    rng = np.random.default_rng(12)
    x = rng.normal(0.001, 0.01, 120)
    t = stats.mean_test(x)
    plain = sps.ttest_1samp(x, 0.0, alternative="greater")
    assert t.se >= np.std(x, ddof=1) / math.sqrt(120) - 1e-15  # never below the i.i.d. SE
    if t.se_method == "iid":
        assert t.p_value == pytest.approx(plain.pvalue)
    assert t.lags == stats.hac_lags(120) == 4 and t.df == 119
    # a moving average of noise: positively autocorrelated, Newey-West takes over
    e = rng.normal(0.0, 0.01, 400)
    ma = e + np.concatenate([[0.0], e[:-1]]) + np.concatenate([[0.0, 0.0], e[:-2]])
    dep = stats.mean_test(ma)
    assert dep.se_method == "newey-west"
    assert dep.se > 1.4 * np.std(ma, ddof=1) / math.sqrt(400)
    # one-sided p and one-sided lower bound agree: p < 1 - level iff the bound is above 0
    for seed in range(40):
        y = np.random.default_rng(seed).normal(0.002, 0.01, 60)
        test = stats.mean_test(y)
        assert (test.p_value < 0.1) == (test.lower_bound(0.9) > 0)


def test_agent_that_is_noise_gets_no_verdict_in_its_favour() -> None:
    rng = np.random.default_rng(11)
    agent, bench = rng.normal(0, 0.01, 60), rng.normal(0.002, 0.01, 60)
    beats = stats.prob_agent_beats(agent, bench)
    assert beats.p_value > 0.1
    assert stats.verdict(beats).startswith("no evidence that the agent beats buy-and-hold")


def test_a_mostly_flat_record_with_a_weak_mean_edge_claims_nothing() -> None:
    """The case of issue 31: flat on 16 of 33 days, a few small gains while long, a mean
    edge over buy-and-hold with t near 1. Its Sharpe (all its returns are >= 0) towers
    over buy-and-hold's, and the paired bootstrap of the Sharpe difference gave p < 0.001;
    the mean active return says there is no evidence."""
    rng = np.random.default_rng(31)
    market = rng.normal(0.0, 0.015, 33)
    flat = np.zeros(33, dtype=bool)
    flat[rng.choice(33, 16, replace=False)] = True
    market[~flat] = rng.uniform(0.0005, 0.003, int((~flat).sum()))  # the days it held
    market[flat] -= market[flat].mean() + 0.0022  # a falling market while it was out
    agent = np.where(flat, 0.0, market)
    versus = stats.prob_agent_beats(agent, market)
    assert versus.p_value > 0.1  # the Sharpe bootstrap: p < 0.001, "beats ... (p < 0.001)"
    assert stats.verdict(versus).startswith("no evidence that the agent beats buy-and-hold on "
                                            "these 33 days: its mean return over buy-and-hold "
                                            "is +0.1")
    assert versus.sharpe_agent > 5 and versus.t_stat == pytest.approx(1.0, abs=0.35)


NULL_DRAWS = 2000
# the verdict claims an edge at p <= 0.10; a rate above this bound has binomial p < 0.001
# if the true rate is 10% (2000 draws: 12.0%)
NULL_BOUND = sps.binom.ppf(0.999, NULL_DRAWS, 0.1) / NULL_DRAWS


def _iid_equal_sharpe(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # the same Sharpe, half the risk and half the mean: no edge by either measure
    return rng.normal(0.0005, 0.01, n), rng.normal(0.001, 0.02, n)


def _iid_equal_mean(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # the same mean at half the risk: the boundary of H0 for the mean active return
    return rng.normal(0.0005, 0.01, n), rng.normal(0.0005, 0.02, n)


def _mostly_flat(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # fat-tailed driftless market; the agent holds one to three stretches, otherwise flat
    market = rng.standard_t(4, n) * 0.01
    held = np.zeros(n)
    for _ in range(rng.integers(1, 4)):
        start = rng.integers(0, n)
        held[start:start + rng.integers(1, max(2, n // 6))] = 1.0
    return held * market, market


def _one_short_hold(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # few trades: long for one to four days, flat otherwise, on a driftless market
    market = rng.normal(0.0, 0.01, n)
    held = np.zeros(n)
    start = rng.integers(0, n - 5)
    held[start:start + rng.integers(1, 5)] = 1.0
    return held * market, market


NULL_RECORDS = [(_iid_equal_sharpe, 60), (_iid_equal_sharpe, 250), (_iid_equal_mean, 60),
                (_mostly_flat, 33), (_one_short_hold, 60)]


@pytest.mark.parametrize(("record", "n"), NULL_RECORDS)
def test_verdict_holds_its_nominal_rate_on_null_records(record, n: int) -> None:
    """Records with no edge: the verdict claims one at most 10% of the time (within a
    binomial tolerance). The paired bootstrap of the Sharpe difference the verdict used
    before claimed one on 12.3% of the 60-bar equal-Sharpe records, 13.8% of the mostly
    flat and 14.2% of the short-hold ones (600 records each, 500 resamples)."""
    rng = np.random.default_rng(n + len(record.__name__))
    claims = sum(stats.prob_agent_beats(*record(rng, n)).p_value <= 0.1
                 for _ in range(NULL_DRAWS))
    assert claims / NULL_DRAWS <= NULL_BOUND


def test_verdict_strings() -> None:
    assert stats.verdict(_comparison(0.41, 30)) == (
        "no evidence that the agent beats buy-and-hold on these 30 days: its mean return over "
        "buy-and-hold is +0.120% a day (+30.2% a year), one-sided p = 0.41"
    )
    assert stats.verdict(_comparison(0.04, 30)) == (
        "the agent beats buy-and-hold on these 30 days at 90% confidence: its mean return over "
        "buy-and-hold is +0.120% a day (+30.2% a year), one-sided p = 0.04"
    )
    assert stats.verdict(_comparison(0.04, 30), level=0.95).startswith(
        "the agent beats buy-and-hold on these 30 days at 95% confidence: "
    )
    assert stats.verdict(_comparison(0.0, 750, "5min", mean=0.00002)) == (
        "the agent beats buy-and-hold on these 750 bars (10 days) at 90% confidence: its mean "
        "return over buy-and-hold is +0.002% a bar (+37.8% a year), one-sided p < 0.001"
    )
    few = stats.prob_agent_beats(np.array([0.01, 0.0, -0.01]), np.zeros(3))
    assert math.isnan(few.p_value)
    assert stats.verdict(few) == (
        "too few bars (n=3) to say anything about whether the agent beats buy-and-hold"
    )
    assert few.as_dict()["p_value"] is None


# ----------------------------------------------------------------------------- PBO


def test_pbo_hand_computed_two_block_cases() -> None:
    # S = 2: one split per half. Trial ranks out of sample are 1 (worst) of 3 in both splits
    # -> w = 1/4, lambda = log(1/3) twice, PBO = 1
    flipped = np.array([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    res = selection.probability_of_backtest_overfitting(flipped, n_blocks=2, metric="mean")
    np.testing.assert_allclose(res.logits, [math.log(1 / 3)] * 2)
    assert res.pbo == 1.0 and res.n_combinations == 2
    # trial 0 wins both halves -> rank 3 of 3 -> w = 3/4, lambda = log 3, PBO = 0
    stable = np.array([[3.0, 2.0, 1.0], [3.0, 1.0, 2.0]])
    res = selection.probability_of_backtest_overfitting(stable, n_blocks=2, metric="mean")
    np.testing.assert_allclose(res.logits, [math.log(3)] * 2)
    assert res.pbo == 0.0


def test_pbo_fast_sharpe_path_equals_the_generic_metric_path() -> None:
    m = np.random.default_rng(12).normal(0.0005, 0.01, (67, 5))  # 67 rows: uneven blocks
    fast = selection.probability_of_backtest_overfitting(m, n_blocks=8)
    generic = selection.probability_of_backtest_overfitting(
        m, n_blocks=8, metric=lambda rows: rows.mean(axis=0) / rows.std(axis=0, ddof=1)
    )
    np.testing.assert_allclose(fast.logits, generic.logits)
    assert fast.n_combinations == 70 and fast.pbo == generic.pbo


def test_pbo_is_near_zero_when_one_trial_dominates() -> None:
    m = np.random.default_rng(13).normal(0.0, 0.01, (320, 10))
    m[:, 6] += 0.01
    res = selection.probability_of_backtest_overfitting(m, n_blocks=16)
    assert res.n_combinations == 12_870
    assert res.pbo < 0.02
    assert json.loads(json.dumps(res.as_dict()))["n_trials"] == 10


def test_pbo_of_pure_noise_is_near_one_half() -> None:
    # one matrix's PBO swings widely (sd ~ 0.2); the mean over 40 seeds has sd ~ 0.035
    values = [
        selection.probability_of_backtest_overfitting(
            np.random.default_rng(100 + seed).normal(0.0, 0.01, (160, 10)), n_blocks=8
        ).pbo
        for seed in range(40)
    ]
    assert np.mean(values) == pytest.approx(0.5, abs=0.12)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: stats.sharpe_se(np.array([])), "returns is empty"),
        (lambda: stats.sharpe_se(np.array([0.1, np.nan])), "returns has a non-finite value"),
        (lambda: stats.sharpe_se(np.zeros((3, 2))), "returns must be a 1-D array"),
        (lambda: stats.sharpe_se(np.array([0.1])), "at least 2"),
        (lambda: stats.sharpe_bootstrap_ci(np.zeros(5)), "at least 10"),
        (lambda: stats.sharpe_bootstrap_ci(np.zeros(50), level=1.5), "level must be"),
        (lambda: stats.sharpe_bootstrap_ci(np.zeros(50), reps=0), "reps must be"),
        (lambda: stats.prob_agent_beats(np.zeros(20), np.zeros(21)), "same bars"),
        (lambda: stats.prob_agent_beats(np.zeros(20), [np.inf] * 20), "bench_returns"),
        (lambda: stats.psr_from_moments(0.1, 100, 0.0, 0.0), "non-excess kurtosis"),
        (lambda: selection.deflated_sharpe_ratio(np.ones(30), [0.5]), "trial_sharpes"),
        (lambda: selection.deflated_sharpe_ratio(np.ones(30), [0.5, 1.0], n_trials=1), "n_trials"),
        (lambda: selection.probability_of_backtest_overfitting(np.zeros(20)), "must be 2-D"),
        (lambda: selection.probability_of_backtest_overfitting(np.zeros((20, 1))), "2 trials"),
        (lambda: selection.probability_of_backtest_overfitting(np.zeros((20, 3)), 5), "even"),
        (lambda: selection.probability_of_backtest_overfitting(np.zeros((10, 3)), 16), "exceeds"),
        (lambda: selection.probability_of_backtest_overfitting(np.zeros((40, 3)), 20),
         "max_combinations"),
        (lambda: selection.probability_of_backtest_overfitting(np.full((20, 3), np.nan), 2),
         "row 0, column 0"),
        (lambda: selection.probability_of_backtest_overfitting(np.zeros((20, 3)), 2, "median"),
         "metric must be"),
    ],
)
def test_bad_input_names_the_problem(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_effective_number_of_trials_counts_clusters_of_correlated_series() -> None:
    rng = np.random.default_rng(0)
    independent = rng.normal(size=(250, 6))
    assert selection.effective_number_of_trials(independent) == 6
    near_copies = independent[:, :1] + 0.05 * rng.normal(size=(250, 8))
    assert selection.effective_number_of_trials(near_copies) == 1
    pairs = np.column_stack([independent, independent + 0.1 * rng.normal(size=(250, 6))])
    assert selection.effective_number_of_trials(pairs) == 6
    flat = np.column_stack([independent[:, :2], np.zeros(250)])  # no spread: its own cluster
    assert selection.effective_number_of_trials(flat) == 3
    assert selection.effective_number_of_trials(independent[:, :1]) == 1
    with pytest.raises(ValueError, match="min_correlation"):
        selection.effective_number_of_trials(independent, min_correlation=1.0)
