"""Population-based training (Jaderberg et al. 2017) over a :class:`Population` in one process.

Windows (:mod:`fastrl.tune.pbt_windows`). After the training bars come four blocks of
trading days, each used for one thing:

    train | A: rounds (val_days) | B: pick (pick_days) | C: confirmation (confirm_days) | test

The population trains on the bars before A only. Every ``ready`` env steps (per member) each
member is backtested on A (:meth:`Population.validate`, i.e.
:func:`fastrl.markets.single.backtest.evaluate_agent`'s combined agent Sharpe: the number
Trainer.validate and the reports use). Then:

- **exploit** (truncation selection): each member of the bottom quarter (at least one
  member when P >= 2) copies the weights, Adam state and normalisers of a random member of
  the top quarter, in memory;
- **explore**: each copied member's hyperparameters are multiplied by 0.8 or 1.2, or with
  probability 0.25 resampled within the search space's bounds (``space.yaml``).

The winner is not the best member on A: the rounds chose on A, so the best score there is
biased upwards. After the last round every member is backtested once, by the same function,
on B, which no round saw, and the winner is the argmax of those B scores. The Deflated
Sharpe Ratio of the winner's per-bar returns on B against the P members' Sharpes there
(``fastrl.selection.deflated_sharpe_ratio``, P trials) says whether even that best-of-P is more
than luck. Then the **replay**: the winner's lineage schedule (``winner.yaml``) is trained
from scratch on fresh seeds (CONFIRM_SEED_BASE on, never the run's), beside the fast and
baseline presets on the same seeds, each on every bar before C, scored on C with the tune
objective (default: the Sharpe of the daily active return over buy-and-hold), then
backtested once on the test days: the tune study's confirmation
(:func:`fastrl.tune.report_study.confirm_and_test`), with paired differences, 90% intervals and
a verdict in plain words; ``replay_seeds=0`` skips it (the winner is then unconfirmed).

A member's hyperparameter is a factor times the seed config's hand-set schedule (see
:class:`Population`), so PBT bends the schedule instead of flattening it (a warmup from 0
stays a warmup). Member 0 starts on the seed config, members 1..P-1 from one explore of it.

Left in ``run_dir`` (nothing is written without one): ``hparams.csv`` (every member's
hyperparameters at every update), ``lineage.csv`` (each ready round: window-A score, rank,
who copied whom; the last round's rows also the window-B score), ``schedules.png`` (the
schedules PBT learned next to the seed's), ``winner/checkpoints/final.pt`` (a normal
checkpoint, trained on the bars before A: ``fastrl-eval runs/x/winner``), ``winner.yaml``
(the winner's lineage schedule as piecewise schedules, laid out as the replay trains it:
``fastrl-train --config winner.yaml``), ``summary.json`` and ``report.md`` /
``report.html``. While it trains, ``pbt_state.pt`` holds the run as of its last finished
round, written atomically: :meth:`PBT.resume` (``fastrl-tune --pbt --resume DIR``) goes on.
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

from fastrl.config import TrainConfig, config_from_dict, config_to_dict, resolve_defaults
from fastrl.markets import market_for
from fastrl.ppo.checkpoint import (
    atomic_torch_save,
    from_storable,
    read_torch_file,
    save_checkpoint,
    to_storable,
)
from fastrl.ppo.hooks import checkpoint_state
from fastrl.ppo.members import HPARAMS, PopulationError
from fastrl.ppo.population import Population
from fastrl.ppo.trainer import Trainer
from fastrl.reports.format import json_safe
from fastrl.tune.objective import OBJECTIVES, laid_out
from fastrl.tune.pbt_windows import (
    CONFIRM_DAYS,
    PICK_DAYS,
    Windows,
    block_dates,
    build_markets,
    check_windows,
)
from fastrl.tune.pbt_winner import (
    REPLAY_KEY,
    REPLAY_SEEDS,
    preset_config,
    replay_seed_list,
    replay_settings,
    winner_dsr,
)
from fastrl.tune.report_pbt import write_report
from fastrl.tune.report_study import PRESETS, confirm_and_test, tuning_verdict
from fastrl.tune.space import load_space

PERTURB_FACTORS = (0.8, 1.2)
RESAMPLE_PROBABILITY = 0.25
TRUNCATION = 0.25  # bottom / top fraction for exploit
STATE_NAME = "pbt_state.pt"  # the run after its last finished round (resume reads it)
STATE_FORMAT, STATE_VERSION = "fastrl-pbt", 2  # 2: windows A/B/C, the pick and the replay
# space.yaml knobs that bound each hyperparameter (a schedule's start and end knobs both)
BOUND_KNOBS = {"learning_rate": ("learning_rate",), "ent_coef": ("ent_coef", "ent_coef_final"),
               "clip_range": ("clip_range", "clip_range_final"), "vf_coef": ("vf_coef",),
               "max_grad_norm": ("max_grad_norm",)}


@dataclass
class PBTResult:
    """How a PBT run ended: the winner, the final scores, and the files (None without run_dir)."""

    winner: int  # the argmax of pick_scores
    winner_val_sharpe: float  # its window-A score at the last round
    final_scores: list[float]  # every member's window-A score at the last round
    global_step: int  # env steps per member
    elapsed: float
    env_steps_per_second: float  # all members together, validation included
    rounds: int
    lineage: list[dict[str, Any]]
    winner_schedule: dict[str, list[tuple[int, float]]]
    winner_config: TrainConfig
    pick_scores: list[float] = field(default_factory=list)  # every member's window-B score
    winner_pick_sharpe: float = math.nan
    dsr: dict[str, Any] = field(default_factory=dict)  # winner_dsr's record
    replay: dict[str, Any] | None = None  # the replay's confirmation; None: skipped
    windows: dict[str, Any] = field(default_factory=dict)  # days and dates of each window
    files: dict[str, Path] = field(default_factory=dict)


def explore_bounds(space_path: str | Path | None = None) -> dict[str, tuple[float, float, bool]]:
    """hyperparameter -> (low, high, log) from the search space file (default space.yaml)."""
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
                 market: Any = None, pick_block: Any = None, confirm_market: Any = None,
                 pick_days: int | None = None, confirm_days: int | None = None,
                 replay_seeds: int = REPLAY_SEEDS, objective: str = "excess",
                 set_options: Any = (), run_dir: str | Path | None = None,
                 space: str | Path | None = None,
                 callback: Callable[[dict[str, Any]], None] | None = None,
                 env_factory: Callable[..., Any] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        """``config``'s data section is the user's: ``test_days`` the real test days,
        ``val_days`` window A; ``pick_days`` (B) and ``confirm_days`` (C) lie between them
        (default by bar size: PICK_DAYS, CONFIRM_DAYS). Without ``market`` the three
        markets are built from the data section (:func:`build_markets`); a given ``market``
        (the population's: trained before A, validated on A) needs ``pick_block`` (B, with
        that market's feature normaliser) and, for a replay, ``confirm_market``.
        ``set_options`` (the ``--set`` KEY=VALUE list) apply to the presets of the replay
        too, as in the tune study; ``log`` receives the replay's progress lines."""
        config_market = market_for(config)
        if not config_market.tunable:
            # the engine trains portfolio members; PBT's exploit/explore, winner and
            # records have not been tried on them yet
            raise PopulationError("population-based training runs single-symbol envs "
                                  f"(TradingVecEnv); {config_market.selected_by} is not supported "
                                  "yet")
        self.config = config = resolve_defaults(copy.deepcopy(config))
        freq = config.data.freq
        self.windows = Windows(
            val_days=config.data.val_days,
            pick_days=PICK_DAYS.get(freq, 0) if pick_days is None else pick_days,
            confirm_days=CONFIRM_DAYS.get(freq, 0) if confirm_days is None else confirm_days,
            test_days=config.data.test_days)
        self.replay_seeds = check_windows(self.windows, replay_seeds)
        if objective not in OBJECTIVES:
            raise PopulationError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.objective = objective
        if int(config.ensemble) > 1:  # a member is one policy, its winner one checkpoint
            raise PopulationError(f"PBT trains one policy per member, not an ensemble of "
                                  f"{config.ensemble}: set ensemble=1")
        self.set_options = [str(item) for item in set_options]
        rounds_config = laid_out(config, self.windows.rounds())
        self.ready = check_ready(ready, rounds_config)
        self.bounds = explore_bounds(space)
        if market is None:
            market, built_pick, built_confirm = build_markets(config, self.windows)
            pick_block = built_pick if pick_block is None else pick_block
            confirm_market = built_confirm if confirm_market is None else confirm_market
        elif pick_block is None:
            raise PopulationError("a market given to PBT needs pick_block: window B, the bars "
                                  "after its validation block that pick the winner")
        elif self.replay_seeds and confirm_market is None:
            raise PopulationError("a market given to PBT needs confirm_market for the replay "
                                  "(or replay_seeds=0: no replay)")
        self.pick_block, self.confirm_market = pick_block, confirm_market
        self.pop = Population(rounds_config, population, market=market, env_factory=env_factory)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.callback = callback
        self.log = log or (lambda line: None)
        # exploit/explore draws: their own stream, so they never shift the training draws
        self.rng = np.random.default_rng([int(config.seed), 0x9B7])
        p = self.pop.population
        self.history: list[list[tuple[int, dict[str, float]]]] = [[] for _ in range(p)]
        self.rows: list[dict[str, Any]] = []  # every member, every update
        self.lineage: list[dict[str, Any]] = []
        self.rounds = 0
        self.scores: list[float] = []  # the last round's window-A Sharpe per member
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
                                 "val_sharpe": None, "pick_sharpe": None, "rank": None,
                                 "event": "diverged",
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
                        "val_sharpe": scores[m], "pick_sharpe": None,
                        "rank": int(pop.population - ranks[m]),
                        "event": "exploit" if m in copies else "keep",
                        "parent": copies.get(m, m), **pop.member_hparams(m)})
                row["val_sharpe"] = scores
                row["copies"] = copies
                if self.run_dir is not None and not last:
                    self.save_state(self.elapsed_before + time.perf_counter() - start)
            row["elapsed"] = self.elapsed_before + time.perf_counter() - start
            if self.callback is not None:
                self.callback(row)
        scores = self.scores
        # the pick: every final member once on window B, which no round saw
        pick = pop.validation_results(block=self.pick_block)
        pick_scores = [float(r["sharpe"]) for r in pick]
        winner = int(np.argmax([s if math.isfinite(s) else -math.inf for s in pick_scores]))
        for row in self.lineage:
            if row["round"] == self.rounds:
                row["pick_sharpe"] = pick_scores[row["member"]]
        elapsed = self.elapsed_before + time.perf_counter() - start
        schedule = self.winner_schedule(winner)
        result = PBTResult(
            winner=winner, winner_val_sharpe=float(scores[winner]), final_scores=scores,
            global_step=pop.global_step, elapsed=elapsed,
            env_steps_per_second=pop.population * pop.global_step / elapsed,
            rounds=self.rounds, lineage=self.lineage, winner_schedule=schedule,
            winner_config=self.winner_config(winner, schedule), pick_scores=pick_scores,
            winner_pick_sharpe=pick_scores[winner], dsr=winner_dsr(pick, winner),
            windows=self.window_record())
        if self.run_dir is not None:
            result.files = self.write(result)
        if self.replay_seeds:
            result.replay = self.replay(result)
        if self.run_dir is not None:
            result.files.update(self.write_summary(result))
        return result

    # ----------------------------------------------------------------------- windows

    def window_record(self) -> dict[str, Any]:
        """Days and dates (first and last traded bar per symbol) of each window."""
        w, market = self.windows, self.pop.market
        confirm = self.confirm_market
        return {
            "train": {"days": None, "dates": block_dates(market.train),
                      "use": "the population trains on these bars only"},
            "rounds": {"days": w.val_days, "dates": block_dates(market.val),
                       "use": "window A: every exploit/explore round scores the members here"},
            "pick": {"days": w.pick_days, "dates": block_dates(self.pick_block),
                     "use": "window B: the final members once; the winner is the best here"},
            "confirmation": {"days": w.confirm_days,
                             "dates": block_dates(getattr(confirm, "val", None)),
                             "use": "window C: the replay and the presets are scored here"},
            "test": {"days": w.test_days, "dates": block_dates(getattr(confirm, "test", None)),
                     "use": "the replay's and the presets' final policies, once, at the end"},
        }

    # ------------------------------------------------------------------------ replay

    def replay(self, result: PBTResult) -> dict[str, Any]:
        """The winner's lineage schedule trained from scratch on ``replay_seeds`` fresh seeds
        beside both presets, scored on window C, then the test days once
        (:func:`fastrl.tune.report_study.confirm_and_test`), with the paired differences
        and the verdict."""
        if self.confirm_market is None:
            confirmation = laid_out(self.config, self.windows.confirmation())
            self.confirm_market = market_for(confirmation).load()
            result.windows = self.window_record()
        seeds = replay_seed_list(self.config.seed, self.replay_seeds)
        configs = {REPLAY_KEY: result.winner_config,
                   **{name: preset_config(self.config, self.set_options, name)
                      for name in PRESETS}}
        self.log(f"replay: winner (member {result.winner}), {' and '.join(PRESETS)} on fresh "
                 f"seeds {seeds}, {self.config.total_timesteps:,} env steps each")
        out = confirm_and_test(
            configs, replay_settings(self.config, self.windows, self.replay_seeds,
                                     self.set_options, self.objective),
            self.confirm_market, self.log, seeds=seeds,
            candidate=REPLAY_KEY,
            window=(f"window C: the {self.windows.confirm_days} days before the test days, "
                    "after the pick window; no round and no pick saw them"))
        out["seeds"] = seeds
        out["verdict"] = tuning_verdict(out["differences"]["score"], subject="PBT",
                                        searcher="the PBT run", winner="the replayed winner",
                                        seeds_flag="--replay-seeds")
        return out

    # ----------------------------------------------------------------------- resume

    def state_dict(self, elapsed: float) -> dict[str, Any]:
        """The population's snapshot plus PBT's own: settings, explore RNG, records."""
        return {"format": STATE_FORMAT, "version": STATE_VERSION,
                "config": config_to_dict(self.config), "ready": self.ready,
                "space": self.space, "windows": dataclasses.asdict(self.windows),
                "replay_seeds": self.replay_seeds, "objective": self.objective,
                "set_options": list(self.set_options),
                "population": to_storable(self.pop.state_dict()),
                "rng": self.rng.bit_generator.state, "history": self.history,
                "rows": self.rows, "lineage": self.lineage, "rounds": self.rounds,
                "scores": self.scores, "elapsed": elapsed}

    def save_state(self, elapsed: float) -> Path:
        assert self.run_dir is not None
        return atomic_torch_save(self.state_dict(elapsed), self.run_dir / STATE_NAME)

    @classmethod
    def resume(cls, run_dir: str | Path, *, market: Any = None, pick_block: Any = None,
               confirm_market: Any = None,
               callback: Callable[[dict[str, Any]], None] | None = None,
               env_factory: Callable[..., Any] | None = None,
               log: Callable[[str], None] | None = None) -> PBT:
        """A PBT continued from ``run_dir/pbt_state.pt`` (the last finished round), with the
        run's saved settings (windows, replay, objective, ``--set`` options); running it
        gives what the uninterrupted run would have (tested). Markets as for :class:`PBT`."""
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
                                  f"resumes version {STATE_VERSION} (a run of an older fastrl "
                                  "had no pick window: finish it with that version)")
        config = config_from_dict(state["config"])
        population = int(state["population"]["population"])
        windows = state["windows"]
        runner = cls(config, population, int(state["ready"]), market=market,
                     pick_block=pick_block, confirm_market=confirm_market,
                     pick_days=int(windows["pick_days"]),
                     confirm_days=int(windows["confirm_days"]),
                     replay_seeds=int(state["replay_seeds"]), objective=state["objective"],
                     set_options=state["set_options"], run_dir=run_dir, space=state["space"],
                     callback=callback, env_factory=env_factory, log=log)
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
        """The run's records, the winner's checkpoint and winner.yaml, and the plot (the
        summary and report follow the replay: :meth:`write_summary`)."""
        run_dir = self.run_dir
        assert run_dir is not None
        run_dir.mkdir(parents=True, exist_ok=True)
        files = {"hparams": run_dir / "hparams.csv", "lineage": run_dir / "lineage.csv",
                 "plot": run_dir / "schedules.png", "winner_config": run_dir / "winner.yaml"}
        _write_csv(files["hparams"], self.rows)
        _write_csv(files["lineage"], self.lineage)
        winner_dir = run_dir / "winner"
        files["winner_checkpoint"] = self.save_winner(
            result.winner, result.winner_config, result.winner_val_sharpe,
            winner_dir / "checkpoints" / "final.pt")
        config_dict = config_to_dict(result.winner_config)
        (winner_dir / "config.json").write_text(json.dumps(config_dict, indent=2) + "\n",
                                                encoding="utf-8")
        # winner.yaml: laid out as the replay trains it (every bar before window C)
        replayed = config_to_dict(laid_out(result.winner_config, self.windows.confirmation()))
        fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"run_dir", "run_name"}
        config_file = {k: v for k, v in replayed.items() if k in fields}  # no derived keys
        files["winner_config"].write_text(
            f"# PBT winner (member {result.winner}, window-B Sharpe "
            f"{result.winner_pick_sharpe:+.3f}, window-A Sharpe "
            f"{result.winner_val_sharpe:+.3f}): its lineage's schedules as piecewise "
            "schedules,\n# trained on every bar before the confirmation window and validated "
            "on it, as the replay trains it.\n# replay: fastrl-train --config winner.yaml\n"
            + yaml.safe_dump(config_file, sort_keys=False), encoding="utf-8")
        self.plot(result, files["plot"])
        return files

    def summary(self, result: PBTResult) -> dict[str, Any]:
        """summary.json's content: the settings, the windows, both scores of every member,
        the winner, its DSR, the replay (None when skipped) and the verdict."""
        pop = self.pop
        data = self.config.data
        return json_safe({
            "symbols": list(data.symbols), "freq": data.freq, "source": data.source,
            "seed": int(self.config.seed), "seed_preset": self.config.preset,
            "population": pop.population, "ready": self.ready, "envs_per_member": pop.n,
            "global_step_per_member": result.global_step, "rounds": result.rounds,
            "elapsed_s": result.elapsed, "env_steps_per_s": result.env_steps_per_second,
            "windows": result.windows,
            "winner": result.winner, "winner_pick_sharpe": _finite(result.winner_pick_sharpe),
            "winner_val_sharpe": _finite(result.winner_val_sharpe),
            "final_val_sharpe": [_finite(s) for s in result.final_scores],
            "pick_sharpe": [_finite(s) for s in result.pick_scores],
            "dsr": result.dsr,
            "replay_seeds": self.replay_seeds, "objective": self.objective,
            "replay": result.replay,
            "verdict": verdict(result),
            "device": str(pop.device), "amp": pop.amp, "compile": pop.compile,
            "validation": "each member in turn through "
                          "fastrl.markets.single.backtest.evaluate_agent: window "
                          "A at every round, window B once after the last (the pick)",
            "files": {k: str(v) for k, v in result.files.items()},
        })

    def write_summary(self, result: PBTResult) -> dict[str, Path]:
        """summary.json, report.md and report.html."""
        assert self.run_dir is not None
        path = self.run_dir / "summary.json"
        files = {"summary": path, "report": self.run_dir / "report.md",
                 "report_html": self.run_dir / "report.html"}
        result.files.update(files)
        summary = self.summary(result)
        path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        write_report(summary, self.run_dir, {"schedules": result.files["plot"]})
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


def verdict(result: PBTResult) -> str:
    """The run in plain words: the replay's verdict, or that the winner is unconfirmed."""
    if result.replay is None:
        return ("the winner is unconfirmed: the replay was skipped (--no-replay), so nothing "
                "compares it with the presets on bars the run never chose on")
    return str(result.replay["verdict"])


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


__all__ = ["PBT", "PBTResult", "STATE_NAME", "check_ready", "explore_bounds", "pbt", "verdict"]
