"""scalelab: scaling laws of single-agent RL, trained as vmapped sweeps in one compiled program."""

__version__ = "0.1.0"

# Imported eagerly, not lazily: the submodule `scalelab.train` would otherwise shadow the
# function `scalelab.train` as soon as anything imported the submodule.
from scalelab.train import RunResult, TrainConfig, train  # noqa: E402

__all__ = ["RunResult", "TrainConfig", "train"]
