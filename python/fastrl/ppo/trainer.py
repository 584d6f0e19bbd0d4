"""The PPO trainer as a library: build it, ``step()`` it, copy it, throw it away.

``Trainer(config, market=..., run_dir=None)`` writes nothing, prints nothing and touches no
process-wide state: it owns a torch generator (weight init, action sampling, minibatch
order) and its simulator's per-env RNG streams; thread counts and global seeds belong to
the CLI. One :meth:`Trainer.step` is one rollout and one PPO update and returns that
update's metrics row; :meth:`Trainer.train` loops over it and runs hooks (validation and
early stopping, the run folder's logs and checkpoints, progress) after each step.

:meth:`Trainer.state_dict` / :meth:`Trainer.load_state_dict` hold everything that decides
what the next step does (networks, optimiser, normalisers, schedule position and
hyperparameter overrides, the simulator's snapshot and its last observation, the RNG
stream), in memory. A checkpoint is that dictionary written atomically, so resuming never
replays actions and a checkpoint's size does not grow with the steps trained.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastrl.config import (
    TrainConfig,
    config_from_dict,
    portfolio_env_config,
    resolve_defaults,
    validate_config,
)
from fastrl.data.market import load_market
from fastrl.device import resolve_device
from fastrl.ppo.agent import Agent
from fastrl.ppo.checkpoint import CheckpointError, build_network, load_checkpoint
from fastrl.ppo.hooks import Hook, default_hooks
from fastrl.ppo.normalize import ObservationNormaliser, RewardScaler
from fastrl.ppo.rollout import Rollout, staging_tensors
from fastrl.ppo.schedules import ScheduleSpec, ScheduleTensors
from fastrl.ppo.storage import RolloutStorage
from fastrl.ppo.update import (
    PPOLoss,
    autocast_context,
    default_amp,
    make_optimizer,
    ppo_update,
)

Callback = Callable[[dict[str, Any]], None]

# Keys that may differ when resuming: where and how fast the run computes, and how long.
RESUME_OVERRIDABLE = ("total_timesteps", "device", "compile", "amp", "torch_threads",
                      "env_threads", "checkpoint_every")
# What set_hparams changes: values the loss/optimiser read as 0-d tensors, and two plain ones.
TENSOR_HPARAMS = ("learning_rate", "ent_coef", "clip_range", "vf_coef", "clip_range_vf")
PLAIN_HPARAMS = ("max_grad_norm", "n_epochs")


class TrainingDivergedError(ValueError):
    """An update produced non-finite losses (the message names the update and lr)."""


@dataclass
class TrainResult:
    """How a training run ended and where its files are (``run_dir`` None: in memory)."""

    run_dir: Path | None
    reason: str  # "completed" | "interrupted" | "early_stop"
    global_step: int
    updates: int
    best_val_sharpe: float | None
    final_checkpoint: Path | None
    last_metrics: dict[str, Any]


def default_run_dir(config: TrainConfig) -> Path:
    """``config.run_dir``, else runs/<preset>-<symbols>-<timestamp> (the CLI's default)."""
    if config.run_dir:
        return Path(config.run_dir)
    name = config.run_name or "{}-{}-{}".format(
        config.preset, "-".join(config.data.symbols)[:60], time.strftime("%Y%m%d-%H%M%S"))
    return Path("runs") / name


def _explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    variance = float(returns.var())
    if variance == 0.0:
        return float("nan")
    return 1.0 - float((returns - values).var()) / variance


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _mean_or_none(values: list) -> float | None:
    return float(np.mean(values)) if values else None


def _cloned(value: Any) -> Any:
    """A deep copy in which tensors and arrays are copies too (state_dict must not alias)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _cloned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cloned(v) for v in value)
    return copy.copy(value)


class Trainer:
    """PPO on a TradingVecEnv, or with ``config.portfolio.enabled`` on a PortfolioVecEnv
    over every symbol (see the module doc). :meth:`resume` continues a run folder.

    The two paths differ only where the env does: the market (MarketSplits or PanelSplits),
    the env and its config (:attr:`env_config`), the observation size (from the env), the
    action (one scalar per env, or K = symbols + 1 simplex logits stored as [T, N, K] and
    mapped to weights on the way to the env) and the validation backtest.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        market: Any = None,
        run_dir: str | Path | None = None,
        callback: Callback | None = None,
        env_factory: Callable[..., Any] | None = None,
    ) -> None:
        validate_config(config)
        self.config = resolve_defaults(config)
        self.callback = callback
        self._stop_requested = False
        self.device = resolve_device(config.device)
        on_cuda = self.device.type == "cuda"
        self.amp = default_amp(self.device) if config.amp is None else bool(config.amp)
        self.compile = on_cuda if config.compile is None else bool(config.compile)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        # weights are drawn on the CPU whatever the device, so they match across devices
        init_generator = torch.Generator().manual_seed(config.seed)

        self.market = market if market is not None else load_market(config)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.portfolio = bool(config.portfolio.enabled)
        # the env's own config: EnvConfig, or the PortfolioConfig built from env.* + portfolio.*
        self.env_config = portfolio_env_config(config) if self.portfolio else config.env
        self._env_factory = env_factory or (self._make_portfolio_env if self.portfolio
                                            else self._make_env)
        self.batch_size = config.batch_size
        self.num_updates = config.total_timesteps // self.batch_size
        self.hparams = {"max_grad_norm": float(config.max_grad_norm),
                        "n_epochs": int(config.n_epochs)}
        self._build(init_generator)
        self.global_step = 0
        self.update = 0
        self.elapsed_before = 0.0  # seconds spent in earlier sessions of a resumed run
        # validation bookkeeping (the hooks update it; state_dict carries it)
        self.best_val_sharpe: float | None = None
        self.best_train_return: float | None = None
        self.validations_without_improvement = 0
        self.resumed_from: str | None = None
        self.rollout.start(config.seed)

    # ------------------------------------------------------------------ construction

    @staticmethod
    def _make_env(block: Any, num_envs: int, env_config: Any, *, num_threads: int, seed: int,
                  buffers: dict | None = None) -> Any:
        from fastrl.env import TradingVecEnv

        return TradingVecEnv(block, num_envs, env_config, num_threads=num_threads, seed=seed,
                             buffers=buffers)

    @staticmethod
    def _make_portfolio_env(panel: Any, num_envs: int, env_config: Any, *, num_threads: int,
                            seed: int, buffers: dict | None = None) -> Any:
        from fastrl.env_portfolio import PortfolioVecEnv

        return PortfolioVecEnv(panel, num_envs, env_config, num_threads=num_threads, seed=seed,
                               buffers=buffers)

    def _env_obs_dim(self) -> int:
        """Floats per observation of the training env (the staging buffers' width)."""
        train = self.market.train
        if self.portfolio:
            from fastrl.env_portfolio import portfolio_obs_dim

            return portfolio_obs_dim(train, self.config.env.window)
        return self.config.env.window * train.num_features + 3

    def _build(self, init_generator: torch.Generator) -> None:
        config, device = self.config, self.device
        n = config.num_envs
        self.staging = staging_tensors(n, self._env_obs_dim(), device)
        self.env = self._env_factory(
            self.market.train, n, self.env_config, num_threads=config.env_threads,
            seed=config.seed, buffers={name: t.numpy() for name, t in self.staging.items()},
        )
        self.obs_dim = int(self.env.single_observation_space.shape[0])
        self.continuous = self.portfolio or config.env.action == "continuous"
        self.num_actions = 0 if self.continuous else int(self.env.single_action_space.n)
        self.network = build_network(config, self.obs_dim, self.num_actions,
                                     generator=init_generator).to(device)
        self.obs_normaliser = ObservationNormaliser(
            self.obs_dim, clip=config.obs_clip, enabled=config.norm_obs
        ).to(device)
        self.reward_scaler = RewardScaler(
            n, config.gamma, clip=config.reward_clip, enabled=config.norm_reward
        ).to(device)
        self.schedules = ScheduleTensors(ScheduleSpec.from_config(config), device)
        self.parameters = list(self.network.parameters())
        self.optimizer = make_optimizer(
            self.parameters, config.optimizer, self.schedules.learning_rate,
            config.weight_decay, config.adam_eps, device,
        )
        self.loss_fn = PPOLoss(self.network, config.clip_vloss, config.norm_adv)
        policy_forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = self.network
        if self.compile:
            # Shapes are fixed (num_envs rows for acting, minibatch_size for the loss) and
            # the schedule values are tensor inputs, so each compiles once. dynamic=False:
            # the two batch sizes share ActorCritic.forward, which would otherwise be
            # recompiled with a symbolic batch dimension (slower kernels, and an Inductor
            # lowering failure on torch 2.11).
            self.loss_fn = torch.compile(self.loss_fn, dynamic=False)
            policy_forward = torch.compile(self.network, dynamic=False)
        self.storage = RolloutStorage(config.num_steps, n, self.obs_dim, self.continuous, device,
                                      action_shape=self.network.action_shape)
        normaliser = getattr(self.market, "normaliser", None)
        feature_state = normaliser.state_dict() if hasattr(normaliser, "state_dict") else None
        self.agent = Agent(self.network, self.obs_normaliser, config, feature_state, amp=self.amp)
        action_map = None
        if self.portfolio:
            weights = np.zeros((n, self.network.simplex - 1))  # reused every step

            def action_map(logits: np.ndarray) -> np.ndarray:
                return self.agent.weights(logits, out=weights)

        self.rollout = Rollout(
            self.env, self.staging, self.storage, self.network, self.obs_normaliser,
            self.reward_scaler, device=device, amp=self.amp,
            action_range=(config.env.min_pos, config.env.max_pos), policy_forward=policy_forward,
            action_map=action_map,
        )

    # ------------------------------------------------------------------ hyperparameters

    def set_hparams(self, **values: float) -> dict[str, float]:
        """Change hyperparameters between steps; they hold from the next step on.

        ``learning_rate``, ``ent_coef``, ``clip_range``, ``vf_coef`` and ``clip_range_vf``
        replace their schedules (0-d tensors filled in place: no recompile);
        ``max_grad_norm`` and ``n_epochs`` are plain values. Returns the values in force.
        """
        unknown = sorted(set(values) - set(TENSOR_HPARAMS) - set(PLAIN_HPARAMS))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown}; settable: "
                             f"{list(TENSOR_HPARAMS + PLAIN_HPARAMS)}")
        for name, value in values.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"hyperparameter {name} must be a finite number >= 0, "
                                 f"got {value!r}")
        if "n_epochs" in values and (int(values["n_epochs"]) != values["n_epochs"]
                                     or values["n_epochs"] < 1):
            raise ValueError(f"n_epochs must be an integer >= 1, got {values['n_epochs']!r}")
        for name in ("learning_rate", "clip_range", "clip_range_vf", "max_grad_norm"):
            if name in values and values[name] <= 0:
                raise ValueError(f"hyperparameter {name} must be > 0, got {values[name]!r}")
        tensor_values = {k: v for k, v in values.items() if k in TENSOR_HPARAMS}
        if tensor_values:
            self.schedules.override(**tensor_values)
        if "max_grad_norm" in values:
            self.hparams["max_grad_norm"] = float(values["max_grad_norm"])
        if "n_epochs" in values:
            self.hparams["n_epochs"] = int(values["n_epochs"])
        return self.current_hparams()

    def current_hparams(self) -> dict[str, float]:
        return {**{k: self.schedules.current[k] for k in TENSOR_HPARAMS}, **self.hparams}

    # ------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything the next :meth:`step` depends on, as copies (safe to keep or move)."""
        env_state = self.env.get_state()
        return _cloned({
            "obs_dim": self.obs_dim,
            "num_actions": self.num_actions,
            "num_envs": self.config.num_envs,
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_normaliser": self.obs_normaliser.state_dict(),
            "reward_scaler": self.reward_scaler.state_dict(),
            "schedule": self.schedules.state_dict(),
            "hparams": dict(self.hparams),
            "global_step": self.global_step,
            "update": self.update,
            "env": {k: torch.from_numpy(np.array(v)) for k, v in env_state.items()},
            "env_obs": self.rollout.raw_obs.detach().cpu(),
            "generator": self.generator.get_state(),
            "validation": {
                "best_val_sharpe": self.best_val_sharpe,
                "best_train_return": self.best_train_return,
                "validations_without_improvement": self.validations_without_improvement,
            },
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (another trainer's or a checkpoint's) exactly.

        The config must describe the same network and env sizes; a mismatch raises
        ValueError naming it and leaves this trainer unchanged.
        """
        mismatches = [
            f"{key} {state.get(key)} != {mine}"
            for key, mine in (("obs_dim", self.obs_dim), ("num_actions", self.num_actions),
                              ("num_envs", self.config.num_envs))
            if int(state.get(key, -1)) != mine
        ]
        if mismatches:
            raise ValueError(f"trainer state does not fit this trainer: {', '.join(mismatches)}")
        network = copy.deepcopy(self.network.state_dict())
        try:
            self.network.load_state_dict(state["network"])
            self.env.set_state({k: np.asarray(v.numpy() if isinstance(v, torch.Tensor) else v)
                                for k, v in state["env"].items()})
        except (RuntimeError, KeyError, ValueError):
            self.network.load_state_dict(network)
            raise
        self.obs_normaliser.load_state_dict(state["obs_normaliser"])
        self.reward_scaler.load_state_dict(state["reward_scaler"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # keep the optimiser on the schedule tensor
            group["lr"] = self.schedules.learning_rate
        self.schedules.load_state_dict(state["schedule"])
        self.hparams = {"max_grad_norm": float(state["hparams"]["max_grad_norm"]),
                        "n_epochs": int(state["hparams"]["n_epochs"])}
        self.global_step = int(state["global_step"])
        self.update = int(state["update"])
        self.generator.set_state(state["generator"])
        validation = state.get("validation", {})
        self.best_val_sharpe = validation.get("best_val_sharpe")
        self.best_train_return = validation.get("best_train_return")
        self.validations_without_improvement = int(
            validation.get("validations_without_improvement", 0))
        self.rollout.restore(state["env_obs"].to(self.device))

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        overrides: dict[str, Any] | None = None,
        market: Any = None,
        callback: Callback | None = None,
        env_factory: Callable[..., Any] | None = None,
    ) -> Trainer:
        """Continue the run in ``run_dir`` from its last checkpoint, exactly.

        ``overrides`` may change only RESUME_OVERRIDABLE keys (a larger total_timesteps
        extends the run; note it also stretches the cosine learning-rate decay).
        """
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run folder to resume not found: {run_dir}")
        checkpoint = load_checkpoint(run_dir, map_location="cpu")
        path = checkpoint["path"]
        if "trainer" not in checkpoint:
            raise CheckpointError(
                f"checkpoint {path} is in the old format (version {checkpoint.get('version')}: "
                "the simulator was rebuilt by replaying every recorded action); this fastrl "
                "resumes from simulator snapshots (format version 2), so the run cannot be "
                "continued. Its agent still loads for evaluation (fastrl-eval); start a new run"
            )
        try:
            config = config_from_dict(checkpoint["config"])
        except ValueError as err:
            raise CheckpointError(f"checkpoint {path} holds an invalid config: {err}") from None
        for key, value in (overrides or {}).items():
            if key not in RESUME_OVERRIDABLE:
                raise ValueError(
                    f"--resume continues the saved configuration; {key!r} cannot change "
                    f"(only {', '.join(RESUME_OVERRIDABLE)} can)"
                )
            setattr(config, key, value)
        state = checkpoint["trainer"]
        if config.total_timesteps < int(state["global_step"]) + config.batch_size:
            raise ValueError(
                f"the run in {run_dir} already took {state['global_step']} of "
                f"{config.total_timesteps} steps; pass --timesteps larger than "
                f"{int(state['global_step']) + config.batch_size - 1} to continue it"
            )
        trainer = cls(config, market=market, run_dir=run_dir, callback=callback,
                      env_factory=env_factory)
        if config.total_timesteps != int(checkpoint["config"]["total_timesteps"]):
            # the cosine schedule is a function of total_timesteps: rebuild it
            trainer.schedules.spec = ScheduleSpec.from_config(config)
        try:
            trainer.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as err:
            first = str(err).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint {path} does not fit this run ({first})") from None
        trainer.elapsed_before = float(checkpoint.get("elapsed", 0.0))
        trainer.resumed_from = path
        return trainer

    # ------------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Finish the current update, then leave :meth:`train` (Ctrl-C)."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    # ----------------------------------------------------------------------- training

    def step(self) -> dict[str, Any]:
        """One rollout and one PPO update; returns that update's metrics row."""
        config = self.config
        update_start = time.perf_counter()
        rollout = self.rollout.collect(self.generator)
        # Schedules are evaluated at the env steps taken once this rollout is in.
        self.global_step += self.batch_size
        values = self.schedules.set_step(self.global_step)
        t_update = time.perf_counter()
        with torch.no_grad(), autocast_context(self.device, self.amp):
            last_value = self.network.value(self.rollout.next_obs)
        self.storage.finish(last_value.float(), config.gamma, config.gae_lambda)
        batch = self.storage.flat()
        self.network.train()
        result = ppo_update(
            self.loss_fn, self.optimizer, self.parameters, batch,
            n_epochs=self.hparams["n_epochs"], minibatch_size=config.minibatch_size,
            max_grad_norm=self.hparams["max_grad_norm"], target_kl=config.target_kl,
            clip_range=self.schedules.clip_range, ent_coef=self.schedules.ent_coef,
            vf_coef=self.schedules.vf_coef, clip_range_vf=self.schedules.clip_range_vf,
            amp=self.amp, generator=self.generator,
        )
        if not all(math.isfinite(v) for v in result.stats.values()):
            raise TrainingDivergedError(
                f"update {self.update + 1} (step {self.global_step:,}) diverged: non-finite "
                f"losses {result.stats} at learning rate "
                f"{float(self.schedules.learning_rate):.3g}; "
                "lower learning_rate or max_grad_norm, or resume from checkpoints/last.pt"
            )
        explained = _explained_variance(batch["values"], batch["returns"])
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        update_time = now - t_update
        wall = now - update_start
        self.update += 1
        episodes = rollout["episodes"]
        timing = rollout["timing"]
        return {
            "global_step": self.global_step,
            "update": self.update,
            "time": time.time(),
            "total_timesteps": self.num_updates * self.batch_size,
            "charts/SPS": self.batch_size / wall,
            "charts/learning_rate": values["learning_rate"],
            "charts/ent_coef": values["ent_coef"],
            "charts/clip_range": values["clip_range"],
            "charts/episode_return": _mean_or_none(episodes["r"]),
            "charts/episode_length": _mean_or_none(episodes["l"]),
            "charts/episode_equity": _mean_or_none(episodes["equity"]),
            "charts/episodes": len(episodes["r"]),
            "losses/value_loss": result.stats["value_loss"],
            "losses/policy_loss": result.stats["policy_loss"],
            "losses/entropy": result.stats["entropy"],
            "losses/approx_kl": result.stats["approx_kl"],
            "losses/clipfrac": result.stats["clipfrac"],
            "losses/explained_variance": _finite_or_none(explained),
            "losses/epochs": result.epochs,
            "time/env_frac": timing["env"] / wall,
            "time/inference_frac": timing["inference"] / wall,
            "time/copy_frac": timing["copy"] / wall,
            "time/update_frac": update_time / wall,
        }

    @property
    def has_validation(self) -> bool:
        val = getattr(self.market, "val", None)
        return self.config.data.val_days > 0 and val is not None

    def validate(self) -> dict[str, float]:
        """The validation backtest of the current deterministic policy.

        Runs :func:`fastrl.backtest.evaluate_agent` on the validation block, the function
        the test-days report uses: every symbol in one batched env, the position closed
        (and its cost paid) at the end, and the equal-capital combined Sharpe as the score.
        A portfolio runs :func:`fastrl.backtest_portfolio.evaluate_portfolio` instead (the
        test-days report's function too): the score is the portfolio's Sharpe.
        """
        if not self.has_validation:
            raise ValueError("no validation data: set data.val_days > 0 (--val-days)")
        self.network.eval()
        try:
            if self.portfolio:
                from fastrl.backtest_portfolio import evaluate_portfolio

                agent = evaluate_portfolio(self.agent, self.market.val, self.env_config,
                                           baselines=False).get("agent").metrics
                return {"sharpe": float(agent.sharpe), "return": float(agent.total_return)}
            from fastrl.backtest import evaluate_agent

            result = evaluate_agent(self.agent, self.market.val, self.config.env,
                                    baselines=False)
        finally:
            self.network.train()
        combined = result.combined["agent"]
        return {"sharpe": float(combined.sharpe), "return": float(combined.total_return)}

    def train(self, hooks: Iterable[Hook] | None = None) -> TrainResult:
        """Step until total_timesteps, a hook's stop (early stopping) or :meth:`request_stop`.

        ``hooks`` default to :func:`fastrl.ppo.hooks.default_hooks`: validation and early
        stopping when there is validation data, the run folder's logs and checkpoints when
        the trainer has a ``run_dir``, and ``callback``.
        """
        hooks = list(default_hooks(self) if hooks is None else hooks)
        start_time = time.time()
        for hook in hooks:
            hook.on_train_start(self)
        reason = "completed"
        row: dict[str, Any] = {}
        hard_interrupt = False
        try:
            while self.update < self.num_updates:
                row = self.step()
                row["elapsed"] = self.elapsed_before + time.time() - start_time
                stop = False
                for hook in hooks:
                    stop = bool(hook.on_step(self, row)) or stop
                if stop:
                    reason = "early_stop"
                    break
                if self._stop_requested:
                    reason = "interrupted"
                    break
        except KeyboardInterrupt:
            # A hard interrupt may land mid-update, when the model no longer matches the
            # last boundary: the hooks keep what they saved at the last boundary.
            reason, hard_interrupt = "interrupted", True
        self.elapsed_before += time.time() - start_time
        result = TrainResult(self.run_dir, reason, self.global_step, self.update,
                             self.best_val_sharpe, None, row)
        for hook in hooks:
            hook.on_train_end(self, result, hard_interrupt)
        return result


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Build a :class:`Trainer` and run it (keyword arguments go to the Trainer)."""
    return Trainer(config, **kwargs).train()


__all__ = ["Trainer", "TrainResult", "TrainingDivergedError", "default_run_dir", "train"]
