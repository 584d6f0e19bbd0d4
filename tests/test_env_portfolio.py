"""The multi-asset portfolio env: C++ core against reference_portfolio.py, hand-computed
cases, thread-count invariance, snapshots, bad input and no look-ahead."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastrl import costs as cost_rates
from fastrl.data.panel import PanelBlock
from fastrl.env_config import PortfolioConfig
from fastrl.markets.portfolio.env import PORTFOLIO_STATE_KEYS, PortfolioVecEnv
from fastrl.reference_portfolio import ReferencePortfolioEnv


def random_panel(seed: int = 0, bars: int = 160, assets: int = 4, num_features: int = 3,
                 holes: float = 0.08, late: bool = True) -> PanelBlock:
    """Random walks at different price levels with late listings, an early delisting and
    missing days; untradable cells hold NaN prices and zero features."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(20.0, 500.0, assets)
    close = level * np.exp(np.cumsum(rng.normal(0.0, 0.02, (bars, assets)), axis=0))
    prev = np.vstack([close[:1], close[:-1]])
    open_ = prev * np.exp(rng.normal(0.0, 0.01, (bars, assets)))
    tradable = rng.random((bars, assets)) > holes
    for a in range(1, assets if late else 1):  # late listings (asset 0 from the start)
        tradable[: rng.integers(0, bars // 2), a] = False
    if assets > 2 and late:
        tradable[rng.integers(bars // 2, bars):, assets - 1] = False  # delisted
    features = np.where(tradable[..., None], rng.normal(size=(bars, assets, num_features)), 0.0)
    return PanelBlock(symbols=tuple(f"S{a}" for a in range(assets)),
                      open=np.where(tradable, open_, np.nan),
                      close=np.where(tradable, close, np.nan),
                      features=features.astype(np.float32), tradable=tradable)


def random_weights(rng: np.random.Generator, config: PortfolioConfig, n: int,
                   assets: int) -> np.ndarray:
    """Weights inside the caps: a random gross split over the names, clipped per name."""
    raw = rng.exponential(size=(n, assets))
    raw[rng.random((n, assets)) < 0.3] = 0.0
    gross = rng.uniform(0.0, config.max_gross, (n, 1))
    w = raw / np.maximum(raw.sum(axis=1, keepdims=True), 1e-12) * gross
    if not config.long_only:
        w *= rng.choice([-1.0, 1.0], size=w.shape)
    return np.clip(w, -config.max_weight, config.max_weight)


def assert_same_step(out, ref_out, fast: PortfolioVecEnv, ref: ReferencePortfolioEnv,
                     where: str) -> None:
    obs, rew, term, trunc, info = out
    r_obs, r_rew, r_term, r_trunc, r_info = ref_out
    np.testing.assert_array_equal(term, r_term, err_msg=f"terminated {where}")
    np.testing.assert_array_equal(trunc, r_trunc, err_msg=f"truncated {where}")
    np.testing.assert_allclose(rew, r_rew, rtol=1e-9, atol=1e-9, err_msg=f"rewards {where}")
    np.testing.assert_allclose(obs, r_obs, rtol=1e-5, atol=1e-6, err_msg=f"obs {where}")
    state = fast.get_state()
    for name in PORTFOLIO_STATE_KEYS:
        np.testing.assert_allclose(state[name], getattr(ref, name), rtol=1e-9, atol=1e-9,
                                   err_msg=f"{name} {where}")
    done = info["_episode"]
    np.testing.assert_array_equal(done, r_info["_episode"])
    for key in ("r", "l", "equity", "costs", "trades", "turnover", "liquidation", "shares",
                "cash"):
        np.testing.assert_allclose(info["episode"][key][done], r_info["episode"][key][done],
                                   rtol=1e-9, atol=1e-9, err_msg=f"episode {key} {where}")
    np.testing.assert_allclose(info["final_obs"][done], r_info["final_obs"][done], rtol=1e-5,
                               atol=1e-6, err_msg=f"final_obs {where}")
    np.testing.assert_allclose(fast.step_costs, ref.step_costs, rtol=1e-9, atol=1e-9,
                               err_msg=f"step costs {where}")
    np.testing.assert_allclose(fast.step_turnover, ref.step_turnover, rtol=1e-9, atol=1e-9,
                               err_msg=f"step turnover {where}")


def run_pair(config: PortfolioConfig, panel: PanelBlock, seed: int, steps: int, num_envs: int,
             threads: int, action_seed: int = 1, masks: bool = False) -> int:
    fast = PortfolioVecEnv(panel, num_envs, config, num_threads=threads, seed=seed)
    ref = ReferencePortfolioEnv(panel, num_envs, config, seed=seed)
    np.testing.assert_allclose(fast.reset(seed=seed)[0], ref.reset(seed=seed)[0], rtol=1e-5,
                               atol=1e-6)
    rng = np.random.default_rng(action_seed)
    resets, last = 0, None
    for k in range(steps):
        w = random_weights(rng, config, num_envs, panel.num_assets)
        if last is not None and rng.random() < 0.4:
            w = last  # held targets: drift rebalances, the no-trade band, whole shares
        last = w
        if masks:  # some envs send no order this step: they hold and are marked
            orders = rng.random(num_envs) < 0.5
            out = fast.step_orders(w, orders)
            assert_same_step(out, ref.step(w.copy(), orders), fast, ref, f"at step {k}")
        else:
            out = fast.step(w)
            assert_same_step(out, ref.step(w.copy()), fast, ref, f"at step {k}")
        resets += int(out[4]["_episode"].sum())
    return resets


def _portfolio_config(**values) -> PortfolioConfig:
    if values["cost"] == "nse_delivery":  # cash delivery: long-only, no leverage
        values.update(long_only=True, max_gross=1.0)
    return PortfolioConfig(**values)


configs = st.builds(
    _portfolio_config,
    window=st.integers(1, 5),
    episode_length=st.sampled_from([0, 7, 25]),
    execution=st.sampled_from(["next_open", "close"]),
    long_only=st.booleans(),
    max_gross=st.sampled_from([1.0, 1.5, 2.0]),
    max_weight=st.sampled_from([0.4, 1.0]),
    integer_shares=st.booleans(),
    trade_band=st.sampled_from([0.0, 0.0, 0.02]),
    cost=st.sampled_from(["nse_delivery", "nse_intraday", "bps", "zero"]),
    reward=st.sampled_from(["log_return", "pnl", "diff_sharpe"]),
    drawdown_penalty=st.sampled_from([0.0, 0.1]),
    turnover_penalty=st.sampled_from([0.0, 0.01]),
    initial_cash=st.sampled_from([1e5, 1e6]),
    equity_floor=st.sampled_from([0.0, 0.5, 0.95]),
    random_start=st.booleans(),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, seed=st.integers(0, 2**64 - 1), threads=st.sampled_from([1, 2, 3]),
       panel_seed=st.integers(0, 1000), assets=st.integers(1, 5))
def test_core_matches_reference_on_random_streams(config, seed, threads, panel_seed, assets):
    config.min_envs_per_thread = 1
    run_pair(config, random_panel(panel_seed, assets=assets), seed, steps=80, num_envs=7,
             threads=threads)


@pytest.mark.parametrize("execution", ["next_open", "close"])
@pytest.mark.parametrize("integer_shares", [False, True])
def test_many_steps_with_resets(execution, integer_shares):
    config = PortfolioConfig(window=4, episode_length=30, execution=execution,
                             integer_shares=integer_shares, max_gross=1.5, long_only=False,
                             equity_floor=0.9, min_envs_per_thread=4, cost="bps")
    resets = run_pair(config, random_panel(7, bars=200, assets=6), seed=11, steps=600,
                      num_envs=12, threads=2)
    assert resets > 150  # auto-reset exercised many times


@pytest.mark.parametrize("integer_shares", [False, True])
def test_envs_without_an_order_hold_and_match_reference(integer_shares):
    """The order mask (what the baselines' no-rebalance days step with): an env whose entry is
    False trades nothing, pays nothing and is marked; every output matches the reference,
    the liquidation cost, shares and cash reported at each episode end included."""
    config = PortfolioConfig(window=4, episode_length=25, integer_shares=integer_shares,
                             trade_band=0.01, equity_floor=0.6, min_envs_per_thread=2)
    resets = run_pair(config, random_panel(5, bars=150, assets=5), seed=3, steps=300,
                      num_envs=9, threads=2, masks=True)
    assert resets > 50


def test_no_order_leaves_shares_and_cash_and_checks_no_weights():
    panel = random_panel(2, late=False, holes=0.0)
    env = PortfolioVecEnv(panel, 2, PortfolioConfig(window=4, random_start=False))
    env.reset(seed=0)
    buy = np.full((2, panel.num_assets), 1.0 / panel.num_assets)
    env.step(buy)
    shares, cash = env.shares.copy(), env.cash.copy()
    bad = buy.copy()
    bad[1] = np.nan  # env 1 sends no order: its weights are not read
    env.step_orders(bad, np.array([True, False]))
    np.testing.assert_array_equal(env.shares[1], shares[1])
    assert env.cash[1] == cash[1] and env.step_costs[1] == 0.0 and env.step_turnover[1] == 0.0
    with pytest.raises(ValueError, match="not finite"):
        env.step_orders(bad, np.array([True, True]))
    with pytest.raises(ValueError, match="orders must be a bool array"):
        env.step_orders(buy, np.array([1, 0]))


def test_large_observation_batches_match_reference():
    # 128 envs x 8201 floats (odd, so rows start unaligned) = 4.2 MB per step: the core
    # writes observations with streaming stores from this size on.
    config = PortfolioConfig(window=64, episode_length=10, integer_shares=True,
                             min_envs_per_thread=8)
    panel = random_panel(12, bars=120, assets=8, num_features=16)
    run_pair(config, panel, seed=5, steps=25, num_envs=128, threads=2)


def two_asset_panel() -> PanelBlock:
    open_ = np.array([[100.0, 50.0], [100.0, 50.0], [110.0, 40.0], [120.0, 45.0]])
    close = np.array([[100.0, 50.0], [105.0, 45.0], [115.0, 42.0], [118.0, 44.0]])
    return PanelBlock(symbols=("A", "B"), open=open_, close=close,
                      features=np.ones((4, 2, 1), np.float32), tradable=np.ones((4, 2), bool))


def test_two_asset_rebalance_charge_by_charge():
    config = PortfolioConfig(window=1, episode_length=0, random_start=False,
                             cost="nse_delivery", initial_cash=1e6, half_spread_bps=0.0,
                             slippage_bps=0.0)  # the charges alone
    env = PortfolioVecEnv(two_asset_panel(), 1, config)
    gst, fees = cost_rates.GST, cost_rates.NSE_EXCHANGE_FEE + cost_rates.SEBI_FEE

    def buy_charges(notional: float) -> float:
        stt = cost_rates.STT_DELIVERY * notional
        stamp = cost_rates.STAMP_DELIVERY_BUY * notional
        return stt + stamp + fees * notional * (1 + gst)

    def sell_charges(notional: float) -> float:
        stt = cost_rates.STT_DELIVERY * notional
        dp = cost_rates.DP_CHARGE * (1 + gst)  # per sell order
        return stt + fees * notional * (1 + gst) + dp

    # Step 1 from row 0: fill at row 1's open (100, 50). 50% A = 5000 shares, 30% B = 6000.
    _, reward, *_ = env.step(np.array([[0.5, 0.3]]))
    cost1 = buy_charges(500_000.0) + buy_charges(300_000.0)
    cash1 = 1e6 - 800_000.0 - cost1
    np.testing.assert_allclose(env.shares, [[5000.0, 6000.0]], rtol=1e-12)
    np.testing.assert_allclose(env.cash, [cash1], rtol=1e-12)
    equity1 = cash1 + 5000 * 105.0 + 6000 * 45.0  # marked at row 1's close
    np.testing.assert_allclose(env.equity, [equity1], rtol=1e-12)
    np.testing.assert_allclose(reward, [np.log(equity1 / 1e6)], rtol=1e-12)

    # Step 2: fill at row 2's open (110, 40): sell A down to 20%, buy B up to 60%.
    _, reward, *_ = env.step(np.array([[0.2, 0.6]]))
    equity_fill = cash1 + 5000 * 110.0 + 6000 * 40.0
    shares_a, shares_b = 0.2 * equity_fill / 110.0, 0.6 * equity_fill / 40.0
    sold, bought = (5000 - shares_a) * 110.0, (shares_b - 6000) * 40.0
    cost2 = sell_charges(sold) + buy_charges(bought)
    cash2 = cash1 + sold - bought - cost2
    np.testing.assert_allclose(env.shares, [[shares_a, shares_b]], rtol=1e-12)
    np.testing.assert_allclose(env.cash, [cash2], rtol=1e-12)
    equity2 = cash2 + shares_a * 115.0 + shares_b * 42.0
    np.testing.assert_allclose(reward, [np.log(equity2 / equity1)], rtol=1e-12)
    np.testing.assert_allclose(env.episode_costs, [cost1 + cost2], rtol=1e-12)
    assert env.episode_trades[0] == 4
    np.testing.assert_allclose(env.episode_turnover, [0.8 + (sold + bought) / equity1],
                               rtol=1e-12)
    # The observation's weights: marked at row 2's close, cash last.
    obs = env.buffers["obs"][0]
    np.testing.assert_allclose(obs[-3:], [shares_a * 115.0 / equity2, shares_b * 42.0 / equity2,
                                          cash2 / equity2], rtol=1e-6)


@pytest.mark.parametrize("execution", ["next_open", "close"])
def test_equal_weight_buy_and_hold_ends_at_average_price_ratio(execution):
    panel = random_panel(3, bars=60, assets=5, holes=0.0, late=False)
    steps = 40
    config = PortfolioConfig(window=2, episode_length=steps, random_start=False,
                             execution=execution, cost="zero")
    env = PortfolioVecEnv(panel, 1, config)
    start = env.bar_index[0]
    fill_row = start + 1 if execution == "next_open" else start
    fill_px = panel.open if execution == "next_open" else panel.close
    w = np.full((1, 5), 0.2)
    for k in range(steps):
        if k:  # hold: the weights the current shares have at this step's fill prices
            px = fill_px[env.bar_index[0] + (execution == "next_open")]
            value = env.shares[0] * px
            w = (value / (env.cash[0] + value.sum()))[None, :]
        _, _, _, truncated, info = env.step(w)
    assert truncated[0]
    ratio = np.mean(panel.close[start + steps] / fill_px[fill_row])
    np.testing.assert_allclose(info["episode"]["equity"][0] / 1e6, ratio, rtol=1e-9)


def test_thread_count_does_not_change_anything():
    panel = random_panel(5, bars=120, assets=6)
    config = PortfolioConfig(window=3, episode_length=20, integer_shares=True, max_gross=1.5,
                             long_only=False, min_envs_per_thread=1, equity_floor=0.9,
                             cost="bps")
    envs = [PortfolioVecEnv(panel, 64, config, num_threads=t, seed=9) for t in (1, 2)]
    rng = np.random.default_rng(0)
    for _ in range(150):
        w = random_weights(rng, config, 64, 6)
        outs = [env.step(w) for env in envs]
        for a, b in zip(outs[0][:4], outs[1][:4], strict=True):
            np.testing.assert_array_equal(a, b)
        done = outs[0][4]["_final_obs"]
        np.testing.assert_array_equal(outs[0][4]["final_obs"][done], outs[1][4]["final_obs"][done])
    s1, s2 = (env.get_state() for env in envs)
    for name in s1:
        np.testing.assert_array_equal(s1[name], s2[name])


def test_snapshot_restores_identical_outputs_in_any_env():
    panel = random_panel(6, bars=150, assets=4)
    config = PortfolioConfig(window=3, episode_length=15, reward="diff_sharpe",
                             integer_shares=True, min_envs_per_thread=2)
    env = PortfolioVecEnv(panel, 8, config, num_threads=2, seed=4)
    rng = np.random.default_rng(2)
    for _ in range(23):
        env.step(random_weights(rng, config, 8, 4))
    snapshot = env.get_state()
    obs_at_snapshot = env.buffers["obs"].copy()
    actions = [random_weights(rng, config, 8, 4) for _ in range(40)]

    def play(e: PortfolioVecEnv) -> list:
        out = []
        for w in actions:
            obs, rew, term, trunc, info = e.step(w)
            done = info["_final_obs"]  # final_obs rows are only valid where done
            out.append((obs.copy(), rew.copy(), term.copy(), trunc.copy(),
                        info["final_obs"][done].copy()))
        return out

    first = play(env)
    env.set_state(pickle.loads(pickle.dumps(snapshot)))  # as a checkpoint would hold it
    np.testing.assert_array_equal(env.buffers["obs"], obs_at_snapshot)
    other = PortfolioVecEnv(panel, 8, config, num_threads=1, seed=123)
    other.set_state(snapshot)
    for replay in (play(env), play(other)):
        for got, want in zip(replay, first, strict=True):
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)


def test_bad_state_raises_and_changes_nothing():
    panel = random_panel(1)
    env = PortfolioVecEnv(panel, 4, PortfolioConfig(window=2), seed=1)
    env.step(np.full((4, 4), 0.2))
    good = env.get_state()
    obs = env.buffers["obs"].copy()

    def broken(**changes) -> dict:
        state = {k: v.copy() for k, v in good.items()}
        state.update(changes)
        return state

    bad_states = [
        broken(cash=good["cash"].astype(np.float32)),
        broken(shares=good["shares"][:, :3].copy()),
        broken(equity=np.full(4, np.nan)),
        broken(bar_index=np.full(4, panel.num_bars - 1, np.int64)),
        broken(bar_index=np.zeros(4, np.int64)),  # before the first full window
        broken(episode_steps=np.full(4, -1, np.int64)),
        broken(surprise=np.zeros(4)),
        {k: v for k, v in good.items() if k != "rng_state"},
        broken(reset_count=np.array(-1, np.int64)),
    ]
    for state in bad_states:
        with pytest.raises(ValueError):
            env.set_state(state)
        now = env.get_state()
        for name in good:
            np.testing.assert_array_equal(now[name], good[name])
        np.testing.assert_array_equal(env.buffers["obs"], obs)


def test_bad_weights_raise_and_change_nothing():
    panel = random_panel(2)
    config = PortfolioConfig(window=2, max_gross=1.0, max_weight=0.5)
    env = PortfolioVecEnv(panel, 3, config, seed=0)
    env.step(np.full((3, 4), 0.1))
    before = env.get_state()
    obs = env.buffers["obs"].copy()
    good = np.full((3, 4), 0.2)
    cases = {"nan": (2, 1, np.nan), "inf": (2, 0, np.inf), "negative": (2, 3, -0.1),
             "per-name cap": (2, 2, 0.6)}
    for i, a, value in cases.values():
        w = good.copy()
        w[i, a] = value
        with pytest.raises(ValueError, match=f"env {i}, symbol 'S{a}'"):
            env.step(w)
    over_gross = np.full((3, 4), 0.2)
    over_gross[2] = 0.3  # 1.2 > max_gross, each name under its cap
    with pytest.raises(ValueError, match="max_gross"):
        env.step(over_gross)
    for shape in [(3,), (3, 5), (4, 4), (3, 4, 1)]:
        with pytest.raises(ValueError, match="shape"):
            env.step(np.full(shape, 0.1))
    with pytest.raises(ValueError, match="floats"):
        env.step(np.zeros((3, 4), np.int64))
    after = env.get_state()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    np.testing.assert_array_equal(env.buffers["obs"], obs)
    env.step(good.astype(np.float32))  # convertible input still works
    assert (env.episode_steps == 2).all()


@pytest.mark.parametrize(("values", "message"), [
    ({"long_only": False}, "long_only is false, but cost 'nse_delivery' is cash delivery"),
    ({"max_gross": 1.5}, "max_gross 1.5 is above 1, but cost 'nse_delivery' is cash delivery"),
])
def test_cash_delivery_refuses_free_shorts_and_leverage(values, message):
    with pytest.raises(ValueError, match=message):
        PortfolioConfig(window=2, **values)
    PortfolioConfig(window=2, cost="bps", **values)  # a model without cash-delivery rules


def test_shorts_allowed_when_not_long_only():
    env = PortfolioVecEnv(random_panel(4, holes=0.0, late=False), 2,
                          PortfolioConfig(window=2, long_only=False, max_gross=2.0, cost="bps"),
                          seed=0)
    env.step(np.array([[-0.5, 0.5, 0.5, -0.5], [0.0, 0.0, 0.0, 0.0]]))


def test_untradable_names_keep_their_shares_and_mark_at_last_close():
    panel = two_asset_panel()
    tradable = np.ones((4, 2), bool)
    tradable[2, 1] = False  # B has no bar on row 2
    panel = PanelBlock(symbols=panel.symbols, open=np.where(tradable, panel.open, np.nan),
                       close=np.where(tradable, panel.close, np.nan),
                       features=np.where(tradable[..., None], panel.features, 0.0),
                       tradable=tradable)
    env = PortfolioVecEnv(panel, 1, PortfolioConfig(window=1, episode_length=0,
                                                    random_start=False, cost="zero"))
    env.step(np.array([[0.5, 0.5]]))  # fills at row 1: 5000 A at 100, 10000 B at 50
    env.step(np.array([[0.0, 0.0]]))  # row 2: A sold at 110; B untradable, kept
    np.testing.assert_allclose(env.shares, [[0.0, 10000.0]])
    # B is marked at its last close (row 1: 45), not at a filled-in row-2 price.
    np.testing.assert_allclose(env.equity, [1e6 - 1e6 + 5000 * 110.0 + 10000 * 45.0])
    obs = env.buffers["obs"][0]
    np.testing.assert_array_equal(obs[:2], [1.0, 0.0])  # B's feature row is zero on row 2


def test_no_look_ahead():
    panel = random_panel(8, bars=80, assets=3)
    k = 40
    rng = np.random.default_rng(1)
    future = random_panel(99, bars=80, assets=3)
    changed = PanelBlock(
        symbols=panel.symbols,
        open=np.vstack([panel.open[: k + 1], future.open[k + 1:]]),
        close=np.vstack([panel.close[: k + 1], future.close[k + 1:]]),
        features=np.concatenate([panel.features[: k + 1], future.features[k + 1:]]),
        tradable=np.vstack([panel.tradable[: k + 1], future.tradable[k + 1:]]))
    for execution in ("next_open", "close"):
        config = PortfolioConfig(window=4, episode_length=0, random_start=False,
                                 execution=execution)
        envs = [PortfolioVecEnv(p, 2, config) for p in (panel, changed)]
        for a, b in zip(envs[0].reset(seed=0)[0], envs[1].reset(seed=0)[0], strict=True):
            np.testing.assert_array_equal(a, b)
        while envs[0].bar_index[0] < k:
            w = random_weights(rng, config, 2, 3)
            out = [env.step(w) for env in envs]
            t = envs[0].bar_index[0]
            # Obs and reward up to row t <= k only read rows <= k, which both panels share.
            np.testing.assert_array_equal(out[0][0], out[1][0])
            np.testing.assert_array_equal(out[0][1], out[1][1])
            window = panel.features[t - 3: t + 1].ravel()
            np.testing.assert_array_equal(out[0][0][0, : window.size], window)


def test_two_python_threads_share_one_env_safely():
    config = PortfolioConfig(window=2, episode_length=0, random_start=False,
                             min_envs_per_thread=4)
    panel = random_panel(3, bars=400, assets=4)
    env = PortfolioVecEnv(panel, 32, config, num_threads=2)
    w = np.full((32, 4), 0.2)
    errors = []

    def work() -> None:
        try:
            for _ in range(150):
                env.step(w)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert (env.episode_steps == 300).all()
    assert (env.bar_index == 301).all()


def test_panel_rejects_features_on_untradable_days():
    panel = random_panel(0)
    features = panel.features.copy()
    t, a = np.argwhere(~panel.tradable)[0]
    features[t, a, 0] = 1.0
    bad = PanelBlock(symbols=panel.symbols, open=panel.open, close=panel.close,
                     features=features, tradable=panel.tradable)
    with pytest.raises(ValueError, match="untradable"):
        PortfolioVecEnv(bad, 2, PortfolioConfig(window=2))


def test_make_portfolio_env_on_bundled_bars_masks_late_listings():
    import fastrl

    env = fastrl.make_portfolio_env(["BPCL", "HDFCLIFE", "TCS"], num_envs=4,
                                    config=PortfolioConfig(window=8, episode_length=20))
    panel = env.panel
    assert panel.symbols == ("BPCL", "HDFCLIFE", "TCS")
    listed = panel.timestamps >= np.datetime64("2017-11-17")
    assert not panel.tradable[~listed, 1].any()  # HDFCLIFE listed in Nov 2017
    assert (panel.features[~listed, 1] == 0).all()
    assert np.isnan(panel.close[~listed, 1]).all()  # nothing back-filled
    assert env.obs_dim == 8 * 3 * panel.num_features + 4
    obs, *_ = env.step(np.full((4, 3), 1 / 3))
    assert obs.shape == (4, env.obs_dim) and np.isfinite(obs).all()
    test_env = fastrl.make_portfolio_env(["BPCL", "HDFCLIFE", "TCS"], split="test",
                                         num_envs=2, config=PortfolioConfig(window=8))
    assert test_env.panel.num_bars == 30 + 7  # test days plus window - 1 context rows
