"""Statistics of a selection: is the best of N configs (trials, PBT members) better than
luck and the rest would make it?

Units as in :mod:`fastrl.stats`: per-bar simple returns, Sharpe ratios per bar unless a
function says annualised.

``best_of_n_test`` asks the tuner's question (is the best of N configs better than the
rest) with the maximum of N on both sides of the comparison. The Deflated Sharpe Ratio
(``deflated_sharpe_ratio``, with ``expected_max_sharpe`` and the effective number of trials)
asks whether the winner's Sharpe is more than the best that luck buys among N trials, and
the Probability of Backtest Overfitting by CSCV
(``probability_of_backtest_overfitting``) whether the in-sample best stays good out of
sample. The DSR and PBO by CSCV have no kept library, so they are written here from the
papers, on scipy primitives.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import special, stats

from fastrl.metrics import EPS, periods_per_year
from fastrl.stats import DEFAULT_REPS, as_series, check_reps, psr_from_moments, sharpe_moments

MAX_PBO_COMBINATIONS = 100_000  # C(16, 8) = 12,870 and C(18, 9) = 48,620 pass; S = 20 does not


# ----------------------------------------------------------------------------- selection


class SelectionTest(NamedTuple):
    """Whether the best of N configs stands out from the others (``best_of_n_test``)."""

    p_value: float  # 1.0 where nothing can be tested (one run per trial, one trial)
    best: int  # row of the largest mean
    lead: float  # the best row's mean minus the median row mean
    trials: int
    runs: int
    reps: int


def best_of_n_test(scores: np.ndarray, reps: int = DEFAULT_REPS, seed: int = 0
                   ) -> SelectionTest:
    """Permutation test of "the best of N configs is better than the rest" (max-of-N).

    ``scores`` is trials x runs: run j of every trial used the same fold and seed, so the
    runs pair up. The statistic is the largest trial mean. Under H0 (every config scores
    alike) the trials' labels are exchangeable within a run, so each resample permutes
    every column independently; p = (1 + #{resampled max >= observed max}) / (1 + reps).
    Taking the maximum on both sides is the multiple-comparison correction: the observed
    winner is compared with the best of N under H0, not with one typical config, so the
    size is at most nominal whatever N (``tests/test_tune.py`` simulates it). A column's
    shared part (a hard fold, a lucky seed) moves every trial alike and cancels out. With
    one run per trial no permutation changes the means: p = 1, nothing is separated.
    """
    m = np.asarray(scores, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"scores must be trials x runs with at least one of each, got shape"
                         f" {m.shape}")
    if not np.all(np.isfinite(m)):
        row, col = (int(i[0]) for i in np.nonzero(~np.isfinite(m)))
        raise ValueError(f"scores has a non-finite value at trial {row}, run {col}")
    reps = check_reps(reps)
    trials, runs = m.shape
    means = m.mean(axis=1)
    best = int(np.argmax(means))
    lead = float(means[best] - np.median(means))
    if trials < 2 or runs < 2:
        return SelectionTest(1.0, best, lead, trials, runs, reps)
    rng = np.random.default_rng(seed)
    observed = float(means[best])
    exceed = 0
    chunk = max(1, 2_000_000 // (trials * runs))  # resamples per batch: bounded memory
    for start in range(0, reps, chunk):
        size = min(chunk, reps - start)
        shuffled = rng.permuted(np.broadcast_to(m, (size, trials, runs)), axis=1)
        # ties count against separation; the tolerance absorbs summation-order rounding
        exceed += int(np.sum(shuffled.mean(axis=2).max(axis=1) >= observed - 1e-12
                             * max(1.0, abs(observed))))
    return SelectionTest((1.0 + exceed) / (1.0 + reps), best, lead, trials, runs, reps)


# ----------------------------------------------------------------------------- overfitting


def expected_max_sharpe(trial_sharpe_variance: float, n_trials: int) -> float:
    """Expected maximum of ``n_trials`` Sharpe estimates whose true Sharpe is 0.

    SR0 = sqrt(V) ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e))), g the Euler-Mascheroni
    constant (Bailey & Lopez de Prado 2014, from the false strategy theorem). Same units
    as the Sharpe ratios whose variance ``V`` is.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 2:
        raise ValueError(f"n_trials must be an integer >= 2, got {n_trials!r}")
    if not (math.isfinite(trial_sharpe_variance) and trial_sharpe_variance >= 0.0):
        raise ValueError(
            f"trial_sharpe_variance must be finite and >= 0, got {trial_sharpe_variance}"
        )
    gamma = np.euler_gamma
    quantiles = stats.norm.ppf([1.0 - 1.0 / n_trials, 1.0 - 1.0 / (n_trials * math.e)])
    return float(
        math.sqrt(trial_sharpe_variance) * ((1.0 - gamma) * quantiles[0] + gamma * quantiles[1])
    )


def deflated_sharpe_ratio(
    returns_of_winner: np.ndarray,
    trial_sharpes: np.ndarray,
    *,
    freq: str | None = None,
    n_trials: int | None = None,
) -> float:
    """Deflated Sharpe Ratio: PSR of the selected trial against the best Sharpe luck buys.

    ``trial_sharpes`` are the Sharpe estimates of every trial tried (the winner included),
    per bar when ``freq`` is None, annualised when ``freq`` is given. Their variance (ddof=1)
    and the trial count (``n_trials``, default ``len(trial_sharpes)``; pass the effective
    number of independent trials when they are correlated) give SR0 =
    ``expected_max_sharpe``; the result is PSR(SR0) of the winner's per-bar returns.
    Bailey & Lopez de Prado (2014). Above 0.95: the winner's Sharpe is unlikely to be luck.
    """
    r = as_series("returns_of_winner", returns_of_winner, min_n=2)
    trials = np.asarray(trial_sharpes, dtype=np.float64)
    if trials.ndim != 1 or trials.shape[0] < 2:
        raise ValueError(
            f"trial_sharpes must be a 1-D array of at least 2 Sharpe ratios, got shape"
            f" {trials.shape}"
        )
    if not np.all(np.isfinite(trials)):
        raise ValueError("trial_sharpes has a non-finite value")
    if freq is not None:
        trials = trials / math.sqrt(periods_per_year(freq))
    count = trials.shape[0] if n_trials is None else n_trials
    sr0 = expected_max_sharpe(float(np.var(trials, ddof=1)), count)
    sr, skew, kurt = sharpe_moments(r)
    return psr_from_moments(sr, r.shape[0], skew, kurt, sr0)


CLUSTER_CORRELATION = 0.5  # trials whose return series correlate above this count as one


def effective_number_of_trials(perf_matrix: np.ndarray,
                               min_correlation: float = CLUSTER_CORRELATION) -> int:
    """How many independent trials ``perf_matrix`` (T x N returns, one column per trial)
    holds: the number of clusters of its correlation matrix.

    Hierarchical clustering (scipy's ``linkage``, average linkage) on the correlation
    distance d = sqrt((1 - rho) / 2), cut where the average correlation between two clusters
    falls to ``min_correlation`` (d = sqrt((1 - min_correlation) / 2)). A stand-in for
    Lopez de Prado's ONC clustering (2019, "A data science solution to the multiple-testing
    crisis"), which also feeds its cluster count to the DSR: TPE samples near its best
    trials, so many trials are near-copies and N overstates the luck the search could buy.
    A column with no spread correlates with nothing (its own cluster).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    m = np.asarray(perf_matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 1 or m.shape[0] < 2:
        raise ValueError(f"perf_matrix must be T x N with T >= 2 and N >= 1, got {m.shape}")
    if not (isinstance(min_correlation, (int, float)) and -1.0 <= min_correlation < 1.0):
        raise ValueError(f"min_correlation must lie in [-1, 1), got {min_correlation!r}")
    n = m.shape[1]
    if n == 1:
        return 1
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.corrcoef(m, rowvar=False)
    corr = np.where(np.isfinite(corr), corr, 0.0)
    np.fill_diagonal(corr, 1.0)
    distance = np.sqrt(np.clip((1.0 - corr) / 2.0, 0.0, 1.0))
    tree = linkage(squareform(distance, checks=False), method="average")
    cut = math.sqrt((1.0 - min_correlation) / 2.0)
    return int(np.unique(fcluster(tree, t=cut, criterion="distance")).size)


@dataclass(frozen=True)
class PBOResult:
    """Probability of backtest overfitting by CSCV, with its logit distribution.

    ``logits`` holds one lambda = log(w / (1 - w)) per in-sample/out-of-sample split, w the
    out-of-sample relative rank (rank / (N + 1), 1 = worst) of the in-sample best trial;
    ``pbo`` is the share of lambda <= 0, i.e. of splits where the in-sample winner did no
    better than the out-of-sample median.
    """

    pbo: float
    logits: np.ndarray
    n_blocks: int
    n_combinations: int
    n_trials: int

    def as_dict(self) -> dict[str, float | int | list[float]]:
        """Plain dict for JSON."""
        return {
            "pbo": self.pbo,
            "logits": [float(x) for x in self.logits],
            "n_blocks": self.n_blocks,
            "n_combinations": self.n_combinations,
            "n_trials": self.n_trials,
        }


def _split_scores(
    blocks: list[np.ndarray], in_sample: np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """In- and out-of-sample scores of every trial for every split, from block sums.

    Mean and ddof=1 variance of a union of blocks follow from per-block sums of x - c
    and (x - c)^2, c the column mean (the shift keeps the subtraction well conditioned):
    the 12,870 splits of S = 16 then cost two matrix products, not 12,870 passes over T x N.
    """
    centre = np.mean(np.concatenate(blocks), axis=0)
    sums = np.stack([np.sum(b - centre, axis=0) for b in blocks])  # S x N
    squares = np.stack([np.sum(np.square(b - centre), axis=0) for b in blocks])
    counts = np.array([b.shape[0] for b in blocks], dtype=np.float64)
    out = []
    for mask in (in_sample, ~in_sample):
        weights = mask.astype(np.float64)  # C x S
        n = (weights @ counts)[:, None]
        s1, s2 = weights @ sums, weights @ squares
        mean = centre + s1 / n
        if metric == "mean":
            out.append(mean)
            continue
        std = np.sqrt(np.maximum(s2 - s1**2 / n, 0.0) / np.maximum(n - 1.0, 1.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(np.where((std > EPS) & (n > 1), mean / std, 0.0))
    return out[0], out[1]


def probability_of_backtest_overfitting(
    perf_matrix: np.ndarray,
    n_blocks: int = 16,
    metric: str | Callable[[np.ndarray], np.ndarray] = "sharpe",
    *,
    max_combinations: int = MAX_PBO_COMBINATIONS,
) -> PBOResult:
    """PBO by combinatorially symmetric cross-validation (Bailey, Borwein, Lopez de Prado &
    Zhu 2017).

    ``perf_matrix`` is T x N: per-period validation returns (rows, in time order) of N
    trials. Rows are cut into ``n_blocks`` (S, even) consecutive blocks, sizes differing by
    at most one row. For each of the C(S, S/2) choices of S/2 blocks as in-sample, the trial
    with the best in-sample ``metric`` is ranked among all trials on the other half. The
    metric is "sharpe" (per-bar Sharpe, default), "mean", or a callable mapping a rows x N
    array to N scores (higher is better).
    """
    m = np.asarray(perf_matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"perf_matrix must be 2-D (time x trials), got shape {m.shape}")
    if m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"perf_matrix is empty (shape {m.shape})")
    if not np.all(np.isfinite(m)):
        row, col = (int(i[0]) for i in np.nonzero(~np.isfinite(m)))
        raise ValueError(f"perf_matrix has a non-finite value at row {row}, column {col}")
    t_rows, n_trials = m.shape
    if n_trials < 2:
        raise ValueError(f"perf_matrix needs at least 2 trials (columns), got {n_trials}")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, (int, np.integer)):
        raise ValueError(f"n_blocks must be an even integer, got {n_blocks!r}")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be even and at least 2, got {n_blocks}")
    if n_blocks > t_rows:
        raise ValueError(f"n_blocks={n_blocks} exceeds the {t_rows} rows of perf_matrix")
    n_combinations = math.comb(n_blocks, n_blocks // 2)
    if n_combinations > max_combinations:
        raise ValueError(
            f"n_blocks={n_blocks} gives {n_combinations} splits, over max_combinations="
            f"{max_combinations}; use fewer blocks"
        )
    if not (callable(metric) or metric in ("sharpe", "mean")):
        raise ValueError(f"metric must be 'sharpe', 'mean' or a callable, got {metric!r}")

    blocks = np.array_split(m, n_blocks, axis=0)
    in_sample = np.zeros((n_combinations, n_blocks), dtype=bool)
    for i, chosen in enumerate(itertools.combinations(range(n_blocks), n_blocks // 2)):
        in_sample[i, list(chosen)] = True

    if callable(metric):
        is_scores = np.empty((n_combinations, n_trials))
        oos_scores = np.empty((n_combinations, n_trials))
        for i, mask in enumerate(in_sample):
            for scores, side in ((is_scores, mask), (oos_scores, ~mask)):
                rows = np.concatenate([blocks[j] for j in np.flatnonzero(side)])
                values = np.asarray(metric(rows), dtype=np.float64).reshape(-1)
                if values.shape[0] != n_trials:
                    raise ValueError(
                        f"metric returned {values.shape[0]} scores for {n_trials} trials"
                    )
                scores[i] = values
    else:
        is_scores, oos_scores = _split_scores(blocks, in_sample, metric)

    best = np.argmax(is_scores, axis=1)  # first trial wins an in-sample tie
    oos_ranks = stats.rankdata(oos_scores, axis=1)  # 1 = worst; ties share the average rank
    relative = oos_ranks[np.arange(n_combinations), best] / (n_trials + 1)
    logits = special.logit(relative)
    return PBOResult(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        n_blocks=int(n_blocks),
        n_combinations=n_combinations,
        n_trials=int(n_trials),
    )
