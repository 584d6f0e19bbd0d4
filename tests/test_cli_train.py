"""fastrl-train end to end on bundled data, and every bad input -> one stderr line, exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from fastrl.cli.train import main

pytest.importorskip("fastrl._core")

TINY = ["--timesteps", "512", "--num-envs", "8", "--set", "hidden_sizes=[16,16]",
        "num_steps=32", "minibatch_size=128", "n_epochs=1", "env.window=8", "torch_threads=1",
        "--device", "cpu"]


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_tiny_run_on_bundled_data_completes_with_a_full_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    code, err = run_cli(["--symbols", "BPCL", "HDFCLIFE", "--test-days", "30", "--val-days",
                         "20", "--run-dir", str(run), *TINY], capsys)
    assert code == 0, err
    for name in ("config.json", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt",
                 "checkpoints/final.pt", "report.md", "test_returns.csv"):
        assert (run / name).is_file(), name
    assert "Sharpe std. error" in err and "verdict: " in err  # the table and its verdict
    report = (run / "report.md").read_text()
    assert "Why this checkpoint: best.pt: the highest validation Sharpe" in report
    assert "ended: 512/512 steps (100.0%)" in err  # captured stderr is a log: plain lines
    assert any((run / "tb").iterdir())
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["reason"] == "completed"
    assert json.loads((run / "config.json").read_text())["data"]["symbols"] == ["BPCL",
                                                                                "HDFCLIFE"]
    # the same folder cannot be reused, only resumed
    code, err = run_cli(["--run-dir", str(run), *TINY], capsys)
    assert code == 2 and "already holds a run" in err
    # resuming a finished run needs more timesteps; with them it continues
    code, err = run_cli(["--resume", str(run)], capsys)
    assert code == 2 and "already took 512" in err
    code, err = run_cli(["--resume", str(run), "--timesteps", "768", "--no-eval"], capsys)
    assert code == 0, err
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["global_step"] == 768
    code, err = run_cli(["--resume", str(run), "--seed", "3"], capsys)
    assert code == 2 and "drop --seed" in err


def test_val_days_zero_says_what_it_gives_up(tmp_path, capsys):
    run = tmp_path / "run"
    code, err = run_cli(["--symbols", "BPCL", "--val-days", "0", "--run-dir", str(run), *TINY],
                        capsys)
    assert code == 0, err
    assert "no early stopping" in err and "final checkpoint" in err
    assert "trained without validation days" in (run / "report.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--symbols", "NOPE"], "unknown symbol NOPE"),
        (["--timesteps", "100"], "at least one rollout"),
        (["--set", "learning_rate=0"], "'learning_rate' must be > 0"),
        (["--set", "learning_rate=-1e-3"], "'learning_rate' must be > 0"),
        (["--set", "clip_range=0"], "'clip_range' must be > 0"),
        (["--set", "n_epochs=0"], "'n_epochs' must be >= 1"),
        (["--preset", "turbo"], "unknown preset 'turbo'"),
        (["--set", "no_such_key=1"], "unknown config key 'no_such_key'"),
        (["--set", "env.no_such_key=1"], "unknown config key 'env.no_such_key'"),
        (["--set", "num_envs=many"], "'num_envs' needs an integer"),
        (["--device", "tpu"], "'device' must be auto, cpu, cuda"),
        (["--resume", "/nonexistent/run"], "run folder to resume not found"),
        (["--config", "/nonexistent/cfg.yaml"], "config file not found"),
        (["--preset", "fast", "--set", "env.position_levels=[0,3]"],
         "position_levels (0.0, 3.0) has a level above 1"),
        (["--set", "env.action=continuous", "env.max_pos=1.5"], "max_pos 1.5 is above 1"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(argv, message, capsys):
    code, err = run_cli(argv, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_symbol_lists_the_available_ones(capsys):
    code, err = run_cli(["--symbols", "NOPE"], capsys)
    assert code == 2 and "available:" in err and "BPCL" in err


def test_config_file_values_and_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 1e-3\nbogus_key: 3\n")
    code, err = run_cli(["--config", str(bad)], capsys)
    assert code == 2 and "unknown config key 'bogus_key'" in err and str(bad) in err
    broken = tmp_path / "broken.toml"
    broken.write_text("learning_rate = = 3")
    code, err = run_cli(["--config", str(broken)], capsys)
    assert code == 2 and "could not be parsed" in err


def test_missing_corrupted_and_incompatible_checkpoints(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(["--resume", str(empty)], capsys)
    assert code == 2 and "no checkpoint" in err
    corrupted = tmp_path / "corrupted" / "checkpoints"
    corrupted.mkdir(parents=True)
    (corrupted / "last.pt").write_bytes(b"\x00garbage")
    code, err = run_cli(["--resume", str(corrupted.parent)], capsys)
    assert code == 2 and "corrupted" in err
    future = tmp_path / "future" / "checkpoints"
    future.mkdir(parents=True)
    torch.save({"format": "fastrl-ppo", "version": 999}, future / "last.pt")
    code, err = run_cli(["--resume", str(future.parent)], capsys)
    assert code == 2 and "format version 999" in err
