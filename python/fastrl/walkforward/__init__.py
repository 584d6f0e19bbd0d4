"""Walk-forward: a multi-year out-of-sample record for any config, retrained as a desk would.

Retrain at a fixed cadence on the past (expanding or rolling), pick each window's policy on
its own validation slice, trade the next period with the frozen policy, stitch the traded
periods into one record and judge it against buy-and-hold with error bars
(:mod:`fastrl.walkforward.analysis`), and place it on the ladder of classical rules traded on
the same days (:mod:`fastrl.walkforward.rungs`, :mod:`fastrl.walkforward.ladder`).
``fastrl-walkforward`` is the command.
"""

from fastrl.walkforward.plan import WalkForwardSpec, Window, plan_windows, window_bars
from fastrl.walkforward.run import WalkForwardRun, run_walkforward, trade_record

__all__ = ["WalkForwardRun", "WalkForwardSpec", "Window", "plan_windows", "run_walkforward",
           "trade_record", "window_bars"]
