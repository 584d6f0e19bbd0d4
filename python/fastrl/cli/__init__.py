"""Console entry points: fastrl-train, fastrl-eval, fastrl-monitor, fastrl-bench, fastrl-tune,
fastrl-walkforward, fastrl-signal, fastrl-paper (pyproject's ``[project.scripts]`` names each
command's ``main`` in its own module, so a command imports only what it runs).

The commands are the only layer that prints. Bad input ends with one line on stderr and
exit code 2 (see :mod:`fastrl.cli.errors`).
"""
