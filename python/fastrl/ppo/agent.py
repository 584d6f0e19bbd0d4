"""Agent: a trained policy plus the observation normalisation it was trained with."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fastrl.config import TrainConfig
from fastrl.markets import market_for
from fastrl.ppo.heads import head_for
from fastrl.ppo.network import ActorCritic
from fastrl.ppo.normalize import ObservationNormaliser
from fastrl.ppo.update import autocast_context

# an Agent's inference precision -> whether it acts under bf16 autocast
PRECISIONS = {"fp32": False, "bf16": True}


def precision_name(amp: bool) -> str:
    """The inference precision of an engine that runs with ``amp``: "bf16" or "fp32"."""
    return "bf16" if amp else "fp32"


class Agent:
    """Maps raw env observations to env-ready actions.

    ``act`` normalises observations with the training statistics, runs the policy and
    returns what the env takes, as the config's market's action head maps it
    (:mod:`fastrl.ppo.heads`): int64 level indices, float64 exposures clipped to the env's
    range, or float64 symbol weights [N, A] within the portfolio's caps.

    ``precision`` ("fp32" or "bf16", :data:`PRECISIONS`) is the arithmetic the policy acts
    in: "bf16" runs the network under bf16 autocast, as the trainer does with ``amp`` on.
    The trainer validates in its own precision and its checkpoints record it, so the
    policy :func:`~fastrl.ppo.checkpoint.load_agent` serves (backtest, signal, paper) and
    the walk-forward's frozen policies act exactly as the one validation chose (bit for bit
    on the device it was validated on; a CUDA-validated policy served on the CPU agrees to
    the kernels' rounding).
    """

    def __init__(
        self,
        network: ActorCritic,
        obs_normaliser: ObservationNormaliser,
        config: TrainConfig,
        feature_normaliser: dict | None = None,
        *,
        precision: str = "fp32",
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"inference precision must be one of {', '.join(PRECISIONS)}, "
                             f"got {precision!r}")
        self.network = network
        self.obs_normaliser = obs_normaliser
        self.config = config
        self.feature_normaliser = feature_normaliser
        self.precision = precision
        self.checkpoint_info: dict[str, Any] = {}
        self.head = head_for(market_for(config).action_spec())

    @property
    def feature_state(self) -> Any:
        """The training feature normaliser as its ``state_dict`` (what a market rebuilds its
        blocks with), whether the agent holds the normaliser or its state."""
        normaliser = self.feature_normaliser
        return normaliser.state_dict() if hasattr(normaliser, "state_dict") else normaliser

    @property
    def amp(self) -> bool:
        """Whether the policy acts under bf16 autocast (``precision`` "bf16")."""
        return PRECISIONS[self.precision]

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of raw observations [N, obs_dim] (float32)."""
        obs_array = np.asarray(obs, dtype=np.float32)
        if obs_array.ndim != 2 or obs_array.shape[1] != self.network.obs_dim:
            raise ValueError(
                f"observations must have shape (N, {self.network.obs_dim}), got {obs_array.shape}"
            )
        device = self.device
        obs_tensor = self.obs_normaliser(torch.as_tensor(obs_array, device=device))
        with autocast_context(device, self.amp):
            if deterministic:
                action = self.network.greedy(obs_tensor)
            else:
                action, _, _ = self.network.act(obs_tensor)
        return self.to_env_actions(action)

    def to_env_actions(self, action: torch.Tensor) -> np.ndarray:
        """Policy actions on the device -> numpy actions the env accepts."""
        return self.head.env_actions(action)
