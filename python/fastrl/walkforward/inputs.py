"""What a walk-forward run folder was trained on, so a resume refuses anything else.

``inputs.json`` in the run folder holds every compared config as resolved (the configs
themselves, so a resume needs neither the config files nor the working directory they were
named from), the protocol (the resolved spec, the planned windows, warm start) and
fingerprints: SHA-256 of each config's JSON (sorted keys) and of each symbol's bars (pandas'
row hashes of the index and every column). A resumed run whose inputs differ would train its
missing windows on other inputs than its saved ones and re-trade all of them with the new
costs, so :func:`check_run_inputs` refuses it and names what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from fastrl.atomic import write_atomic
from fastrl.config import TrainConfig, config_to_dict

INPUTS_FILE = "inputs.json"
VERSION = 1
_SHOWN = 4  # changed config keys named in a refusal before "and N more"


class RunInputsChanged(ValueError):
    """A run folder's saved windows were trained on other inputs than these."""


def bars_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of one symbol's bars: the column names, the timestamps and every value."""
    digest = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def config_fingerprint(values: Mapping[str, Any]) -> str:
    """SHA-256 of a resolved config's JSON with sorted keys."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def run_inputs(configs: Mapping[str, Any], bars: Mapping[str, pd.DataFrame], spec: Any,
               windows: list[Any], warm_start: bool) -> dict[str, Any]:
    """The record of a run's inputs that :func:`check_run_inputs` compares (JSON-safe)."""
    # the rules section is left out: it never changes a trained window (the rules' records
    # are traded afresh from the settings at every run), so an old run folder resumes
    values = {name: json.loads(json.dumps({k: v for k, v in config_to_dict(config).items()
                                           if k != "rules"}))
              for name, config in configs.items()}
    return {
        "version": VERSION,
        "configs": values,
        "spec": asdict(spec),
        "windows": [window.as_dict() for window in windows],
        "warm_start": bool(warm_start),
        "fingerprints": {
            "configs": {name: config_fingerprint(v) for name, v in values.items()},
            "bars": {symbol: bars_fingerprint(frame) for symbol, frame in bars.items()},
        },
    }


def load_run_inputs(folder: str | Path) -> dict[str, Any] | None:
    """The inputs saved in ``folder`` (None where it has none: a new folder)."""
    path = Path(folder) / INPUTS_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(saved, dict) or saved.get("version") != VERSION:
        raise ValueError(f"{path} is not a version-{VERSION} walk-forward inputs file")
    return saved


def save_run_inputs(folder: str | Path, inputs: Mapping[str, Any]) -> Path:
    """Write ``inputs.json`` atomically."""
    text = json.dumps(inputs, indent=1, sort_keys=True)
    return write_atomic(Path(folder) / INPUTS_FILE, lambda stream: stream.write(text),
                        binary=False)


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix: values}
    out: dict[str, Any] = {}
    for key, value in values.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _key_changes(saved: Any, now: Any) -> list[str]:
    old, new = _flat(saved), _flat(now)
    unset = "<unset>"
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, unset) != new.get(k, unset))
    shown = [f"{k} {json.dumps(old.get(k, unset))} -> {json.dumps(new.get(k, unset))}"
             for k in keys[:_SHOWN]]
    if len(keys) > _SHOWN:
        shown.append(f"and {len(keys) - _SHOWN} more")
    return shown


def _with_new_defaults(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A saved config with every key it predates set to today's default: a key added to
    the config since the run started, at its default, trains the windows as before."""
    defaults = _flat(json.loads(json.dumps(config_to_dict(TrainConfig()))))
    flat = _flat(saved)
    return {**{k: v for k, v in defaults.items() if k not in flat and k.split(".")[0] != "rules"},
            **flat}


def input_changes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between two :func:`run_inputs` records, one phrase per difference."""
    changes = []
    saved_configs, now_configs = saved["configs"], now["configs"]
    saved_prints = saved["fingerprints"]["configs"]
    for name in sorted(saved_configs.keys() | now_configs.keys()):
        if name not in now_configs:
            changes.append(f"config {name} is no longer compared")
        elif name not in saved_configs:
            changes.append(f"config {name} was not compared")
        elif saved_prints.get(name) != config_fingerprint(saved_configs[name]):
            changes.append(f"the saved config {name} was edited in {INPUTS_FILE}")
        elif now["fingerprints"]["configs"][name] != saved_prints[name]:
            changed_keys = _key_changes(_with_new_defaults(saved_configs[name]),
                                        now_configs[name])
            if changed_keys:
                changes.append(f"config {name}: " + ", ".join(changed_keys))
    saved_bars, now_bars = saved["fingerprints"]["bars"], now["fingerprints"]["bars"]
    changed = sorted(s for s in saved_bars.keys() & now_bars.keys()
                     if saved_bars[s] != now_bars[s])
    if changed:
        changes.append(f"the bars of {', '.join(changed)} changed")
    if saved["spec"] != now["spec"]:
        changes.append("walk-forward settings: " + ", ".join(
            _key_changes(saved["spec"], now["spec"])))
    elif saved["windows"] != now["windows"] and not changed:
        changes.append("the planned windows changed")
    if saved["warm_start"] != now["warm_start"]:
        changes.append(f"warm start {saved['warm_start']} -> {now['warm_start']}")
    return changes


def check_run_inputs(folder: str | Path, inputs: Mapping[str, Any]) -> None:
    """Refuse (:class:`RunInputsChanged`, naming every difference) when ``folder`` holds a
    run trained on other inputs; a folder without saved inputs passes."""
    saved = load_run_inputs(folder)
    if saved is None:
        return
    changes = input_changes(saved, inputs)
    if changes:
        raise RunInputsChanged(
            f"run folder {folder} was trained on other inputs: {'; '.join(changes)}. Its "
            "windows would mix the two; restore the inputs or start a new run (another "
            "--run-dir)")
