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

The PPO itself (rollout, GAE, loss, optimiser step, normalisers) is the engine in
:mod:`fastrl.ppo.population` with one member: the Trainer holds a ``Population(config, 1)``
and adds what a single run needs on top (overridable schedules, hooks, validation
bookkeeping, run folders, resume). Its ``network``, ``obs_normaliser`` and ``reward_scaler``
are plain modules whose tensors are views of member 0's, so they always show the weights
and statistics being trained.

An ensemble (``config.ensemble`` K > 1) is the engine with K independent members seeded
``seed, seed + 1, ...`` (each the run its seed would be alone, to float32 rounding): the
Trainer steps, validates and checkpoints them as one policy, the mean of their exposures
(:mod:`fastrl.ppo.ensemble`). Its metrics row is the members' mean; ``state_dict`` adds
every member's policy (``members``, what ``load_agent`` reads) and the whole engine
(``engine``, what a resume loads).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastrl import threads
from fastrl.config import TrainConfig, config_from_dict, resolve_defaults, validate_config
from fastrl.ppo.agent import Agent
from fastrl.ppo.checkpoint import CheckpointError, load_checkpoint
from fastrl.ppo.ensemble import EnsembleAgent, member_seeds
from fastrl.ppo.hooks import Hook, TrainResult, default_hooks
from fastrl.ppo.population import Population
from fastrl.ppo.schedules import ScheduleSpec, ScheduleTensors
from fastrl.ppo.update import STAT_NAMES

Callback = Callable[[dict[str, Any]], None]

# Keys that may differ when resuming: where and how fast the run computes, and how long.
RESUME_OVERRIDABLE = ("total_timesteps", "device", "compile", "amp", "torch_threads",
                      "env_threads", "checkpoint_every")
# What set_hparams changes: values the loss/optimiser read as 0-d tensors, and two plain ones.
TENSOR_HPARAMS = ("learning_rate", "ent_coef", "clip_range", "vf_coef", "clip_range_vf")
PLAIN_HPARAMS = ("max_grad_norm", "n_epochs")


class TrainingDivergedError(ValueError):
    """An update produced non-finite losses (the message names the update and lr)."""


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
    """PPO on the env of the config's market (:func:`fastrl.markets.market_for`; see the
    module doc). :meth:`resume` continues a run folder.

    What differs between market kinds is the market's: the splits (:attr:`market`), the env
    and its config (:attr:`env_config`), the observation size (from the env), the action
    head (:attr:`head`: one scalar per env, or K = symbols + 1 simplex logits stored as
    [T, N, K] and mapped to weights on the way to the env) and the validation backtest.
    ``env_factory`` replaces the market's ``make_env`` (tests; :class:`Population`).
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
        self.run_dir = Path(run_dir) if run_dir is not None else None
        # an ensemble is K independent members (each a lone run of its seed) in one engine
        self.members = members = int(self.config.ensemble)
        self.engine = engine = Population(
            self.config, members, market=market, env_factory=env_factory,
            member_seeds=None if members == 1 else member_seeds(self.config.seed, members))
        self.device, self.amp, self.compile = engine.device, engine.amp, engine.compile
        self.generator = engine.generator
        self.market = engine.market
        self.kind = engine.kind  # the config's market (fastrl.markets)
        self.env_config = engine.env_config  # the env's own config
        self.env, self.staging, self.storage = engine.env, engine.staging, engine.storage
        self.obs_dim, self.num_actions = engine.obs_dim, engine.num_actions
        self.head = engine.head
        self.optimizer = engine.optimizer
        self.batch_size = config.batch_size
        self.num_updates = config.total_timesteps // self.batch_size
        # member 0 as plain modules over the engine's tensors (views: they follow training)
        self.agent = engine.member_agent(0, view=True)
        self.network = self.agent.network
        self.obs_normaliser = self.agent.obs_normaliser
        self.reward_scaler = engine.reward_scaler.member(0)
        self.schedules = ScheduleTensors(ScheduleSpec.from_config(config), self.device)
        self.hparams = {"max_grad_norm": float(config.max_grad_norm),
                        "n_epochs": int(config.n_epochs)}
        self._pin_hparams()
        self.global_step = 0
        self.update = 0
        self.elapsed_before = 0.0  # seconds spent in earlier sessions of a resumed run
        # validation bookkeeping (the hooks update it; state_dict carries it)
        self.best_val_sharpe: float | None = None
        self.best_train_return: float | None = None
        self.validations_without_improvement = 0
        self.resumed_from: str | None = None

    def _pin_hparams(self) -> None:
        """The schedules' current values and the plain hyperparameters into the engine."""
        self.engine.pin_hparams({**self.schedules.current, **self.hparams})

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
        self._pin_hparams()
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
            "optimizer": self.optimizer.member_state(0),
            "obs_normaliser": self.obs_normaliser.state_dict(),
            "reward_scaler": self.reward_scaler.state_dict(),
            "schedule": self.schedules.state_dict(),
            "hparams": dict(self.hparams),
            "global_step": self.global_step,
            "update": self.update,
            "env": {k: torch.from_numpy(np.array(v)) for k, v in env_state.items()},
            "env_obs": self.engine.raw_obs.detach().cpu(),
            "generator": self.generator.get_state(),
            "validation": {
                "best_val_sharpe": self.best_val_sharpe,
                "best_train_return": self.best_train_return,
                "validations_without_improvement": self.validations_without_improvement,
            },
            **self._ensemble_state(),
        })

    def _ensemble_state(self) -> dict[str, Any]:
        """An ensemble's extra state: every member's policy and observation normaliser as
        load_agent reads them (``members``), and the whole engine to resume (``engine``).
        The top-level network and normaliser are member 0's."""
        if self.members == 1:
            return {}
        engine = self.engine
        whole = engine.state_dict()
        # the simulator's snapshot as tensors: checkpoints hold only tensors and plain values
        whole["env"] = {k: torch.from_numpy(np.array(v)) for k, v in whole["env"].items()}
        return {"members": [{"network": engine.member_network(m).state_dict(),
                             "obs_normaliser": engine.obs_normaliser.member(m).state_dict()}
                            for m in range(self.members)],
                "engine": whole}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (another trainer's or a checkpoint's) exactly.

        The config must describe the same network and env sizes; a mismatch raises
        ValueError naming it, and a state that fails to load raises its error, leaving this
        trainer unchanged either way.
        """
        mismatches = [
            f"{key} {state.get(key)} != {mine}"
            for key, mine in (("obs_dim", self.obs_dim), ("num_actions", self.num_actions),
                              ("num_envs", self.config.num_envs))
            if int(state.get(key, -1)) != mine
        ]
        members = len(state.get("members", ())) or 1
        if members != self.members:
            mismatches.append(f"ensemble {members} != {self.members}")
        if mismatches:
            raise ValueError(f"trainer state does not fit this trainer: {', '.join(mismatches)}")
        before = self.state_dict()
        try:
            self._load_state(state)
        except Exception:
            self._load_state(before)
            raise

    def _load_state(self, state: dict[str, Any]) -> None:
        """:meth:`load_state_dict`'s writes: the policy, optimiser, normalisers, simulator
        and generator (an ensemble's as its whole engine), then the trainer's own
        schedules, counters and validation bookkeeping."""
        if self.members > 1:
            engine_state = state["engine"]
            if "env" in engine_state:  # the simulator's snapshot as numpy arrays
                engine_state = {**engine_state, "env": _numpy_state(engine_state["env"])}
            self.engine.load_state_dict(engine_state)
        else:
            self.network.load_state_dict(state["network"])
            self.optimizer.load_member_state(0, _member_optimizer_state(state["optimizer"],
                                                                        self.network))
            self.env.set_state(_numpy_state(state["env"]))
            self.obs_normaliser.load_state_dict(state["obs_normaliser"])
            self.reward_scaler.load_state_dict(state["reward_scaler"])
            self.generator.set_state(state["generator"])
            self.engine.restore_observation(state["env_obs"])
        self.schedules.load_state_dict(state["schedule"])
        self.hparams = {"max_grad_norm": float(state["hparams"]["max_grad_norm"]),
                        "n_epochs": int(state["hparams"]["n_epochs"])}
        self._pin_hparams()
        self.global_step = self.engine.global_step = int(state["global_step"])
        self.update = self.engine.update = int(state["update"])
        validation = state.get("validation", {})
        self.best_val_sharpe = validation.get("best_val_sharpe")
        self.best_train_return = validation.get("best_train_return")
        self.validations_without_improvement = int(
            validation.get("validations_without_improvement", 0))

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
        threads.tick()  # the commands' thread policy (fastrl.threads)
        engine = self.engine
        update_start = time.perf_counter()
        rollout = engine.collect()
        # Schedules are evaluated at the env steps taken once this rollout is in.
        self.global_step = engine.global_step = self.global_step + self.batch_size
        values = self.schedules.set_step(self.global_step)
        self._pin_hparams()
        t_update = time.perf_counter()
        batch = engine.finish_rollout()
        update = engine.ppo_update(batch)
        # one member: its own numbers; an ensemble: the members' mean (any non-finite
        # member makes the mean non-finite)
        stats = dict(zip(STAT_NAMES, (update["stats"][0] if self.members == 1
                                      else update["stats"].mean(0)).tolist(), strict=True))
        if not all(math.isfinite(v) for v in stats.values()):
            raise TrainingDivergedError(
                f"update {self.update + 1} (step {self.global_step:,}) diverged: non-finite "
                f"losses {stats} at learning rate "
                f"{float(self.schedules.learning_rate):.3g}; "
                "lower learning_rate or max_grad_norm, or resume from checkpoints/last.pt"
            )
        batch = {k: v[0] if self.members == 1 else v.flatten(0, 1) for k, v in batch.items()}
        explained = _explained_variance(batch["values"], batch["returns"])
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        update_time = now - t_update
        wall = now - update_start
        self.update = engine.update = self.update + 1
        episodes = rollout["episodes"][0]
        if self.members > 1:  # every member's finished episodes
            episodes = {k: [x for member in rollout["episodes"] for x in member[k]]
                        for k in episodes}
        timing = rollout["timing"]
        return {
            "global_step": self.global_step,
            "update": self.update,
            "time": time.time(),
            "total_timesteps": self.num_updates * self.batch_size,
            "charts/SPS": self.members * self.batch_size / wall,
            "charts/learning_rate": values["learning_rate"],
            "charts/ent_coef": values["ent_coef"],
            "charts/clip_range": values["clip_range"],
            "charts/episode_return": _mean_or_none(episodes["r"]),
            "charts/episode_length": _mean_or_none(episodes["l"]),
            "charts/episode_equity": _mean_or_none(episodes["equity"]),
            "charts/episodes": len(episodes["r"]),
            "losses/value_loss": stats["value_loss"],
            "losses/policy_loss": stats["policy_loss"],
            "losses/entropy": stats["entropy"],
            "losses/approx_kl": stats["approx_kl"],
            "losses/clipfrac": stats["clipfrac"],
            "losses/explained_variance": _finite_or_none(explained),
            "losses/epochs": int(update["epochs"].max()),
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

        The market's :meth:`~fastrl.markets.base.Market.validation_scores` on the
        validation block: the test-days report's evaluation (for single symbols every
        symbol in one batched env, the position closed and its cost paid at the end, the
        equal-capital combined Sharpe; for a portfolio the portfolio's Sharpe).
        """
        if not self.has_validation:
            raise ValueError("no validation data: set data.val_days > 0 (--val-days)")
        return self.kind.validation_scores(self.validation_agent(), self.market.val,
                                           env_config=self.env_config)

    def validation_agent(self) -> Agent:
        """The current policy as validation acts with it: a copy laid out as load_agent
        builds it, in the trainer's precision.

        The engine's views (:attr:`agent`) are strided slices of the stacked weights and a
        matmul's rounding follows the layout, so acting on the copy makes the Sharpe that
        picks ``best.pt`` that of the policy ``best.pt`` serves, bit for bit on the
        trainer's device. A policy trained on CUDA is served on the CPU with the same
        weights and precision, equal to the kernels' rounding, not bit for bit.
        """
        if self.members == 1:
            return self.engine.validation_agent(0)
        # an ensemble is validated as it is deployed: the mean of its members' exposures
        return EnsembleAgent([self.engine.validation_agent(m) for m in range(self.members)])

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


def _numpy_state(env: dict[str, Any]) -> dict[str, np.ndarray]:
    """A simulator snapshot as the env takes it: a checkpoint holds its arrays as tensors."""
    return {k: np.asarray(v.numpy() if isinstance(v, torch.Tensor) else v)
            for k, v in env.items()}


def _member_optimizer_state(state: dict[str, Any], network: torch.nn.Module) -> dict[str, Any]:
    """A checkpoint's optimiser state as :meth:`BatchedAdam.member_state` holds it.

    Checkpoints written before the Trainer ran on the engine hold a torch.optim Adam/AdamW
    state dict: parameters numbered in :func:`make_optimizer`'s group order (weight matrices,
    then the rest) with one step count each. Those resume too (the moments carry over;
    Adam's arithmetic from there is the engine's, equal up to float rounding).
    """
    if "param_groups" not in state:
        return state
    named = list(network.named_parameters())
    order = [n for n, p in named if p.ndim >= 2] + [n for n, p in named if p.ndim < 2]
    slots = state["state"]
    if not slots:  # saved before the first update
        zeros = {n: torch.zeros_like(p) for n, p in named}
        return {"step_count": torch.tensor(0.0, dtype=torch.float64), "exp_avg": zeros,
                "exp_avg_sq": dict(zeros)}
    if len(slots) != len(order):
        raise ValueError(f"optimizer state holds {len(slots)} parameters, the network has "
                         f"{len(order)}")
    return {"step_count": torch.tensor(float(slots[0]["step"]), dtype=torch.float64),
            "exp_avg": {n: slots[i]["exp_avg"] for i, n in enumerate(order)},
            "exp_avg_sq": {n: slots[i]["exp_avg_sq"] for i, n in enumerate(order)}}


def train(config: TrainConfig, **kwargs: Any) -> TrainResult:
    """Build a :class:`Trainer` and run it (keyword arguments go to the Trainer)."""
    return Trainer(config, **kwargs).train()


__all__ = ["Trainer", "TrainingDivergedError", "default_run_dir", "train"]
