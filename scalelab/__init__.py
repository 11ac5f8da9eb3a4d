"""scalelab: scaling laws of single-agent RL, trained as vmapped sweeps in one compiled program."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Exported lazily so that `import scalelab` (e.g. for the CLI's --help) does not import JAX.
_LAZY = {"TrainConfig": "scalelab.train", "train": "scalelab.train", "RunResult": "scalelab.train"}
__all__ = ["RunResult", "TrainConfig", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scalelab' has no attribute {name!r}")
