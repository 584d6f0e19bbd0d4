"""The PPO training loop: rollout -> GAE -> update, with validation, checkpoints and metrics.

One :class:`Trainer` owns a run folder ``runs/<name>/``: ``config.json``, ``metrics.jsonl``
(one flushed line per update, bracketed by start/end events), TensorBoard events in
``tb/`` and ``checkpoints/{last,best,final}.pt``. Nothing here prints; progress goes to
the ``callback`` (the CLI draws a progress bar from it).

Exact resume: a checkpoint holds the model, optimiser, schedule step, normalisers, RNG
states and the env actions taken so far. The simulator's state is rebuilt by replaying
those actions from the seeded reset (the simulator is deterministic given seed and
actions; replay costs only env steps) and is checked against the observation saved with
the checkpoint, so a resumed run continues bit for bit where the first one stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastrl.config import TrainConfig, config_from_dict, config_to_dict, validate_config
from fastrl.ppo.agent import Agent
from fastrl.ppo.checkpoint import (
    CheckpointError,
    build_network,
    load_checkpoint,
    save_checkpoint,
    to_storable,
)
from fastrl.ppo.normalize import ObservationNormaliser, RewardScaler
from fastrl.ppo.schedules import ScheduleSpec, ScheduleTensors
from fastrl.ppo.storage import RolloutStorage
from fastrl.ppo.update import PPOLoss, autocast_context, make_optimizer, ppo_update

Callback = Callable[[dict[str, Any]], None]

# Keys that may differ when resuming: where and how fast the run computes, and how long.
RESUME_OVERRIDABLE = ("total_timesteps", "device", "compile", "amp", "torch_threads",
                      "env_threads", "checkpoint_every")


class TrainingDivergedError(ValueError):
    """An update produced non-finite losses (the message names the update and lr)."""


@dataclass
class TrainResult:
    """How a training run ended and where its files are."""

    run_dir: Path
    reason: str  # "completed" | "interrupted" | "early_stop"
    global_step: int
    updates: int
    best_val_sharpe: float | None
    final_checkpoint: Path | None
    last_metrics: dict[str, Any]


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and device.index is not None and \
            device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def load_market(config: TrainConfig) -> Any:
    """The train/val/test MarketSplits the config's data section describes."""
    data = config.data
    if data.source == "synthetic":
        from fastrl.data import build_synthetic_market

        return build_synthetic_market(
            kind="planted_signal",
            n_symbols=len(data.symbols),
            n_bars=data.synthetic_bars,
            test_days=data.test_days,
            val_days=data.val_days,
            window=config.env.window,
            seed=config.seed if data.synthetic_seed is None else data.synthetic_seed,
            freq=data.freq,
            signal_strength=data.synthetic_signal_strength,
        )
    from fastrl.data import build_market

    return build_market(
        list(data.symbols),
        freq=data.freq,
        source=data.source,
        test_days=data.test_days,
        val_days=data.val_days,
        window=config.env.window,
    )


def validation_env_config(env_config: Any) -> Any:
    """One deterministic pass over every segment: from its first bar to its end."""
    return replace(env_config, random_start=False, episode_length=0,
                   segment_assignment="round_robin")


def backtest_sharpe(
    env: Any, policy: Callable[[np.ndarray], np.ndarray], freq: str, seed: int = 0
) -> dict[str, float]:
    """Run each env's first episode under ``policy``; mean annualised Sharpe and return.

    Equity is read from the simulator (``env.equity``; the episode's final equity where
    it ends), so the figure does not depend on the reward definition.
    """
    from fastrl.metrics import returns_from_equity, sharpe_ratio

    obs, _ = env.reset(seed=seed)
    num_envs = env.num_envs
    initial = float(env.config.initial_cash)
    curves: list[list[float]] = [[initial] for _ in range(num_envs)]
    active = np.ones(num_envs, dtype=bool)
    max_steps = int(np.max(env.market.segment_lengths())) + 1
    for _ in range(max_steps):
        if not active.any():
            break
        obs, _, terminated, truncated, info = env.step(policy(obs))
        done = terminated | truncated
        equity = np.where(done, info["episode"]["equity"], env.equity)
        for i in np.flatnonzero(active):
            curves[i].append(float(equity[i]))
        active &= ~done
    sharpes = [sharpe_ratio(returns_from_equity(np.asarray(c)), freq) for c in curves]
    returns = [c[-1] / c[0] - 1.0 for c in curves]
    return {"sharpe": float(np.mean(sharpes)), "return": float(np.mean(returns))}


def _explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    variance = float(returns.var())
    if variance == 0.0:
        return float("nan")
    return 1.0 - float((returns - values).var()) / variance


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class Trainer:
    """PPO on a TradingVecEnv. Build with a TrainConfig, or :meth:`resume` a run folder."""

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
        self.config = config
        self.callback = callback
        self._stop_requested = False
        self.device = resolve_device(config.device)
        on_cuda = self.device.type == "cuda"
        self.amp = on_cuda if config.amp is None else bool(config.amp)
        self.compile = on_cuda if config.compile is None else bool(config.compile)
        if self.device.type == "cpu":
            torch.set_num_threads(config.torch_threads or os.cpu_count() or 1)
        torch.manual_seed(config.seed)

        self.market = market if market is not None else load_market(config)
        self.run_dir = Path(run_dir) if run_dir else self._default_run_dir()
        self._env_factory = env_factory or self._make_env
        self.batch_size = config.batch_size
        self.num_updates = config.total_timesteps // self.batch_size
        self._build_env()
        self._build_learner()
        self.global_step = 0
        self.update = 0
        self.elapsed_before = 0.0  # seconds spent in earlier sessions of a resumed run
        self.best_val_sharpe: float | None = None
        self.best_train_return: float | None = None
        self.validations_without_improvement = 0
        self._resumed_from: str | None = None

    # ------------------------------------------------------------------ construction

    def _default_run_dir(self) -> Path:
        name = self.config.run_name or "{}-{}-{}".format(
            self.config.preset, "-".join(self.config.data.symbols)[:60],
            time.strftime("%Y%m%d-%H%M%S"),
        )
        return Path(self.config.run_dir) if self.config.run_dir else Path("runs") / name

    @staticmethod
    def _make_env(block: Any, num_envs: int, env_config: Any, *, num_threads: int, seed: int,
                  buffers: dict | None = None) -> Any:
        from fastrl.env import TradingVecEnv

        return TradingVecEnv(block, num_envs, env_config, num_threads=num_threads, seed=seed,
                             buffers=buffers)

    def _build_env(self) -> None:
        config = self.config
        probe_dim = config.env.window * self.market.train.num_features + 3
        n = config.num_envs
        self._pinned: dict[str, torch.Tensor] = {}
        buffers = None
        if self.device.type == "cuda":
            # The simulator writes straight into page-locked memory, so the host->device
            # copies below can run asynchronously.
            self._pinned = {
                "obs": torch.zeros((n, probe_dim), dtype=torch.float32).pin_memory(),
                "rewards": torch.zeros(n, dtype=torch.float64).pin_memory(),
                "terminated": torch.zeros(n, dtype=torch.bool).pin_memory(),
                "truncated": torch.zeros(n, dtype=torch.bool).pin_memory(),
            }
            buffers = {name: t.numpy() for name, t in self._pinned.items()}
        self.env = self._env_factory(self.market.train, n, config.env,
                                     num_threads=config.env_threads, seed=config.seed,
                                     buffers=buffers)
        self.obs_dim = int(self.env.single_observation_space.shape[0])
        self.continuous = config.env.action == "continuous"
        self.num_actions = 0 if self.continuous else int(self.env.single_action_space.n)
        self.val_env = None
        val_block = getattr(self.market, "val", None)
        if config.data.val_days > 0 and val_block is not None:
            self.val_env = self._env_factory(
                val_block, val_block.num_segments, validation_env_config(config.env),
                num_threads=1, seed=config.seed, buffers=None,
            )

    def _build_learner(self) -> None:
        config, device = self.config, self.device
        self.network = build_network(config, self.obs_dim, self.num_actions).to(device)
        self.obs_normaliser = ObservationNormaliser(
            self.obs_dim, clip=config.obs_clip, enabled=config.norm_obs
        ).to(device)
        self.reward_scaler = RewardScaler(
            config.num_envs, config.gamma, clip=config.reward_clip, enabled=config.norm_reward
        ).to(device)
        self.schedules = ScheduleTensors(ScheduleSpec.from_config(config), device)
        self.parameters = list(self.network.parameters())
        self.optimizer = make_optimizer(
            self.parameters, config.optimizer, self.schedules.learning_rate,
            config.weight_decay, config.adam_eps, device,
        )
        self.loss_fn = PPOLoss(self.network, config.vf_coef, config.clip_vloss, config.norm_adv)
        self.policy_forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
        self.policy_forward = self.network
        if self.compile:
            # Shapes are fixed (num_envs rows for acting, minibatch_size for the loss) and
            # the schedule values are tensor inputs, so each compiles once. dynamic=False:
            # the two batch sizes share ActorCritic.forward, which would otherwise be
            # recompiled with a symbolic batch dimension (slower kernels, and an Inductor
            # lowering failure on torch 2.11).
            self.loss_fn = torch.compile(self.loss_fn, dynamic=False)
            self.policy_forward = torch.compile(self.network, dynamic=False)
        self.storage = RolloutStorage(config.num_steps, config.num_envs, self.obs_dim,
                                      self.continuous, device)
        history_rows = self.num_updates * config.num_steps
        dtype = np.float64 if self.continuous else np.int8  # replayed exactly on resume
        self.action_history = np.zeros((history_rows, config.num_envs), dtype=dtype)
        self.agent = Agent(self.network, self.obs_normaliser, config,
                           self._feature_normaliser_state(), amp=self.amp)

    def _feature_normaliser_state(self) -> dict | None:
        normaliser = getattr(self.market, "normaliser", None)
        if normaliser is None:
            return None
        return normaliser.state_dict() if hasattr(normaliser, "state_dict") else None

    # ------------------------------------------------------------------------ resume

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
        state = load_checkpoint(run_dir, map_location="cpu")
        try:
            config = config_from_dict(state["config"])
        except ValueError as err:
            raise CheckpointError(
                f"checkpoint {state['path']} holds an invalid config: {err}"
            ) from None
        for key, value in (overrides or {}).items():
            if key not in RESUME_OVERRIDABLE:
                raise ValueError(
                    f"--resume continues the saved configuration; {key!r} cannot change "
                    f"(only {', '.join(RESUME_OVERRIDABLE)} can)"
                )
            setattr(config, key, value)
        if config.total_timesteps < int(state["global_step"]) + config.batch_size:
            raise ValueError(
                f"the run in {run_dir} already took {state['global_step']} of "
                f"{config.total_timesteps} steps; pass --timesteps larger than "
                f"{int(state['global_step']) + config.batch_size - 1} to continue it"
            )
        trainer = cls(config, market=market, run_dir=run_dir, callback=callback,
                      env_factory=env_factory)
        trainer._restore(state)
        return trainer

    def _restore(self, state: dict[str, Any]) -> None:
        path = state["path"]
        if int(state["obs_dim"]) != self.obs_dim or int(state["num_actions"]) != self.num_actions:
            raise CheckpointError(
                f"checkpoint {path} was trained on observations of {state['obs_dim']} values "
                f"and {state['num_actions']} actions; the data now gives {self.obs_dim} and "
                f"{self.num_actions}"
            )
        try:
            self.network.load_state_dict(state["model"])
            self.obs_normaliser.load_state_dict(state["obs_normaliser"])
            self.reward_scaler.load_state_dict(state["reward_scaler"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:
            first = str(err).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint {path} does not fit this run ({first})") from None
        for group in self.optimizer.param_groups:  # keep the optimiser on the schedule tensor
            group["lr"] = self.schedules.learning_rate
        self.schedules.load_state_dict(state["schedule"])
        self.global_step = int(state["global_step"])
        self.update = int(state["update"])
        self.elapsed_before = float(state.get("elapsed", 0.0))
        self.best_val_sharpe = state.get("best_val_sharpe")
        self.best_train_return = state.get("best_train_return")
        self.validations_without_improvement = int(state.get("validations_without_improvement",
                                                             0))
        actions = state["env_actions"].numpy()
        if actions.shape[1:] != self.action_history.shape[1:]:
            raise CheckpointError(f"checkpoint {path} recorded actions for "
                                  f"{actions.shape[1]} envs; this run has {self.config.num_envs}")
        self.action_history[: actions.shape[0]] = actions
        self._replay_env(actions, state["env_obs"].numpy(), path)
        torch.set_rng_state(state["rng"]["torch"])
        if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self._resumed_from = path

    def _replay_env(self, actions: np.ndarray, expected_obs: np.ndarray, path: str) -> None:
        obs, _ = self.env.reset(seed=self.config.seed)
        env_actions = actions.astype(np.float64 if self.continuous else np.int64)
        for row in env_actions:
            obs, *_ = self.env.step(row)
        if not np.array_equal(obs, expected_obs):
            raise CheckpointError(
                f"replaying the actions recorded in {path} did not rebuild the simulator's "
                "state (the data or the simulator changed since the checkpoint)"
            )
        self._raw_obs_after_replay = obs.copy()

    # -------------------------------------------------------------------- checkpoints

    def _state(self, elapsed: float) -> dict[str, Any]:
        steps = self.update * self.config.num_steps
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}
        return {
            "config": config_to_dict(self.config),
            "obs_dim": self.obs_dim,
            "num_actions": self.num_actions,
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "obs_normaliser": self.obs_normaliser.state_dict(),
            "reward_scaler": self.reward_scaler.state_dict(),
            "schedule": self.schedules.state_dict(),
            "global_step": self.global_step,
            "update": self.update,
            "elapsed": elapsed,
            "best_val_sharpe": self.best_val_sharpe,
            "best_train_return": self.best_train_return,
            "validations_without_improvement": self.validations_without_improvement,
            "rng": rng,
            "env_actions": torch.from_numpy(self.action_history[:steps].copy()),
            "env_obs": self._raw_obs.detach().cpu().clone(),
            "feature_normaliser": to_storable(self.agent.feature_normaliser),
        }

    def _save(self, name: str, elapsed: float) -> Path:
        return save_checkpoint(self._state(elapsed), self.run_dir / "checkpoints" / f"{name}.pt")

    # ------------------------------------------------------------------------ control

    def request_stop(self) -> None:
        """Finish the current update, write the final checkpoint and return (Ctrl-C)."""
        self._stop_requested = True

    # ----------------------------------------------------------------------- training

    def train(self) -> TrainResult:
        """Run updates until total_timesteps, early stop or :meth:`request_stop`."""
        config = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(
            json.dumps(config_to_dict(config), indent=2) + "\n", encoding="utf-8"
        )
        from torch.utils.tensorboard import SummaryWriter

        metrics_path = self.run_dir / "metrics.jsonl"
        if self._resumed_from:
            # Updates logged after the checkpoint (a hard interrupt) are replayed now: drop
            # them from the log, and have TensorBoard purge their events.
            self._drop_rows_after_checkpoint(metrics_path)
            writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.global_step + 1)
        else:
            writer = SummaryWriter(str(self.run_dir / "tb"))
        metrics_file = open(metrics_path, "a", encoding="utf-8")  # noqa: SIM115
        start_time = time.time()
        start = {"event": "start", "config": config_to_dict(config),
                 "total_timesteps": self.num_updates * self.batch_size, "time": start_time,
                 "device": str(self.device), "amp": self.amp, "compile": self.compile}
        if self._resumed_from:
            start.update(resumed_from=self._resumed_from, global_step=self.global_step,
                         update=self.update)
        self._write(metrics_file, start)
        reason = "completed"
        row: dict[str, Any] = {}
        final: Path | None = None
        self._start_rollouts()
        try:
            while self.update < self.num_updates:
                row = self._train_one_update(start_time)
                stop_early = self._after_update(row, start_time)
                self._write(metrics_file, row)
                for key, value in row.items():
                    if "/" in key and isinstance(value, (int, float)):
                        writer.add_scalar(key, value, self.global_step)
                if self.callback is not None:
                    self.callback(row)
                if stop_early:
                    reason = "early_stop"
                    break
                if self._stop_requested:
                    reason = "interrupted"
                    break
            elapsed = self.elapsed_before + time.time() - start_time
            final = self._save("final", elapsed)
            self._save("last", elapsed)
        except KeyboardInterrupt:
            # A hard interrupt may land mid-update, when the model no longer matches the
            # last boundary: keep checkpoints/last.pt (the last consistent state) as is.
            reason = "interrupted"
        finally:
            end = {"event": "end", "reason": reason, "global_step": self.global_step,
                   "update": self.update, "time": time.time(),
                   "elapsed": self.elapsed_before + time.time() - start_time,
                   "best_val_sharpe": self.best_val_sharpe,
                   "final_checkpoint": str(final) if final else None}
            self._write(metrics_file, end)
            metrics_file.close()
            writer.close()
        return TrainResult(self.run_dir, reason, self.global_step, self.update,
                           self.best_val_sharpe, final, row)

    def _drop_rows_after_checkpoint(self, path: Path) -> None:
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by the interrupt
            if "event" not in row and row.get("update", 0) > self.update:
                continue
            kept.append(line)
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)

    @staticmethod
    def _write(stream: Any, record: dict[str, Any]) -> None:
        stream.write(json.dumps(record, allow_nan=False, default=str) + "\n")
        stream.flush()

    def _start_rollouts(self) -> None:
        """The observation the next rollout starts from (fresh reset or resumed state)."""
        if self._resumed_from:
            raw = self._raw_obs_after_replay
        else:
            raw, _ = self.env.reset(seed=self.config.seed)
        self._raw_obs = torch.as_tensor(np.array(raw, dtype=np.float32), device=self.device)
        if not self._resumed_from:
            self.obs_normaliser.update(self._raw_obs)
        self._next_obs = self.obs_normaliser(self._raw_obs)

    def _to_device(self, name: str, array: np.ndarray) -> torch.Tensor:
        if name in self._pinned:  # the env wrote into this pinned tensor
            return self._pinned[name].to(self.device, non_blocking=True)
        return torch.from_numpy(array).to(self.device, copy=True)  # the env reuses `array`

    def _collect_rollout(self) -> dict[str, Any]:
        config, storage, device = self.config, self.storage, self.device
        timing = {"env": 0.0, "inference": 0.0, "copy": 0.0}
        episodes: dict[str, list] = {"r": [], "l": [], "equity": []}
        history_base = self.update * config.num_steps
        low, high = float(config.env.min_pos), float(config.env.max_pos)
        for step in range(config.num_steps):
            t0 = time.perf_counter()
            storage.obs[step].copy_(self._next_obs)
            t1 = time.perf_counter()
            with torch.no_grad():
                with autocast_context(device, self.amp):
                    policy_out, value = self.policy_forward(self._next_obs)
                dist = self.network.distribution(policy_out)
                action = dist.sample()
                storage.actions[step] = action
                storage.logprobs[step] = dist.log_prob(action)
                storage.values[step] = value
            if self.continuous:
                # Clip in float64: a float32 clamp to 0.3 gives 0.30000001, which the env
                # rightly refuses as outside [min_pos, max_pos].
                env_action = np.clip(action.float().cpu().numpy().astype(np.float64), low, high)
            else:
                env_action = action.cpu().numpy()
            self.action_history[history_base + step] = env_action
            t2 = time.perf_counter()
            obs, rewards, terminated, truncated, info = self.env.step(env_action)
            t3 = time.perf_counter()
            self._raw_obs = self._to_device("obs", obs)
            rewards_t = self._to_device("rewards", rewards)
            terminated_t = self._to_device("terminated", terminated)
            truncated_t = self._to_device("truncated", truncated)
            done_t = terminated_t | truncated_t
            storage.dones[step] = done_t
            storage.truncated[step] = truncated_t
            storage.rewards[step] = self.reward_scaler(rewards_t, done_t)
            truncated_rows = np.flatnonzero(truncated)
            if truncated_rows.size:
                final_obs = torch.from_numpy(info["final_obs"][truncated_rows]).to(device)
                rows = torch.from_numpy(truncated_rows).to(device)
                with torch.no_grad(), autocast_context(device, self.amp):
                    final_values = self.network.value(self.obs_normaliser(final_obs))
                storage.final_values[step].index_copy_(0, rows, final_values.float())
            finished = np.flatnonzero(info["_episode"])
            if finished.size:
                for key in episodes:
                    episodes[key].extend(np.asarray(info["episode"][key])[finished].tolist())
            self.obs_normaliser.update(self._raw_obs)
            self._next_obs = self.obs_normaliser(self._raw_obs)
            t4 = time.perf_counter()
            timing["copy"] += (t1 - t0) + (t4 - t3)
            timing["inference"] += t2 - t1
            timing["env"] += t3 - t2
        return {"timing": timing, "episodes": episodes}

    def _train_one_update(self, start_time: float) -> dict[str, Any]:
        config = self.config
        update_start = time.perf_counter()
        rollout = self._collect_rollout()
        # Schedules are evaluated at the env steps taken once this rollout is in.
        self.global_step += self.batch_size
        values = self.schedules.set_step(self.global_step)
        t_update = time.perf_counter()
        with torch.no_grad(), autocast_context(self.device, self.amp):
            last_value = self.network.value(self._next_obs)
        self.storage.finish(last_value.float(), config.gamma, config.gae_lambda)
        batch = self.storage.flat()
        self.network.train()
        result = ppo_update(
            self.loss_fn, self.optimizer, self.parameters, batch,
            n_epochs=config.n_epochs, minibatch_size=config.minibatch_size,
            max_grad_norm=config.max_grad_norm, target_kl=config.target_kl,
            clip_range=self.schedules.clip_range, ent_coef=self.schedules.ent_coef,
            amp=self.amp,
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
            "elapsed": self.elapsed_before + time.time() - start_time,
            "total_timesteps": self.num_updates * self.batch_size,
            "charts/SPS": self.batch_size / wall,
            "charts/learning_rate": values["learning_rate"],
            "charts/ent_coef": values["ent_coef"],
            "charts/clip_range": values["clip_range"],
            "charts/episode_return": float(np.mean(episodes["r"])) if episodes["r"] else None,
            "charts/episode_length": float(np.mean(episodes["l"])) if episodes["l"] else None,
            "charts/episode_equity": (float(np.mean(episodes["equity"]))
                                      if episodes["equity"] else None),
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

    def validate(self) -> dict[str, float]:
        """Deterministic backtest of the current policy on the validation block."""
        if self.val_env is None:
            raise ValueError("no validation data: set data.val_days > 0 (--val-days)")
        self.network.eval()
        try:
            return backtest_sharpe(
                self.val_env, lambda obs: self.agent.act(obs, deterministic=True),
                self.config.data.freq, seed=self.config.seed,
            )
        finally:
            self.network.train()

    def _after_update(self, row: dict[str, Any], start_time: float) -> bool:
        """Validation, best/last checkpoints; True when early stopping fires."""
        config = self.config
        elapsed = self.elapsed_before + time.time() - start_time
        improved = False
        stop = False
        if self.val_env is not None and self.update % config.val_every == 0:
            result = self.validate()
            row["val/sharpe"] = result["sharpe"]
            row["val/return"] = result["return"]
            if self.best_val_sharpe is None or result["sharpe"] > (self.best_val_sharpe
                                                                    + config.min_delta):
                self.best_val_sharpe = result["sharpe"]
                self.validations_without_improvement = 0
                improved = True
            else:
                self.validations_without_improvement += 1
                stop = 0 < config.patience <= self.validations_without_improvement
        elif self.val_env is None and row["charts/episode_return"] is not None:
            # Without validation data, "best" is the best mean training episode return.
            if self.best_train_return is None or row["charts/episode_return"] > (
                    self.best_train_return):
                self.best_train_return = row["charts/episode_return"]
                improved = True
        if improved:
            self._save("best", elapsed)
        if self.update % config.checkpoint_every == 0:
            row["checkpoint"] = str(self._save("last", elapsed))
        return stop


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Build a :class:`Trainer` and run it (keyword arguments go to the Trainer)."""
    return Trainer(config, **kwargs).train()


__all__ = ["Trainer", "TrainResult", "backtest_sharpe", "load_market", "resolve_device",
           "train"]
