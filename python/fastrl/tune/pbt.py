"""Population-based training (Jaderberg et al. 2017) over a :class:`Population` in one process.

Every ``ready`` env steps (per member) each member is backtested on the validation bars
(:meth:`Population.validate`, i.e. :func:`fastrl.backtest.evaluate_agent`'s combined agent
Sharpe: the number Trainer.validate and the reports use). Then:

- **exploit** (truncation selection): each member of the bottom quarter (at least one
  member when P >= 2) copies the weights, Adam state and normalisers of a random member of
  the top quarter, in memory;
- **explore**: each copied member's hyperparameters are multiplied by 0.8 or 1.2, or with
  probability 0.25 resampled within the search space's bounds (``space.yaml``).

A member's hyperparameter is a factor times the seed config's hand-set schedule (see
:class:`Population`), so PBT bends the schedule instead of flattening it (a warmup from 0
stays a warmup). Member 0 starts on the seed config; members 1..P-1 start from one explore
of it, so the population is diverse from the first step.

Left in ``run_dir`` (nothing is written without one): ``hparams.csv`` (every member's
hyperparameters at every update), ``lineage.csv`` (each ready round: score, rank, who
copied whom), ``schedules.png`` (the schedules PBT learned next to the seed's),
``winner/checkpoints/final.pt`` (a normal checkpoint: ``fastrl-eval runs/x/winner``),
``winner.yaml`` (the winner's lineage schedule as piecewise schedules:
``fastrl-train --config winner.yaml`` replays it) and ``summary.json``. While it trains,
``pbt_state.pt`` holds the run as of its last finished round, written atomically:
:meth:`PBT.resume` (``fastrl-tune --pbt --resume DIR``) continues from it.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fastrl.config import TrainConfig, config_to_dict
from fastrl.ppo.population import HPARAMS, Population, PopulationError

PERTURB_FACTORS = (0.8, 1.2)
RESAMPLE_PROBABILITY = 0.25
TRUNCATION = 0.25  # bottom / top fraction for exploit
STATE_NAME = "pbt_state.pt"  # the run after its last finished round (resume reads it)
STATE_FORMAT, STATE_VERSION = "fastrl-pbt", 1
# space.yaml knobs that bound each hyperparameter (a schedule's start and end knobs both)
BOUND_KNOBS = {"learning_rate": ("learning_rate",), "ent_coef": ("ent_coef", "ent_coef_final"),
               "clip_range": ("clip_range", "clip_range_final"), "vf_coef": ("vf_coef",),
               "max_grad_norm": ("max_grad_norm",)}


@dataclass
class PBTResult:
    """How a PBT run ended: the winner, the final scores, and the files (None without run_dir)."""

    winner: int
    winner_val_sharpe: float
    final_scores: list[float]
    global_step: int  # env steps per member
    elapsed: float
    env_steps_per_second: float  # all members together, validation included
    rounds: int
    lineage: list[dict[str, Any]]
    winner_schedule: dict[str, list[tuple[int, float]]]
    winner_config: TrainConfig
    files: dict[str, Path] = field(default_factory=dict)


def explore_bounds(space_path: str | Path | None = None) -> dict[str, tuple[float, float, bool]]:
    """hyperparameter -> (low, high, log) from the search space file (default space.yaml)."""
    from fastrl.tune.space import load_space

    space = load_space(space_path)
    bounds = {}
    for name, knobs in BOUND_KNOBS.items():
        found = [space[k] for k in knobs if k in space and space[k].type == "float"]
        if not found:
            raise PopulationError(f"the search space has no float range for {name} "
                                  f"(one of {', '.join(knobs)}); PBT explores within it")
        bounds[name] = (min(float(k.low) for k in found), max(float(k.high) for k in found),
                        all(k.log for k in found))
    return bounds


def check_ready(ready: Any, config: TrainConfig) -> int:
    """``ready`` must be a whole number of updates, at least one, within the budget."""
    batch = config.batch_size
    if isinstance(ready, bool) or not isinstance(ready, (int, np.integer)) or ready < batch \
            or ready % batch:
        raise PopulationError(
            f"ready (--ready) must be a positive multiple of the env steps per member per update "
            f"(num_envs x num_steps = {batch}), got {ready!r}")
    if ready > config.total_timesteps:
        raise PopulationError(f"ready (--ready) {ready} is beyond the budget of "
                              f"{config.total_timesteps} env steps per member: no "
                              "exploit/explore would happen")
    return int(ready)


class PBT:
    """Population-based training; :meth:`run` trains and returns a :class:`PBTResult`."""

    def __init__(self, config: TrainConfig, population: int, ready: int, *,
                 market: Any = None, run_dir: str | Path | None = None,
                 space: str | Path | None = None,
                 callback: Callable[[dict[str, Any]], None] | None = None,
                 env_factory: Callable[..., Any] | None = None) -> None:
        if config.portfolio.enabled:
            # the engine trains portfolio members; PBT's exploit/explore, winner and
            # records have not been tried on them yet
            raise PopulationError("population-based training runs single-symbol envs "
                                  "(TradingVecEnv); portfolio.enabled is not supported yet")
        self.ready = check_ready(ready, config)
        self.bounds = explore_bounds(space)
        self.pop = Population(config, population, market=market, env_factory=env_factory)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callback = callback
        # exploit/explore draws: their own stream, so they never shift the training draws
        self.rng = np.random.default_rng([int(config.seed), 0x9B7])
        p = self.pop.population
        self.history: list[list[tuple[int, dict[str, float]]]] = [[] for _ in range(p)]
        self.rows: list[dict[str, Any]] = []  # every member, every update
        self.lineage: list[dict[str, Any]] = []
        self.rounds = 0
        self.scores: list[float] = []  # the last round's validation Sharpe per member
        self.elapsed_before = 0.0  # wall seconds of earlier sessions of a resumed run
        self.space = None if space is None else str(space)
        for m in range(1, p):
            self.explore(m)

    # ----------------------------------------------------------------- explore/exploit

    def explore(self, m: int) -> None:
        """Perturb member m's factors by 0.8 / 1.2, or resample within the bounds (p 0.25)."""
        pop = self.pop
        seed = pop.seed_values(pop.global_step)
        for name in HPARAMS:
            low, high, log = self.bounds[name]
            reference = seed[name] if seed[name] > 0 else float(getattr(pop.config, name))
            if self.rng.random() < RESAMPLE_PROBABILITY:
                draw = (math.exp(self.rng.uniform(math.log(low), math.log(high))) if log
                        else self.rng.uniform(low, high))
                factor = draw / reference
            else:
                factor = float(pop.factors[name][m]) * float(self.rng.choice(PERTURB_FACTORS))
            # keep the value in force now inside the space's bounds
            value = min(max(factor * reference, low), high)
            pop.factors[name][m] = value / reference
        pop.set_step(pop.global_step)

    def exploit_and_explore(self, scores: list[float]) -> dict[int, int]:
        """Truncation selection; returns {copied member: source member}."""
        p = self.pop.population
        if p < 2:
            return {}
        k = max(1, int(p * TRUNCATION))
        ranked = np.argsort([s if math.isfinite(s) else -math.inf for s in scores],
                            kind="stable")
        bottom, top = ranked[:k].tolist(), ranked[-k:].tolist()
        copies = {}
        for target in bottom:
            source = int(self.rng.choice(top))
            self.pop.copy_member(source, target)
            self.history[target] = list(self.history[source])
            self.explore(target)
            copies[target] = source
        return copies

    def replace_diverged(self, members: list[int], scores: list[float]) -> None:
        """Diverged members (non-finite weights) copy a healthy member at once and explore.

        The source is drawn from the top quarter of the last round's scores (any healthy
        member before the first round); all members diverged is an error.
        """
        pop = self.pop
        healthy = [m for m in range(pop.population) if m not in members]
        if not healthy:
            raise PopulationError(f"every member diverged at step {pop.global_step:,}; lower "
                                  "learning_rate or max_grad_norm")
        if scores:
            ranked = sorted(healthy, key=lambda m: scores[m] if math.isfinite(scores[m])
                            else -math.inf, reverse=True)
            healthy = ranked[:max(1, int(len(ranked) * TRUNCATION))]
        for target in members:
            source = int(self.rng.choice(healthy))
            pop.copy_member(source, target)
            self.history[target] = list(self.history[source])
            self.explore(target)
            self.lineage.append({"round": None, "step": pop.global_step, "member": target,
                                 "val_sharpe": None, "rank": None, "event": "diverged",
                                 "parent": source, **pop.member_hparams(target)})

    # --------------------------------------------------------------------------- run

    def run(self) -> PBTResult:
        """Train to the budget. With a run folder, the state after every round is saved
        (``pbt_state.pt``, atomically): an interrupted run continues with :meth:`resume`."""
        pop = self.pop
        start = time.perf_counter()
        while pop.update < pop.num_updates:
            row = pop.step(raise_on_divergence=False)
            for m in range(pop.population):
                values = {name: row[name][m] for name in HPARAMS}
                self.history[m].append((pop.global_step, values))
                self.rows.append({"step": pop.global_step, "update": pop.update, "member": m,
                                  **values, "episode_return": row["episode_return"][m]})
            if row["diverged"]:
                self.replace_diverged(row["diverged"], self.scores)
            last = pop.update == pop.num_updates
            if pop.global_step % self.ready == 0 or last:
                self.rounds += 1
                scores = self.scores = pop.validate()
                copies = {} if last else self.exploit_and_explore(scores)
                ranks = np.argsort(np.argsort([s if math.isfinite(s) else -math.inf
                                               for s in scores]))
                for m in range(pop.population):
                    self.lineage.append({
                        "round": self.rounds, "step": pop.global_step, "member": m,
                        "val_sharpe": scores[m], "rank": int(pop.population - ranks[m]),
                        "event": "exploit" if m in copies else "keep",
                        "parent": copies.get(m, m), **pop.member_hparams(m)})
                row["val_sharpe"] = scores
                row["copies"] = copies
                if self.run_dir is not None and not last:
                    self.save_state(self.elapsed_before + time.perf_counter() - start)
            row["elapsed"] = self.elapsed_before + time.perf_counter() - start
            if self.callback is not None:
                self.callback(row)
        elapsed = self.elapsed_before + time.perf_counter() - start
        scores = self.scores
        finite = [s if math.isfinite(s) else -math.inf for s in scores]
        winner = int(np.argmax(finite))
        schedule = self.winner_schedule(winner)
        result = PBTResult(
            winner=winner, winner_val_sharpe=float(scores[winner]), final_scores=scores,
            global_step=pop.global_step, elapsed=elapsed,
            env_steps_per_second=pop.population * pop.global_step / elapsed,
            rounds=self.rounds, lineage=self.lineage, winner_schedule=schedule,
            winner_config=self.winner_config(winner, schedule))
        if self.run_dir is not None:
            result.files = self.write(result)
        return result

    # ----------------------------------------------------------------------- resume

    def state_dict(self, elapsed: float) -> dict[str, Any]:
        """The population's snapshot plus PBT's own: settings, explore RNG, records."""
        from fastrl.ppo.checkpoint import to_storable

        return {"format": STATE_FORMAT, "version": STATE_VERSION,
                "config": config_to_dict(self.pop.config), "ready": self.ready,
                "space": self.space, "population": to_storable(self.pop.state_dict()),
                "rng": self.rng.bit_generator.state, "history": self.history,
                "rows": self.rows, "lineage": self.lineage, "rounds": self.rounds,
                "scores": self.scores, "elapsed": elapsed}

    def save_state(self, elapsed: float) -> Path:
        from fastrl.ppo.checkpoint import atomic_torch_save

        assert self.run_dir is not None
        return atomic_torch_save(self.state_dict(elapsed), self.run_dir / STATE_NAME)

    @classmethod
    def resume(cls, run_dir: str | Path, *, market: Any = None,
               callback: Callable[[dict[str, Any]], None] | None = None,
               env_factory: Callable[..., Any] | None = None) -> PBT:
        """A PBT continued from ``run_dir/pbt_state.pt`` (the last finished round); running
        it gives what the uninterrupted run would have (tested)."""
        from fastrl.config import config_from_dict
        from fastrl.ppo.checkpoint import from_storable, read_torch_file

        run_dir = Path(run_dir)
        path = run_dir / STATE_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no PBT state to resume in {run_dir} ({STATE_NAME} is "
                                    "written after the first exploit/explore round)")
        state = read_torch_file(path)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise PopulationError(f"{path} is not a fastrl PBT state")
        if state.get("version") != STATE_VERSION:
            raise PopulationError(f"{path} has version {state.get('version')!r}; this fastrl "
                                  f"resumes version {STATE_VERSION}")
        config = config_from_dict(state["config"])
        population = int(state["population"]["population"])
        runner = cls(config, population, int(state["ready"]), market=market, run_dir=run_dir,
                     space=state["space"], callback=callback, env_factory=env_factory)
        runner.pop.load_state_dict(from_storable(state["population"]))
        runner.rng.bit_generator.state = state["rng"]
        runner.history = [[(int(step), dict(values)) for step, values in member]
                          for member in state["history"]]
        runner.rows, runner.lineage = list(state["rows"]), list(state["lineage"])
        runner.rounds, runner.scores = int(state["rounds"]), list(state["scores"])
        runner.elapsed_before = float(state["elapsed"])
        return runner

    # ------------------------------------------------------------------------ winner

    def winner_schedule(self, m: int) -> dict[str, list[tuple[int, float]]]:
        """Member m's lineage: [(step, value used by the update at that step), ...]."""
        history = self.history[m]
        schedule = {}
        for name in HPARAMS:
            points = [(int(step), float(values[name])) for step, values in history]
            schedule[name] = [(0, points[0][1]), *points]  # a piecewise schedule starts at 0
        return schedule

    def winner_config(self, m: int, schedule: dict[str, list[tuple[int, float]]]) -> TrainConfig:
        """The seed config with member m's lineage schedule (fastrl-train replays it).

        Learning rate, entropy coef and clip range become piecewise schedules; the value
        coef and max grad norm take the member's final values (TrainConfig has no schedule
        for them).
        """
        config = copy.deepcopy(self.pop.config)
        config.lr_schedule = "piecewise"
        config.lr_points = tuple((float(s), v) for s, v in schedule["learning_rate"])
        config.ent_coef_points = tuple((float(s), v) for s, v in schedule["ent_coef"])
        config.clip_range_points = tuple((float(s), v) for s, v in schedule["clip_range"])
        config.learning_rate = max(v for _, v in schedule["learning_rate"])
        config.lr_min = min(config.lr_min, config.learning_rate)
        config.vf_coef = schedule["vf_coef"][-1][1]
        config.max_grad_norm = schedule["max_grad_norm"][-1][1]
        config.run_dir = ""
        return config

    def save_winner(self, m: int, config: TrainConfig, val_sharpe: float, path: Path) -> Path:
        """Member m as a plain Trainer checkpoint (load_agent / fastrl-eval read it)."""
        from fastrl.ppo.checkpoint import save_checkpoint
        from fastrl.ppo.hooks import checkpoint_state
        from fastrl.ppo.trainer import Trainer

        pop = self.pop
        trainer = Trainer(config, market=pop.market)
        engine = trainer.engine  # member m's rows of the population into member 0's
        trainer.network.load_state_dict({k: v[m].detach() for k, v in pop.params.items()})
        engine.optimizer.load_member_state(0, pop.optimizer.member_state(m))
        trainer.obs_normaliser.load_state_dict(pop.obs_normaliser.member(m).state_dict())
        # the member's own env rows, their raw observation and running returns: resuming
        # the checkpoint continues the member's episodes in flight
        trainer.reward_scaler.load_state_dict(pop.reward_scaler.member(m).state_dict())
        rows = slice(m * pop.n, (m + 1) * pop.n)
        env_state = {k: v if v.ndim == 0 else v[rows].copy()
                     for k, v in pop.env.get_state().items()}
        trainer.env.set_state(env_state)
        engine.restore_observation(pop.raw_obs[rows].detach())
        trainer.global_step, trainer.update = pop.global_step, pop.update
        engine.global_step, engine.update = pop.global_step, pop.update
        trainer.schedules.set_step(pop.global_step)
        trainer.best_val_sharpe = val_sharpe if math.isfinite(val_sharpe) else None
        return save_checkpoint(checkpoint_state(trainer), path)

    # ------------------------------------------------------------------------- files

    def write(self, result: PBTResult) -> dict[str, Path]:
        run_dir = self.run_dir
        assert run_dir is not None
        run_dir.mkdir(parents=True, exist_ok=True)
        files = {"hparams": run_dir / "hparams.csv", "lineage": run_dir / "lineage.csv",
                 "plot": run_dir / "schedules.png", "winner_config": run_dir / "winner.yaml",
                 "summary": run_dir / "summary.json"}
        _write_csv(files["hparams"], self.rows)
        _write_csv(files["lineage"], self.lineage)
        winner_dir = run_dir / "winner"
        files["winner_checkpoint"] = self.save_winner(
            result.winner, result.winner_config, result.winner_val_sharpe,
            winner_dir / "checkpoints" / "final.pt")
        config_dict = config_to_dict(result.winner_config)
        (winner_dir / "config.json").write_text(json.dumps(config_dict, indent=2) + "\n",
                                                encoding="utf-8")
        fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"run_dir", "run_name"}
        config_file = {k: v for k, v in config_dict.items() if k in fields}  # no derived keys
        files["winner_config"].write_text(
            f"# PBT winner (member {result.winner}, validation Sharpe "
            f"{result.winner_val_sharpe:+.3f}): its lineage's schedules as piecewise "
            "schedules.\n# replay: fastrl-train --config winner.yaml\n"
            + yaml.safe_dump(config_file, sort_keys=False), encoding="utf-8")
        self.plot(result, files["plot"])
        pop = self.pop
        summary = {
            "population": pop.population, "ready": self.ready, "envs_per_member": pop.n,
            "global_step_per_member": result.global_step, "rounds": result.rounds,
            "elapsed_s": result.elapsed, "env_steps_per_s": result.env_steps_per_second,
            "winner": result.winner, "winner_val_sharpe": _finite(result.winner_val_sharpe),
            "final_val_sharpe": [_finite(s) for s in result.final_scores],
            "device": str(pop.device), "amp": pop.amp, "compile": pop.compile,
            "validation": "each member in turn through fastrl.backtest.evaluate_agent",
            "files": {k: str(v) for k, v in files.items()},
        }
        files["summary"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        return files

    def plot(self, result: PBTResult, path: Path) -> None:
        """Each member's learned schedules (thin), the winner's lineage (thick) and the
        seed config's hand-set schedules (dashed)."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        pop = self.pop
        steps = sorted({step for h in self.history for step, _ in h})
        fig, axes = plt.subplots(len(HPARAMS), 1, figsize=(8, 2.2 * len(HPARAMS)), dpi=100,
                                 sharex=True)
        for ax, name in zip(axes, HPARAMS, strict=True):
            for m in range(pop.population):
                xs = [s for s, _ in self.history[m]]
                ax.plot(xs, [v[name] for _, v in self.history[m]], color="0.7", lw=0.8,
                        drawstyle="steps-post")
            ws = result.winner_schedule[name][1:]
            ax.plot([s for s, _ in ws], [v for _, v in ws], color="C0", lw=2.2,
                    drawstyle="steps-post", label=f"winner (member {result.winner}) lineage")
            ax.plot(steps, [pop.seed_values(s)[name] for s in steps], "k--", lw=1.2,
                    label=f"seed config ({pop.config.preset})")
            ax.set_ylabel(name)
            if name in ("learning_rate", "ent_coef"):
                ax.set_yscale("log")
        axes[0].legend(fontsize=8, loc="best")
        axes[-1].set_xlabel("env steps per member")
        fig.suptitle(f"PBT: P = {pop.population}, exploit/explore every {self.ready:,} steps")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        if not rows:
            return
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def pbt(config: TrainConfig, population: int, ready: int, **kwargs: Any) -> PBTResult:
    """Run population-based training (keyword arguments go to :class:`PBT`)."""
    return PBT(config, population, ready, **kwargs).run()


__all__ = ["PBT", "PBTResult", "check_ready", "explore_bounds", "pbt"]
