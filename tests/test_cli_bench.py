"""fastrl-bench: runs from the installed package and refuses bad arguments."""

from __future__ import annotations

from fastrl.cli.bench import main as bench_main


def test_bench_prints_a_table(capsys):
    assert bench_main(["--envs", "8", "--threads", "1", "--window", "4",
                       "--seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "reference.py" in out and "fastrl / reference" in out


def test_bench_bad_arguments_exit_2(capsys):
    assert bench_main(["--envs", "0"]) == 2
    assert "fastrl-bench: error" in capsys.readouterr().err
