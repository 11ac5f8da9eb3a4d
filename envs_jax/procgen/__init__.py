"""Procgen-like games (CoinRun, StarPilot, FruitBot) in pure JAX, and their shared machinery."""

from envs_jax.procgen.common import (
    COMBOS,
    NUM_ACTIONS,
    ProcgenGame,
    ProcgenParams,
    frames_to_file,
    rollout_frames,
)

__all__ = [
    "COMBOS",
    "NUM_ACTIONS",
    "ProcgenGame",
    "ProcgenParams",
    "frames_to_file",
    "rollout_frames",
]
