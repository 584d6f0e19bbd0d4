"""What a trial is worth: how fast a config learns skill, on validation bars only.

A run trains for the budget and backtests its deterministic policy on the validation slice
(the function ``Trainer.validate`` and the test-days report use) at the points of a curve.

The value of a point (``objective``):

- ``excess`` (the default): the annualised Sharpe ratio of the *daily active return*, the
  agent's equal-capital portfolio minus buy-and-hold of the same symbols on the same days
  (an information ratio). Buy-and-hold is what real bars offer for free: an agent that only
  learned "stay long" in a rising window earns no active return and scores 0, however well
  the window rose. Daily, so 5-minute bars are judged on the same clock as daily ones
  (end-of-day equities of both portfolios). Chosen over "agent Sharpe minus buy-and-hold
  Sharpe" because that difference rewards merely holding less of a falling market, and
  over a mean active return because the ratio is scale-free, so configs that trade more or
  less capital are compared on skill per unit of tracking risk.
- ``sharpe``: the agent's own combined validation Sharpe (the score before ``excess``).

The area rule. The curve is a step function on one grid of env steps shared by every
config: 0, g, 2g, ... and the budget ``T`` (``val_interval_steps`` = g). A point's value is
that of the policy after the first update that reaches it (the final policy for ``T``),
held until the next point. The score is the area under that step curve divided by ``T``:
the time-average of the value, so a run that held its final value from step 0 scores
exactly that value, and a run that gets there sooner scores more. Configs with different
rollout lengths are thus valued at the same places. (``val_every`` N instead validates
after every N updates, at the steps reached: the old, per-config grid.)

A trial's score is the mean over K seeds x F walk-forward folds, with its standard error
(:func:`score_se`). Fold ``f`` moves the validation window ``f x val_days`` trading days
back: it is ``build_market(test_days=test_days + f x val_days, val_days=val_days)``, so it
trains only on bars before its validation window. Bars after a fold's validation window
(the confirmation window and the real test days included) are never stepped: trials build
envs on ``train`` and ``val`` blocks only.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fastrl.config import TrainConfig
from fastrl.markets import market_for
from fastrl.markets.single.backtest import evaluate_agent
from fastrl.markets.single.result import aligned_paths
from fastrl.metrics import returns_from_equity, sharpe_ratio
from fastrl.ppo.population import Population
from fastrl.ppo.trainer import Trainer, TrainingDivergedError
from fastrl.strategies import COMBINED

if TYPE_CHECKING:
    from fastrl.tune.settings import ConfirmationSettings

TUNING_SEED_BASE = 0  # the search trains seeds 0 .. K-1
CONFIRM_SEED_BASE = 1000  # the winner is confirmed on seeds 1000 .. 1000+K-1, never searched
OBJECTIVES = ("excess", "sharpe")


class TrialDiverged(ValueError):
    """A run of the trial diverged or scored NaN (the trial is recorded as failed)."""


def curve_area(steps: list[int], values: list[float]) -> float:
    """Time-average of the step curve ``values[i]`` held from ``steps[i]`` to ``steps[i+1]``.

    ``steps`` starts at 0 and rises; the curve ends at ``steps[-1]`` (the env steps trained).
    A single point is its own average.
    """
    if len(steps) != len(values) or not steps:
        raise ValueError(f"curve_area needs matching non-empty steps and values, got "
                         f"{len(steps)} and {len(values)}")
    if len(steps) == 1:
        return float(values[0])
    spans = np.diff(np.asarray(steps, dtype=np.float64))
    if np.any(spans <= 0):
        raise ValueError("curve_area: steps must rise strictly")
    return float(np.dot(spans, np.asarray(values[:-1], dtype=np.float64)) / (steps[-1] - steps[0]))


def fold_days(test_days: int, val_days: int, fold: int) -> tuple[int, int]:
    """(test_days, val_days) that put fold ``fold``'s validation window f x val_days back."""
    return test_days + fold * val_days, val_days


def laid_out(config: TrainConfig, days: tuple[int, int]) -> TrainConfig:
    """A copy of ``config`` whose data section splits (test_days, val_days) = ``days``."""
    config = copy.deepcopy(config)
    config.data.test_days, config.data.val_days = int(days[0]), int(days[1])
    return config


def fold_config(config: TrainConfig, fold: int) -> TrainConfig:
    """``config`` laid out for fold ``fold`` (:func:`fold_days`)."""
    return laid_out(config, fold_days(config.data.test_days, config.data.val_days, fold))


def build_fold_market(config: TrainConfig, fold: int) -> Any:
    """The train/val splits of fold ``fold`` for the config's data section."""
    return market_for(fold_config(config, fold)).load()


@dataclass
class RunResult:
    """One training run of a trial: its validation curve, score and final-policy returns."""

    seed: int
    fold: int
    steps: list[int]
    sharpe: list[float]  # the agent's own validation Sharpe at each point (any objective)
    score: float  # time-average of ``values`` (the objective's curve)
    final_sharpe: float
    val_returns: list[float]  # per-bar returns of the final policy on the validation slice
    seconds: list[float] = field(default_factory=list)  # wall time at each curve point
    agent: Any = None  # kept only when asked for (confirmation runs are tested later)
    objective: str = "excess"
    excess: list[float] = field(default_factory=list)  # daily active-return Sharpe per point
    bench_returns: list[float] = field(default_factory=list)  # buy-and-hold, same bars

    @property
    def values(self) -> list[float]:
        """The curve the score is the time-average of."""
        return self.excess if self.objective == "excess" else self.sharpe

    @property
    def final_value(self) -> float:
        return self.values[-1]

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "fold": self.fold, "score": self.score,
                "objective": self.objective, "final_value": self.final_value,
                "final_sharpe": self.final_sharpe, "curve": {"steps": self.steps,
                "sharpe": self.sharpe, "excess": self.excess, "seconds": self.seconds}}


def validation_result(trainer: Any, baselines: bool = False) -> Any:
    """The trainer's validation backtest as an EvalResult (what ``validate()`` reads)."""
    return evaluate_agent(trainer.validation_agent(), trainer.market.val, trainer.config.env,
                          baselines=baselines)


def daily_equity(result: Any, strategy: str) -> np.ndarray:
    """End-of-day equity of ``strategy``'s equal-capital portfolio (its first mark first).

    The portfolio's summed equity on the common clock of its segments, kept at the last
    mark of each calendar date; without timestamps every mark is its own day.
    """
    backtests = [b for b in result.backtests if b.strategy == strategy]
    equity, _, _, clock = aligned_paths(backtests)
    total = equity.sum(axis=0)
    if not all(b.timestamps is not None for b in backtests) or result.freq == "1d":
        return total
    days = np.asarray(clock[1:]).astype("datetime64[D]")
    ends = np.flatnonzero(np.r_[days[1:] != days[:-1], True]) + 1
    # the opening mark (the close before the first traded bar) starts the first day
    return np.r_[total[0], total[ends]]


def excess_sharpe(agent_equity: np.ndarray, bench_equity: np.ndarray) -> float:
    """Annualised Sharpe of the daily active return: agent minus buy-and-hold, per day.

    Both are end-of-day equities on the same days (:func:`daily_equity`); 0.0 where the
    active return has no measurable spread (an agent that is buy-and-hold).
    """
    agent = returns_from_equity(np.asarray(agent_equity, dtype=np.float64))
    bench = returns_from_equity(np.asarray(bench_equity, dtype=np.float64))
    if agent.shape != bench.shape:
        raise ValueError(f"agent and buy-and-hold cover {agent.shape[0]} and {bench.shape[0]} "
                         "days; they must cover the same days")
    return float(sharpe_ratio(agent - bench, "1d"))


def score_se(scores: list[float]) -> float | None:
    """Standard error of a trial's score (the mean of its runs): ddof=1 spread / sqrt(n);
    None with fewer than 2 runs."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size < 2:
        return None
    return float(np.std(values, ddof=1) / math.sqrt(values.size))


# report(progress in [0, 1] of this run, running area so far); may raise to prune. In a
# batch it may instead return a verdict, called (and raising to prune) once every member has
# reported the step
Reporter = Callable[[float, float], "Callable[[], None] | None"]


class ValidationGrid:
    """Where a run's validation points fall: every ``interval_steps`` env steps on one grid
    for every config (a point is validated after the first update that reaches it and
    stands for every grid step it passed), plus the end of the budget; or, with
    ``interval_steps`` 0, after every ``val_every`` updates and at the end."""

    def __init__(self, total: int, interval_steps: int, val_every: int = 1) -> None:
        self.total, self.interval, self.val_every = int(total), int(interval_steps), val_every
        self.next_point = self.interval

    def points(self, global_step: int, update: int, last: bool) -> list[int]:
        """The grid steps that the update just ended validates ([] when none)."""
        if self.interval > 0:
            if global_step < self.next_point and not last:
                return []
            points = []
            while self.next_point <= global_step and self.next_point < self.total:
                points.append(self.next_point)
                self.next_point += self.interval
            if last:
                points.append(self.total)
            return points
        if update % self.val_every and not last:
            return []
        return [global_step]


def train_run(config: TrainConfig, market: Any, *, seed: int, fold: int, val_every: int = 1,
              val_interval_steps: int = 0, report: Reporter | None = None,
              keep_agent: bool = False, objective: str = "excess",
              latest: dict[str, Any] | None = None) -> RunResult:
    """Train one run to the budget, validating as it goes; raises TrialDiverged.

    With ``val_interval_steps`` g the curve's points are the grid 0, g, 2g, ... and the end
    of the budget, the same for every config (see the module docstring); otherwise
    validation runs after every ``val_every`` updates and always at the end. ``latest``,
    when given, holds the per-bar validation returns of the last validated policy (keys
    ``val_returns``, ``bench_returns``, ``step``), also when a pruner stops the run.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    config = fold_config(config, fold)
    config.seed = int(seed)
    trainer = Trainer(config, market=market)
    started = time.perf_counter()
    # buy-and-hold does not change during training: backtested once, beside the first point
    first = validation_result(trainer, baselines=True)
    bench_equity = daily_equity(first, "buy_and_hold")
    bench_returns = [float(r) for r in first.returns(COMBINED, "buy_and_hold")]

    def point(result: Any) -> tuple[float, float]:
        sharpe = float(result.combined["agent"].sharpe)
        excess = excess_sharpe(daily_equity(result, "agent"), bench_equity)
        if latest is not None:
            latest.update(val_returns=[float(r) for r in result.returns(COMBINED, "agent")],
                          bench_returns=bench_returns, step=trainer.global_step)
        return sharpe, excess

    sharpe0, excess0 = point(first)
    steps, sharpes, excesses, seconds = [0], [sharpe0], [excess0], [0.0]
    total = trainer.num_updates * trainer.batch_size
    grid = ValidationGrid(total, val_interval_steps, val_every)
    result = first
    try:
        while trainer.update < trainer.num_updates:
            trainer.step()
            points = grid.points(trainer.global_step, trainer.update,
                                 trainer.update >= trainer.num_updates)
            if not points:
                continue
            result = validation_result(trainer)
            sharpe, excess = point(result)
            if not (math.isfinite(sharpe) and math.isfinite(excess)):
                raise TrialDiverged(f"seed {seed} fold {fold}: validation Sharpe {sharpe} "
                                    f"(excess {excess}) at step {trainer.global_step}")
            for at in points:
                steps.append(at)
                sharpes.append(sharpe)
                excesses.append(excess)
                seconds.append(time.perf_counter() - started)
            if report is not None:
                values = excesses if objective == "excess" else sharpes
                report(trainer.global_step / total, curve_area(steps, values))
    except TrainingDivergedError as err:
        raise TrialDiverged(f"seed {seed} fold {fold}: {err}") from None
    returns = result.returns(COMBINED, "agent")
    values = excesses if objective == "excess" else sharpes
    return RunResult(seed=seed, fold=fold, steps=steps, sharpe=sharpes,
                     score=curve_area(steps, values), final_sharpe=sharpes[-1],
                     val_returns=[float(r) for r in returns], seconds=seconds,
                     # an ensemble's policy is its members' mean (one policy: the live view)
                     agent=(trainer.agent if trainer.members == 1
                            else trainer.validation_agent()) if keep_agent else None,
                     objective=objective,
                     excess=excesses, bench_returns=bench_returns)


@dataclass
class BatchMember:
    """One run a batched population trains: its config and seed, the reporter its trial
    judges it by, and the dict that holds its last validated policy (:func:`train_run`'s
    ``latest``)."""

    config: TrainConfig
    seed: int
    report: Reporter | None = None
    latest: dict[str, Any] | None = None


Refill = Callable[[int], Sequence[BatchMember]]


def train_batch(configs: list[TrainConfig], market: Any, *, seed: int | Sequence[int],
                fold: int, val_every: int = 1, val_interval_steps: int = 0,
                reports: list[Reporter | None] | None = None, objective: str = "excess",
                latests: list[dict[str, Any] | None] | None = None,
                keep_agents: bool = False, refill: Refill | None = None,
                on_end: Callable[[int, Any], None] | None = None,
                slots: int | None = None) -> list[Any]:
    """:func:`train_run` for B configs at once, trained as one population
    (:class:`fastrl.ppo.population.Population`, one member per config; they must share the
    population's shared keys). Same curve grid, area score, validation and seconds per
    point as :func:`train_run`, per member. ``seed``: one for every member (a batch of
    trials) or one per member (one config on several seeds: the confirmation).

    Returns one outcome per member: its :class:`RunResult` (with ``keep_agents``, holding
    the member's final policy), or the exception that ended it (``TrialDiverged``, or what
    its report raised, e.g. ``optuna.TrialPruned``). ``on_end(index, outcome)`` hears each
    as it happens.
    The members are independent (``member_seeds``: each as a lone run of its seed), so
    a member's curve is the one it would have alone. When members end, the population is
    compacted (:meth:`Population.keep`) before the next update: an ended run costs nothing
    more, and the others continue exactly where they were.

    Continuous batching: with ``refill``, the freed rows are offered to new runs before the
    next update. ``refill(k)`` returns up to k :class:`BatchMember` (none: the population
    shrinks as before; once it returns fewer than k it is not asked again); they join the
    running population on their own clock (:meth:`Population.join`, one engine built),
    validated at step 0 first, and train their full budget while the others go on.
    ``slots`` (default: the initial members) caps the members at once. Outcomes list the
    initial members, then the joined ones in the order they joined. A point's ``seconds``
    is the wall time since its member joined (the population's work while it was in it).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    p = len(configs)
    ensembles = sorted({int(c.ensemble) for c in configs} - {1})
    if ensembles:
        # one member per trial: a trial that is itself an ensemble trains alone (train_run)
        raise ValueError(f"batched trials train one policy each; ensemble {ensembles[0]} "
                         "needs one run per trial (no --batch)")
    seeds = [int(s) for s in seed] if isinstance(seed, Sequence) else [int(seed)] * p
    if len(seeds) != p:
        raise ValueError(f"{len(seeds)} seeds for {p} configs")
    reports = list(reports) if reports is not None else [None] * p
    latests = list(latests) if latests is not None else [None] * p
    members = [BatchMember(c, s, r, la) for c, s, r, la in zip(configs, seeds, reports, latests,
                                                                strict=True)]
    slots = p if slots is None else int(slots)
    engine_seed = seeds[0]  # shared by the engine; each member runs on its own member seed

    def prepared(config: TrainConfig) -> TrainConfig:
        config = copy.deepcopy(config)
        config.seed = engine_seed
        config.data.test_days, config.data.val_days = fold_days(
            config.data.test_days, config.data.val_days, fold)
        return config

    outcomes: list[Any] = []
    curves: list[dict[str, list[Any]]] = []
    grids: list[ValidationGrid] = []
    joined_at: list[float] = []
    last_result: list[Any] = []

    def point(m: int, result: Any, step: int) -> tuple[float, float]:
        sharpe = float(result.combined["agent"].sharpe)
        excess = excess_sharpe(daily_equity(result, "agent"), bench_equity)
        if members[m].latest is not None:
            members[m].latest.update(
                val_returns=[float(r) for r in result.returns(COMBINED, "agent")],
                bench_returns=bench_returns, step=step)
        return sharpe, excess

    def end(m: int, outcome: Any) -> None:
        outcomes[m] = outcome
        if on_end is not None:
            on_end(m, outcome)

    def start(first: list[Any]) -> None:
        """Curves, grids and the step-0 point of members just added (``first``: their
        validation backtests, in order)."""
        for result in first:
            m = len(outcomes)
            outcomes.append(None)
            joined_at.append(time.perf_counter())
            grids.append(ValidationGrid(total, val_interval_steps, val_every))
            last_result.append(result)
            sharpe0, excess0 = point(m, result, 0)
            curves.append({"steps": [0], "sharpe": [sharpe0], "excess": [excess0],
                           "seconds": [0.0]})

    pop = Population([prepared(mb.config) for mb in members], market=market,
                     member_seeds=seeds)
    alive = list(range(p))  # the member index of each of pop's rows
    first = pop.validation_evals(baselines=True)
    bench_equity = daily_equity(first[0], "buy_and_hold")
    bench_returns = [float(r) for r in first[0].returns(COMBINED, "buy_and_hold")]
    total = pop.num_updates * pop.batch_size
    num_updates = pop.num_updates
    start(first)

    def finish(i: int, m: int) -> None:
        """Row i (member m) ran its whole budget: its RunResult."""
        curve = curves[m]
        values = curve["excess"] if objective == "excess" else curve["sharpe"]
        end(m, RunResult(
            seed=members[m].seed, fold=fold, steps=curve["steps"], sharpe=curve["sharpe"],
            score=curve_area(curve["steps"], values), final_sharpe=curve["sharpe"][-1],
            val_returns=[float(r) for r in last_result[m].returns(COMBINED, "agent")],
            seconds=curve["seconds"], objective=objective, excess=curve["excess"],
            bench_returns=bench_returns, agent=pop.member_agent(i) if keep_agents else None))

    offering = refill is not None
    while True:
        still = [i for i, m in enumerate(alive) if outcomes[m] is None]
        new = []
        if offering and len(still) < slots:
            new = list(refill(slots - len(still)))  # type: ignore[misc]
            if len(new) > slots - len(still):
                raise ValueError(f"refill returned {len(new)} members for "
                                 f"{slots - len(still)} free slots")
            offering = len(new) == slots - len(still)  # fewer: it has no more to give
        if new:
            fresh = Population([prepared(mb.config) for mb in new], market=market,
                               member_seeds=[int(mb.seed) for mb in new])
            members.extend(new)
            start(fresh.validation_evals())
            added = list(range(len(outcomes) - len(new), len(outcomes)))
            pop = pop.join(fresh, keep=still) if still else fresh
            alive = [alive[i] for i in still] + added
        elif len(still) < len(alive):  # members ended: drop their rows and weights
            if not still:
                break
            pop, alive = pop.keep(still), [alive[i] for i in still]
        row = pop.step(raise_on_divergence=False)
        for i in row["diverged"]:
            m = alive[i]
            if outcomes[m] is None:
                end(m, TrialDiverged(
                    f"seed {members[m].seed} fold {fold}: update {pop.member_update(i)} (step "
                    f"{pop.member_step(i):,}): non-finite losses or weights"))
        due = {}
        for i, m in enumerate(alive):
            if outcomes[m] is None:
                update = pop.member_update(i)
                points = grids[m].points(pop.member_step(i), update, update >= num_updates)
                if points:
                    due[i] = points
        verdicts = []
        rows = list(due)
        for i, result in zip(rows, pop.validation_evals(rows), strict=True):
            m, step = alive[i], pop.member_step(i)
            last_result[m] = result
            sharpe, excess = point(m, result, step)
            if not (math.isfinite(sharpe) and math.isfinite(excess)):
                end(m, TrialDiverged(f"seed {members[m].seed} fold {fold}: validation Sharpe "
                                     f"{sharpe} (excess {excess}) at step {step}"))
                continue
            curve = curves[m]
            now = time.perf_counter() - joined_at[m]
            for at in due[i]:
                curve["steps"].append(at)
                curve["sharpe"].append(sharpe)
                curve["excess"].append(excess)
                curve["seconds"].append(now)
            report = members[m].report
            if report is not None:
                values = curve["excess"] if objective == "excess" else curve["sharpe"]
                try:
                    verdict = report(step / total, curve_area(curve["steps"], values))
                except Exception as err:  # the reporter's verdict: this member only
                    end(m, err)
                    continue
                if verdict is not None:
                    verdicts.append((m, verdict))
        for m, verdict in verdicts:  # every member has reported this step
            try:
                verdict()
            except Exception as err:
                end(m, err)
        for i, m in enumerate(alive):
            if outcomes[m] is None and pop.member_update(i) >= num_updates:
                finish(i, m)
    return outcomes


def validation_schedule(settings: ConfirmationSettings) -> dict[str, Any]:
    """The ``train_run`` keywords of a study's validation schedule and objective."""
    return {"val_every": settings.val_every, "val_interval_steps": settings.val_interval_steps,
            "objective": settings.objective}


def objective_returns(val_returns: list[float], bench_returns: list[float],
                      objective: str) -> list[float]:
    """The per-bar series a policy is judged on: its active return over buy-and-hold
    (``excess``) or its own return (``sharpe``)."""
    if objective != "excess":
        return list(val_returns)
    if len(val_returns) != len(bench_returns):
        raise ValueError(f"agent and buy-and-hold cover {len(val_returns)} and "
                         f"{len(bench_returns)} bars; they must cover the same bars")
    return [a - b for a, b in zip(val_returns, bench_returns, strict=True)]


def combined_val_returns(runs: list[RunResult], folds: int) -> list[float]:
    """One per-bar validation return series per trial: the mean over seeds of each fold's
    final-policy returns, folds oldest first (their windows follow each other in time)."""
    series = []
    for fold in reversed(range(folds)):
        of_fold = [r.val_returns for r in runs if r.fold == fold]
        if of_fold:
            length = min(len(r) for r in of_fold)
            series.extend(np.mean([r[:length] for r in of_fold], axis=0).tolist())
    return series


__all__ = ["CONFIRM_SEED_BASE", "OBJECTIVES", "TUNING_SEED_BASE", "RunResult", "TrialDiverged",
           "build_fold_market", "combined_val_returns", "curve_area", "daily_equity",
           "excess_sharpe", "fold_config", "fold_days", "laid_out",
           "objective_returns", "score_se", "train_batch", "train_run", "validation_result",
           "validation_schedule"]
