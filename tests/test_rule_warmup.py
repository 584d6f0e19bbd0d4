"""Each rule's warm-up (``Rule.warmup``, from its parameters) is where its first decision
that is not flat comes on a long rising series: the history the rule reads and no more."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fastrl.data.months import month_ends
from fastrl.rules import rule_for, rule_names

BARS = 700
# small windows keep the series short; the defaults are checked too
SINGLE_PARAMS = [
    ("buy_and_hold", {}), ("ma200", {}), ("ma200", {"window": 20}),
    ("voltarget", {"window": 30, "rebalance": "daily"}), ("voltarget", {}),
    ("momentum", {"lookback": 40, "skip": 5, "rebalance": "daily"}), ("momentum", {}),
    ("ma10", {}), ("ma10", {"months": 3}),
]
PORTFOLIO_PARAMS = [
    ("ew_hold", {}), ("ew_monthly", {}), ("inverse_vol", {"window": 12}),
    ("min_variance", {"window": 15}), ("xs_momentum", {"lookback": 30, "skip": 5, "top_k": 1}),
]


def rising(columns: int, seed: int = 0) -> np.ndarray:
    """[BARS, columns] closes rising every bar by a random 0.1 % to 1 %."""
    steps = np.random.default_rng(seed).uniform(0.001, 0.01, size=(BARS, columns))
    return 100.0 * np.cumprod(1.0 + steps, axis=0)


def test_every_rule_is_covered():
    assert {n for n, _ in SINGLE_PARAMS} == set(rule_names("single"))
    assert {n for n, _ in PORTFOLIO_PARAMS} == set(rule_names("portfolio"))


@pytest.mark.parametrize(("name", "params"), SINGLE_PARAMS)
def test_a_single_rules_first_decision_comes_at_its_warm_up(name, params):
    rule = rule_for(name, **params)
    stamps = pd.bdate_range("2015-01-01", periods=BARS).to_numpy()
    ends = month_ends(stamps, BARS)
    exposure = rule.spec.decide(rule.params, rising(1)[:, 0], ends, "1d")
    first = int(np.flatnonzero(exposure > 0)[0])
    count, unit = rule.warmup
    if unit == "month ends":
        assert first == np.flatnonzero(ends)[count - 1]
    elif rule.reads_month_ends:  # decided at the first month end with the history
        assert first == np.flatnonzero(ends & (np.arange(BARS) >= count - 1))[0]
    else:
        assert first == count - 1
        # the rule decides the same without month ends
        np.testing.assert_array_equal(
            exposure, rule.spec.decide(rule.params, rising(1)[:, 0], np.zeros(BARS, bool), "1d"))


@pytest.mark.parametrize(("name", "params"), PORTFOLIO_PARAMS)
def test_a_portfolio_rules_first_decision_comes_at_its_warm_up(name, params):
    rule = rule_for(name, **params)
    marks = rising(3, seed=1)
    tradable = np.ones(3, dtype=bool)
    first = next(r for r in range(BARS)
                 if np.any(rule.spec.decide(rule.params, marks[:r + 1], tradable) > 0))
    count, unit = rule.warmup
    assert unit == "bars" and first == count - 1


def test_a_rules_warm_up_follows_its_parameters():
    assert rule_for("momentum", lookback=126, skip=21).warmup == (127, "bars")
    assert rule_for("ma10", months=12).warmup == (12, "month ends")
    assert rule_for("ma200", window=50).warmup == (50, "bars")
    assert rule_for("inverse_vol", window=20).warmup == (21, "bars")
    assert rule_for("xs_momentum", lookback=63, skip=5).warmup == (64, "bars")
