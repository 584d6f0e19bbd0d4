"""One config -> its market: the train/val/test splits a run's ``data`` section describes.

Every data user (the trainer, evaluation, tuning folds, populations) loads bars through
:func:`load_market`, so a run, its evaluation and its tuning trials see the same bars,
splits and normaliser for the same config. No torch here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastrl.config import TrainConfig


def load_market(config: TrainConfig, normaliser_state: dict | None = None) -> Any:
    """The train/val/test MarketSplits the config's data section describes (PanelSplits,
    every symbol on one calendar, for a portfolio).

    ``normaliser_state`` (a ``FeatureNormaliser.state_dict``): features normalised with it
    instead of a normaliser fitted on this split's training rows, so an agent trained on
    another split of the same bars sees the features it was trained on."""
    data = config.data
    if config.portfolio.enabled:
        from fastrl.data.panel import build_panel

        return build_panel(list(data.symbols), freq=data.freq, source=data.source,
                           test_days=data.test_days, val_days=data.val_days,
                           window=config.env.window, normaliser_state=normaliser_state,
                           repair_ticks=data.repair_ticks)
    if data.source == "synthetic":
        from fastrl.data.synthetic import build_synthetic_market

        return build_synthetic_market(
            kind="planted_signal",
            n_symbols=len(data.symbols),
            n_bars=data.synthetic_bars,
            test_days=data.test_days,
            val_days=data.val_days,
            window=config.env.window,
            seed=config.seed if data.synthetic_seed is None else data.synthetic_seed,
            freq=data.freq,
            signal_strength=data.synthetic_signal_strength,
            normaliser_state=normaliser_state,
        )
    from fastrl.data.splits import build_market

    return build_market(
        list(data.symbols),
        freq=data.freq,
        source=data.source,
        test_days=data.test_days,
        val_days=data.val_days,
        window=config.env.window,
        normaliser_state=normaliser_state,
        repair_ticks=data.repair_ticks,
    )


__all__ = ["load_market"]
