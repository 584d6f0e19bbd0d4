"""fastrl.stats: Sharpe error bars, PSR/DSR, bootstrap intervals, agent-vs-benchmark, PBO."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from fastrl import stats
from fastrl.metrics import periods_per_year, sharpe_ratio
from fastrl.stats import AgentVsBenchmark


def _moments(r: np.ndarray) -> tuple[float, float, float]:
    """Per-bar Sharpe, skew, non-excess kurtosis from raw central moments (independent path)."""
    sr = r.mean() / r.std(ddof=1)
    m2, m3, m4 = (sps.moment(r, moment=k) for k in (2, 3, 4))
    return sr, m3 / m2**1.5, m4 / m2**2


def _comparison(p_value: float, n: int, freq: str = "1d") -> AgentVsBenchmark:
    return AgentVsBenchmark(1.0 - p_value, p_value, 1.0, 0.5, n, freq, 1.0, 2000)


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
    sr0 = stats.expected_max_sharpe(0.5 / 250, 100)
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
    got = stats.deflated_sharpe_ratio(winner, trials, freq="1d")
    assert got == pytest.approx(expected, rel=1e-10)
    per_bar = stats.deflated_sharpe_ratio(winner, trials / math.sqrt(252))
    assert per_bar == pytest.approx(got, rel=1e-10)
    # more (effective) trials raise the bar
    more = stats.deflated_sharpe_ratio(winner, trials, freq="1d", n_trials=1000)
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
    bench = r + np.random.default_rng(7).normal(0, 0.01, 200)
    a = stats.prob_agent_beats(r, bench, reps=200, seed=3)
    assert stats.prob_agent_beats(r, bench, reps=200, seed=3) == a


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
    assert s.se == stats.sharpe_se(r).annual
    assert (s.ci_low, s.ci_high) == stats.sharpe_bootstrap_ci(r, reps=300, seed=2)
    assert s.ci_low < s.sharpe < s.ci_high
    assert s.psr == stats.probabilistic_sharpe_ratio(r)
    assert (s.n, s.level) == (300, 0.9)
    assert json.loads(json.dumps(s.as_dict(), allow_nan=False))["n"] == 300


def test_sharpe_stats_on_a_short_series_says_not_estimable() -> None:
    short = stats.sharpe_stats(np.array([0.01, -0.02, 0.005]))
    assert short.n == 3 and math.isfinite(short.se) and math.isnan(short.ci_low)
    one = stats.sharpe_stats(np.array([0.01])).as_dict()
    assert one["se"] is None and one["psr"] is None and one["sharpe"] == 0.0
    json.dumps(one, allow_nan=False)


def test_paired_bootstrap_sees_a_constant_edge() -> None:
    # same noise plus a constant: the agent's Sharpe is higher in every paired resample; an
    # unpaired bootstrap would see mostly the noise and give far less than 1
    rng = np.random.default_rng(10)
    bench = rng.normal(0.0, 0.01, 250)
    beats = stats.prob_agent_beats(bench + 0.0005, bench, reps=500, seed=0)
    assert beats.probability == 1.0 and beats.p_value == 0.0
    assert beats.sharpe_agent > beats.sharpe_bench
    same = stats.prob_agent_beats(bench, bench, reps=500, seed=0)
    assert same.p_value == 1.0  # ties count for "not better"
    worse = stats.prob_agent_beats(bench - 0.0005, bench, reps=500, seed=0)
    assert worse.probability == 0.0


def test_agent_that_is_noise_gets_no_verdict_in_its_favour() -> None:
    rng = np.random.default_rng(11)
    agent, bench = rng.normal(0, 0.01, 60), rng.normal(0.002, 0.01, 60)
    beats = stats.prob_agent_beats(agent, bench, reps=500, seed=0)
    assert beats.p_value > 0.1
    assert stats.verdict(beats).startswith("no evidence that the agent beats buy-and-hold")


def test_verdict_strings() -> None:
    assert stats.verdict(_comparison(0.41, 30)) == (
        "no evidence that the agent beats buy-and-hold on these 30 days (p = 0.41)"
    )
    assert stats.verdict(_comparison(0.04, 30)) == (
        "the agent beats buy-and-hold on these 30 days at 90% confidence (p = 0.04)"
    )
    assert stats.verdict(_comparison(0.04, 30), level=0.95) == (
        "the agent beats buy-and-hold on these 30 days at 95% confidence (p = 0.04)"
    )
    assert stats.verdict(_comparison(0.0, 750, "5min")) == (
        "the agent beats buy-and-hold on these 750 bars (10 days) at 90% confidence (p < 0.001)"
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
    res = stats.probability_of_backtest_overfitting(flipped, n_blocks=2, metric="mean")
    np.testing.assert_allclose(res.logits, [math.log(1 / 3)] * 2)
    assert res.pbo == 1.0 and res.n_combinations == 2
    # trial 0 wins both halves -> rank 3 of 3 -> w = 3/4, lambda = log 3, PBO = 0
    stable = np.array([[3.0, 2.0, 1.0], [3.0, 1.0, 2.0]])
    res = stats.probability_of_backtest_overfitting(stable, n_blocks=2, metric="mean")
    np.testing.assert_allclose(res.logits, [math.log(3)] * 2)
    assert res.pbo == 0.0


def test_pbo_fast_sharpe_path_equals_the_generic_metric_path() -> None:
    m = np.random.default_rng(12).normal(0.0005, 0.01, (67, 5))  # 67 rows: uneven blocks
    fast = stats.probability_of_backtest_overfitting(m, n_blocks=8)
    generic = stats.probability_of_backtest_overfitting(
        m, n_blocks=8, metric=lambda rows: rows.mean(axis=0) / rows.std(axis=0, ddof=1)
    )
    np.testing.assert_allclose(fast.logits, generic.logits)
    assert fast.n_combinations == 70 and fast.pbo == generic.pbo


def test_pbo_is_near_zero_when_one_trial_dominates() -> None:
    m = np.random.default_rng(13).normal(0.0, 0.01, (320, 10))
    m[:, 6] += 0.01
    res = stats.probability_of_backtest_overfitting(m, n_blocks=16)
    assert res.n_combinations == 12_870
    assert res.pbo < 0.02
    assert json.loads(json.dumps(res.as_dict()))["n_trials"] == 10


def test_pbo_of_pure_noise_is_near_one_half() -> None:
    # one matrix's PBO swings widely (sd ~ 0.2); the mean over 40 seeds has sd ~ 0.035
    values = [
        stats.probability_of_backtest_overfitting(
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
        (lambda: stats.deflated_sharpe_ratio(np.ones(30), [0.5]), "trial_sharpes"),
        (lambda: stats.deflated_sharpe_ratio(np.ones(30), [0.5, 1.0], n_trials=1), "n_trials"),
        (lambda: stats.probability_of_backtest_overfitting(np.zeros(20)), "must be 2-D"),
        (lambda: stats.probability_of_backtest_overfitting(np.zeros((20, 1))), "2 trials"),
        (lambda: stats.probability_of_backtest_overfitting(np.zeros((20, 3)), 5), "even"),
        (lambda: stats.probability_of_backtest_overfitting(np.zeros((10, 3)), 16), "exceeds"),
        (lambda: stats.probability_of_backtest_overfitting(np.zeros((40, 3)), 20),
         "max_combinations"),
        (lambda: stats.probability_of_backtest_overfitting(np.full((20, 3), np.nan), 2),
         "row 0, column 0"),
        (lambda: stats.probability_of_backtest_overfitting(np.zeros((20, 3)), 2, "median"),
         "metric must be"),
    ],
)
def test_bad_input_names_the_problem(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_effective_number_of_trials_counts_clusters_of_correlated_series() -> None:
    rng = np.random.default_rng(0)
    independent = rng.normal(size=(250, 6))
    assert stats.effective_number_of_trials(independent) == 6
    near_copies = independent[:, :1] + 0.05 * rng.normal(size=(250, 8))
    assert stats.effective_number_of_trials(near_copies) == 1
    pairs = np.column_stack([independent, independent + 0.1 * rng.normal(size=(250, 6))])
    assert stats.effective_number_of_trials(pairs) == 6
    flat = np.column_stack([independent[:, :2], np.zeros(250)])  # no spread: its own cluster
    assert stats.effective_number_of_trials(flat) == 3
    assert stats.effective_number_of_trials(independent[:, :1]) == 1
    with pytest.raises(ValueError, match="min_correlation"):
        stats.effective_number_of_trials(independent, min_correlation=1.0)
