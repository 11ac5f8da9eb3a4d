"""Horizon fits: interactions needed to reach a target score, affine in the horizon h = 1/(1-γ).

Hilton et al. (2023) found, on MNIST-as-RL with GAE λ = 1 and the horizon set by γ, that the
interactions needed to reach a fixed score are E(h) ≈ intercept + slope·h: a task-inherent
part plus a part proportional to the horizon.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numpy.typing import ArrayLike

from fitting.curves import LearningCurve


@dataclasses.dataclass(frozen=True)
class HorizonFit:
    """Least-squares line E = intercept + slope·h over n points; r2 its coefficient of
    determination."""

    intercept: float
    slope: float
    r2: float
    n: int

    def predict(self, horizon: ArrayLike) -> np.ndarray:
        """intercept + slope·h (interactions)."""
        return self.intercept + self.slope * np.asarray(horizon, dtype=np.float64)

    def to_dict(self) -> dict:
        """JSON-safe fields."""
        return dataclasses.asdict(self)


def horizon_from_gamma(gamma: ArrayLike) -> np.ndarray:
    """h = 1/(1-γ) for discounts 0 <= γ < 1."""
    g = np.asarray(gamma, dtype=np.float64)
    if np.any(~np.isfinite(g)) or np.any(g < 0) or np.any(g >= 1):
        raise ValueError(f"gamma must be in [0, 1), got {gamma!r}")
    return 1.0 / (1.0 - g)


def interactions_to_reach(curve: LearningCurve, target: float) -> float:
    """Interactions at which the curve first reaches `target`, interpolated linearly between
    the last logged point below it and the first at or above it; the first logged
    interactions if the curve starts at or above target; nan if it never reaches it."""
    r, e = curve.score, curve.interactions
    above = np.flatnonzero(r >= target)
    if above.size == 0:
        return float("nan")
    j = int(above[0])
    if j == 0:
        return float(e[0])
    return float(e[j - 1] + (target - r[j - 1]) / (r[j] - r[j - 1]) * (e[j] - e[j - 1]))


def fit_horizon(horizons: ArrayLike, interactions_to_target: ArrayLike) -> HorizonFit:
    """Ordinary least squares of interactions_to_target (n,) on horizons (n,).

    Needs at least 2 distinct horizons and finite values (a nan from `interactions_to_reach`
    means a run never reached the target: drop it or lower the target).
    """
    h = np.asarray(horizons, dtype=np.float64)
    e = np.asarray(interactions_to_target, dtype=np.float64)
    if h.ndim != 1 or h.shape != e.shape:
        raise ValueError(f"horizons and interactions_to_target must be 1-D of equal length, "
                         f"got shapes {h.shape} and {e.shape}")
    for name, x in (("horizons", h), ("interactions_to_target", e)):
        bad = np.flatnonzero(~np.isfinite(x))
        if bad.size:
            raise ValueError(f"{name}[{bad[0]}] is {x[bad[0]]}; a run that never reached the "
                             "target has no interactions to fit")
    if np.unique(h).size < 2:
        raise ValueError(f"need at least 2 distinct horizons, got {np.unique(h).tolist()}")
    design = np.column_stack([np.ones_like(h), h])
    (intercept, slope), *_ = np.linalg.lstsq(design, e, rcond=None)
    resid = e - (intercept + slope * h)
    total = np.sum((e - e.mean()) ** 2)
    r2 = 1.0 - np.sum(resid**2) / total if total > 0 else 1.0
    return HorizonFit(float(intercept), float(slope), float(r2), int(h.size))
