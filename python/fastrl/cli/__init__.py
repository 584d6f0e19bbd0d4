"""Console entry points: fastrl-train, fastrl-eval, fastrl-monitor, fastrl-bench, fastrl-tune,
fastrl-walkforward, fastrl-signal, fastrl-paper.

Each command lives in its own module; the imports are lazy so that ``--help`` is fast.
The commands are the only layer that prints. Bad input ends with one line on stderr and
exit code 2 (see :mod:`fastrl.cli.errors`).
"""

from __future__ import annotations


def train_main(argv: list[str] | None = None) -> int:
    from fastrl.cli.train import main

    return main(argv)


def eval_main(argv: list[str] | None = None) -> int:
    from fastrl.cli.evaluate import main

    return main(argv)


def monitor_main(argv: list[str] | None = None) -> int:
    from fastrl.cli.monitor import main

    return main(argv)


def bench_main(argv: list[str] | None = None) -> int:
    from fastrl.cli.bench import main

    return main(argv)


def tune_main(argv: list[str] | None = None) -> int:
    from fastrl.cli.tune import main

    return main(argv)


def walkforward_main(argv: list[str] | None = None) -> int:
    from fastrl.cli.walkforward import main

    return main(argv)


def signal_main(argv: list[str] | None = None) -> int:
    from fastrl.cli.signal import main

    return main(argv)


def paper_main(argv: list[str] | None = None) -> int:
    from fastrl.cli.paper import main

    return main(argv)
