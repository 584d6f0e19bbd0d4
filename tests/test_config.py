"""TrainConfig: preset values, resolution order, coercion, validation messages, round trip."""

from __future__ import annotations

import json

import pytest

from fastrl.config import (
    ConfigError,
    TrainConfig,
    build_config,
    config_from_dict,
    config_to_dict,
    preset_config,
    resolve_defaults,
)


def test_fast_preset_is_the_dataclass_defaults_and_matches_the_design_table():
    config = build_config("fast")
    assert config == resolve_defaults(preset_config("fast")) and config.preset == "fast"
    assert preset_config("fast") == TrainConfig()
    assert (config.learning_rate, config.lr_schedule) == (1e-3, "cosine")
    assert (config.ent_coef, config.ent_coef_final, config.ent_coef_decay_steps) == (
        0.1, 0.01, 50_000)
    assert (config.clip_range, config.clip_range_final, config.clip_range_decay_steps) == (
        0.3, 0.1, 30_000)
    assert (config.vf_coef, config.max_grad_norm, config.n_epochs) == (1.0, 1.0, 20)
    assert config.optimizer == "adamw" and config.weight_decay > 0
    assert config.hidden_sizes == (2048, 1024, 512, 256) and config.norm_adv


def test_the_default_is_fast_anchored_with_the_long_features_on_a_64_64_network():
    # bench/anchored.py's choice (issue 33): a command without --preset trains it
    config = build_config()
    assert config.preset == "anchored" and config == build_config("anchored")
    fast = build_config("fast")
    assert config.env.action_mode == "anchored" and fast.env.action_mode == "absolute"
    assert config.data.features == ("base", "momentum", "market", "xs_rank")
    assert config.hidden_sizes == (64, 64)
    assert (config.learning_rate, config.n_epochs, config.env.reward) == (
        fast.learning_rate, fast.n_epochs, fast.env.reward)


def test_baseline_preset_matches_the_design_table():
    config = build_config("baseline")
    assert (config.learning_rate, config.lr_schedule) == (1e-4, "constant")
    assert config.ent_coef == config.ent_coef_final == 0.01
    assert config.clip_range == config.clip_range_final == 0.2
    assert (config.vf_coef, config.max_grad_norm, config.n_epochs) == (0.25, 0.25, 10)
    assert config.optimizer == "adam" and config.hidden_sizes == (1024, 512, 256)


def test_resolution_order_preset_file_flags_set(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("preset: baseline\nlearning_rate: 2e-4\nnum_envs: 32\n"
                         "env:\n  window: 16\ndata:\n  symbols: [BPCL]\n")
    config = build_config(config_file=yaml_file, overrides={"num_envs": 16},
                          set_options=["env.window=8", "hidden_sizes=[64, 64]"])
    assert config.preset == "baseline" and config.n_epochs == 10  # from the file's preset
    assert config.learning_rate == 2e-4  # file over preset
    assert config.num_envs == 16  # flag over file
    assert config.env.window == 8  # --set over file
    assert config.hidden_sizes == (64, 64) and config.data.symbols == ("BPCL",)
    toml_file = tmp_path / "run.toml"
    toml_file.write_text('n_epochs = 5\n[env]\naction = "continuous"\n')
    config = build_config("fast", config_file=toml_file)
    assert config.n_epochs == 5 and config.env.action == "continuous"


def test_set_values_are_coerced_to_the_field_types():
    config = build_config(set_options=["target_kl=null", "compile=true", "total_timesteps=1e6",
                                       "data.symbols=A,B", "env.position_levels=[0, 1]",
                                       "amp=false", "gamma=1"])
    assert config.target_kl is None and config.compile is True and config.amp is False
    assert config.total_timesteps == 1_000_000 and isinstance(config.total_timesteps, int)
    assert config.data.symbols == ("A", "B") and config.env.position_levels == (0.0, 1.0)
    assert config.gamma == 1.0 and isinstance(config.gamma, float)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("learning_rate=0", "'learning_rate' must be > 0"),
        ("clip_range=-0.1", "'clip_range' must be > 0"),
        ("n_epochs=0", "'n_epochs' must be >= 1"),
        ("minibatch_size=1000", "'minibatch_size' must divide"),
        ("total_timesteps=100", "'total_timesteps' must be at least one rollout"),
        ("gamma=1.5", "'gamma' must lie in (0, 1]"),
        ("target_kl=0", "'target_kl' must be > 0 or null"),
        ("optimizer=sgd", "'optimizer' must be adamw or adam"),
        ("hidden_sizes=[64, 0]", "'hidden_sizes' must be a non-empty list"),
        ("num_envs=2.5", "'num_envs' needs an integer"),
        ("norm_obs=maybe", "'norm_obs' needs true or false"),
        ("data.freq=1h", "'data.freq' must be 1d or 5min"),
        ("env.action=both", "'env.action' must be discrete or continuous"),
        ("env.reward=alpha", "EnvConfig.reward"),
        ("batch_size=4", "unknown config key 'batch_size'"),
        ("env.window.x=1", "unknown config key"),
        ("window", "--set needs key=value"),
    ],
)
def test_invalid_values_name_their_key(option, message):
    with pytest.raises(ConfigError) as info:
        build_config(set_options=[option])
    assert message in str(info.value)


def test_unknown_preset_and_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'turbo'; choose from fast, baseline"):
        build_config("turbo")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        build_config(config_file=tmp_path / "missing.yaml")
    other = tmp_path / "run.ini"
    other.write_text("x=1")
    with pytest.raises(ConfigError, match="must end in .yaml"):
        build_config(config_file=other)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        build_config(config_file=listing)


def test_dict_round_trip_is_json_safe_and_exact():
    config = build_config("baseline", set_options=["env.cost=bps", "env.action=continuous",
                                                   "data.val_days=20", "target_kl=null"])
    values = config_to_dict(config)
    assert values["batch_size"] == config.batch_size
    restored = config_from_dict(json.loads(json.dumps(values)))
    assert restored == config
    with pytest.raises(ConfigError, match="unknown config key 'surprise'"):
        config_from_dict({**values, "surprise": 1})


def test_defaults_are_valid_and_independent():
    a, b = TrainConfig(), TrainConfig()
    a.env.window = 3
    assert b.env.window == 32


def test_validation_is_on_by_default_with_a_slice_per_bar_size():
    assert build_config().data.val_days == 120
    assert build_config(set_options=["data.freq=5min"]).data.val_days == 20
    assert build_config(set_options=["data.val_days=0"]).data.val_days == 0
    assert build_config(set_options=["data.val_days=40"]).data.val_days == 40
    assert TrainConfig().data.val_days is None  # resolved by build_config or the Trainer


def test_the_training_reward_prices_turnover_in_proportion_to_costs():
    from fastrl.costs import resolve_cost_model
    from fastrl.env_config import TURNOVER_COST_MULTIPLE, EnvConfig

    delivery = resolve_cost_model("nse_delivery")
    mean_rate = 0.5 * (delivery.buy_rate + delivery.sell_rate)
    assert build_config().env.turnover_penalty == pytest.approx(TURNOVER_COST_MULTIPLE * mean_rate)
    assert build_config().env.turnover_penalty == pytest.approx(0.01, rel=1e-3)  # as selected
    assert build_config(set_options=["env.cost=zero"]).env.turnover_penalty == 0.0
    assert build_config(set_options=["env.turnover_penalty=0.003"]).env.turnover_penalty == 0.003
    assert EnvConfig().turnover_penalty == 0.0  # the env alone charges only its costs


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("device=gpu", "config key 'device' must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ("lr_points=[[5, 0.1]]", "config key 'lr_points' must start at step 0"),
        ("data.val_days=-1", "config key 'data.val_days' must be >= 0 or null, got -1"),
        ("portfolio.trade_band=1", "config key 'portfolio.trade_band' must lie in [0, 1), got 1"),
        ("env.initial_cash=.inf", "config key 'env.initial_cash' must be finite, got inf"),
    ],
)
def test_annotated_ranges_name_the_dotted_key_and_value(option, message):
    with pytest.raises(ConfigError) as info:
        build_config(set_options=[option])
    assert message in str(info.value)


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  freq: 1h\n")
    with pytest.raises(ConfigError, match=r"run.yaml: config key 'data.freq' must be 1d or 5min"):
        build_config(config_file=path)


def test_validate_config_checks_a_config_edited_in_code():
    from fastrl.config import validate_config

    config = build_config()
    config.gamma = 0.0
    with pytest.raises(ConfigError, match=r"'gamma' must lie in \(0, 1\], got 0.0"):
        validate_config(config)
