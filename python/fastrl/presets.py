"""The named presets: each the config keys it changes from the dataclass defaults (which are
the "fast" preset). :func:`fastrl.config.preset_config` applies them; ``config.Preset`` must
list exactly these names."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # The configuration the project was asked for: the dataclass defaults.
    "fast": {},
    # The older, slower configuration, kept for comparison.
    "baseline": {
        "learning_rate": 1e-4,
        "lr_schedule": "constant",
        "ent_coef": 0.01,
        "ent_coef_final": 0.01,
        "ent_coef_decay_steps": 0,
        "clip_range": 0.2,
        "clip_range_final": 0.2,
        "clip_range_decay_steps": 0,
        "vf_coef": 0.25,
        "max_grad_norm": 0.25,
        "n_epochs": 10,
        "optimizer": "adam",
        "weight_decay": 0.0,
        "hidden_sizes": (1024, 512, 256),
    },
}

__all__ = ["PRESETS"]
