"""scalelab: scaling laws of single-agent RL, trained as vmapped sweeps in one compiled program."""

__version__ = "0.1.0"
