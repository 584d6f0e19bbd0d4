"""The market layer: market_for picks the kind, both kinds keep one protocol, and a kind's
bars, env and action head agree with each other."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from fastrl.config import ConfigError, build_config
from fastrl.data.loaders import load_bars_report
from fastrl.markets import (
    ActionSpec,
    Market,
    PortfolioMarket,
    SingleMarket,
    kind_overrides,
    market_for,
)
from fastrl.markets.base import CoreVecEnv

SYMBOLS = ["BPCL", "HDFCLIFE"]
SMALL = {"data.symbols": SYMBOLS, "data.test_days": 20, "data.val_days": 15, "env.window": 8}
KINDS = {"single": {}, "portfolio": kind_overrides("portfolio")}


def config_of(kind: str, **extra):
    return build_config("fast", None, {**SMALL, **KINDS[kind], **extra}, [])


@pytest.fixture(scope="module", params=sorted(KINDS))
def market(request) -> Market:
    return market_for(config_of(request.param))


def test_market_for_picks_the_kind_the_config_describes():
    single, portfolio = market_for(config_of("single")), market_for(config_of("portfolio"))
    assert isinstance(single, SingleMarket) and single.kind == "single"
    assert isinstance(portfolio, PortfolioMarket) and portfolio.kind == "portfolio"
    # the inverse: the overrides of a kind give a config market_for maps back to it
    for kind in KINDS:
        assert market_for(build_config("fast", None, kind_overrides(kind) | SMALL, [])
                          ).kind == kind


def _public(cls: type) -> dict[str, inspect.Signature | None]:
    out = {}
    for name, value in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            out[name] = None
        elif callable(value):
            out[name] = inspect.signature(value)
    return out


def test_both_kinds_satisfy_one_protocol():
    """Every method and property of the Market protocol exists on both kinds with the same
    signature, and the kinds add nothing the protocol does not name (a caller could not
    use it without asking which kind it holds)."""
    wanted = {name: sig for name, sig in _public(Market).items()}
    for cls in (SingleMarket, PortfolioMarket):
        have = _public(cls)
        assert set(have) == set(wanted), (cls.__name__, set(have) ^ set(wanted))
        for name, signature in wanted.items():
            if signature is None:
                continue
            got = have[name]
            assert list(got.parameters) == list(signature.parameters), (cls.__name__, name)
            for param, spec in signature.parameters.items():
                assert got.parameters[param].kind == spec.kind, (cls.__name__, name, param)
                assert got.parameters[param].default == spec.default, (cls.__name__, name,
                                                                       param)
        for attr in ("kind", "title", "selected_by", "tunable", "joins_late_listings"):
            assert attr in Market.__annotations__ and hasattr(cls, attr), (cls.__name__, attr)


def _same_block(a, b) -> None:
    assert a.symbols == b.symbols and a.feature_names == b.feature_names
    for name in ("open", "close", "features", "timestamps"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_from_bars_equals_load_for_the_bundled_bars(market):
    """Building from already loaded bars (the live and walk-forward path) gives the blocks
    the config's own loader gives (the training path)."""
    data = market.config.data
    bars = load_bars_report(list(data.symbols), data.freq, data.source, "raise").bars
    built = market.from_bars(bars, test_days=data.test_days, val_days=data.val_days,
                             source=data.source)
    loaded = market.load()
    for split in ("train", "val", "test"):
        _same_block(built.block(split), loaded.block(split))
    # and with a given normaliser both use it, not a refit
    state = loaded.normaliser.state_dict()
    again = market.from_bars(bars, test_days=10, val_days=0, normaliser_state=state,
                             source=data.source)
    assert again.normaliser.state_dict() == state


def test_make_env_observations_are_obs_dim_wide(market):
    block = market.load().train
    env = market.make_env(block, 3, num_threads=1, seed=0)
    assert isinstance(env, CoreVecEnv)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, market.obs_dim(block)) == (3, env.obs_dim)
    env.close()


def test_action_spec_per_kind():
    single = market_for(config_of("single")).action_spec()
    assert single == ActionSpec("categorical", 2)  # nse_delivery: long/flat levels (0, 1)
    continuous = market_for(config_of("single", **{"env.action": "continuous"})).action_spec()
    assert continuous == ActionSpec("gaussian", 1, low=0.0, high=1.0)
    portfolio = market_for(config_of("portfolio", **{"portfolio.max_weight": 0.6,
                                                     "portfolio.max_gross": 0.9}))
    assert portfolio.action_spec() == ActionSpec("simplex", len(SYMBOLS) + 1,
                                                 max_weight=0.6, max_gross=0.9)
    # the env each kind builds takes actions of that shape
    for kind, shape in (("single", (2,)), ("portfolio", (2, len(SYMBOLS)))):
        m = market_for(config_of(kind))
        env = m.make_env(m.load().train, 2, num_threads=1, seed=0)
        assert env.action_space.shape == shape, kind


def test_the_env_config_is_the_kinds_own():
    single, portfolio = market_for(config_of("single")), market_for(config_of("portfolio"))
    assert single.env_config is single.config.env
    env = portfolio.env_config
    assert (env.window, env.max_weight, env.long_only) == (8, 1.0, True)
    assert portfolio.evaluation_env_config().episode_length == 0
    assert not portfolio.evaluation_env_config().random_start


def test_bad_configs_raise_a_clear_error():
    with pytest.raises(ConfigError, match="'data.symbols' must name at least two symbols"):
        build_config("fast", None, {**SMALL, **kind_overrides("portfolio"),
                                    "data.symbols": ["BPCL"]}, [])
    with pytest.raises(TypeError, match="market_for needs a TrainConfig, got dict"):
        market_for({"portfolio": {"enabled": True}})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown market kind 'pairs'; known: \['portfolio', "
                                         r"'single'\]"):
        kind_overrides("pairs")
