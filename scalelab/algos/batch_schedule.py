"""Batch-size schedules: a greedy one driven by the measured noise scale, and a power law in E.

The batch is num_envs * rollout_length interactions per update; schedules change num_envs (the
rollout length, and with it the GAE horizon's truncation, stays fixed) by doublings only, so a
run compiles at most log2(max/min) + 1 distinct programs. Changes happen between chunks.

- "adaptive" (greedy): after each chunk, if the measured simple noise scale B_simple (averaged
  over the members, `scalelab.algos.noise_scale`) exceeds the batch used per gradient step (the
  minibatch, n / num_minibatches), double num_envs; never shrink below the floor B_min (the
  configured num_envs) or grow past max_envs.
- "power": B(E) = B_min · (E / E_0)^p for E > E_0 (B_min before), rounded down to a doubling of
  B_min. `fit_power_schedule` fits (E_0, p) to the batch sizes an adaptive run chose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SCHEDULES = ("fixed", "adaptive", "power")


@dataclass(frozen=True)
class BatchSchedule:
    """How num_envs evolves: kind (SCHEDULES), floor min_envs, cap max_envs, and for "power"
    the exponent `power` and onset `e0` (interactions per member)."""

    kind: str
    min_envs: int
    max_envs: int
    power: float = 0.5
    e0: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"batch_schedule: {self.kind!r} is not one of {SCHEDULES}")
        if not 1 <= self.min_envs <= self.max_envs:
            raise ValueError(
                f"batch_max_envs: need 1 <= num_envs ({self.min_envs}) <= batch_max_envs "
                f"({self.max_envs})"
            )
        if not (math.isfinite(self.power) and self.power >= 0):
            raise ValueError(f"batch_power: expected a finite number >= 0, got {self.power!r}")
        if not (math.isfinite(self.e0) and self.e0 > 0):
            raise ValueError(f"batch_e0: expected a finite number > 0, got {self.e0!r}")

    def _doubling_at_most(self, envs: float) -> int:
        """The largest min_envs · 2^k <= envs (at least min_envs, at most max_envs)."""
        k = max(0, math.floor(math.log2(max(envs, self.min_envs) / self.min_envs) + 1e-9))
        top = self.min_envs * 2 ** math.floor(math.log2(self.max_envs / self.min_envs) + 1e-9)
        return min(self.min_envs * 2**k, top)

    def power_envs(self, interactions: float) -> int:
        """num_envs of the "power" schedule after `interactions` env steps per member."""
        if interactions <= self.e0:
            return self.min_envs
        return self._doubling_at_most(self.min_envs * (interactions / self.e0) ** self.power)

    def next_envs(self, num_envs: int, interactions: float, noise_scale: float,
                  minibatch_size: int) -> int:
        """num_envs for the next chunk, given the current one, the interactions done so far,
        the latest noise-scale estimate (NaN if unresolved) and the current minibatch size."""
        if self.kind == "fixed":
            return num_envs
        if self.kind == "power":
            return max(num_envs, self.power_envs(interactions))
        if math.isfinite(noise_scale) and noise_scale > minibatch_size:
            return self._doubling_at_most(2 * num_envs)
        return num_envs


def fit_power_schedule(interactions: np.ndarray, batch_sizes: np.ndarray, b_min: float
                       ) -> tuple[float, float]:
    """(E_0, p) of the power law B = b_min · (E/E_0)^p fitted to a schedule's (E, B) points.

    Least squares on the points with B > b_min: log(B/b_min) = p log E - p log E_0, i.e. a line
    in log E with slope p and intercept -p log E_0. Needs two distinct E among those points.
    """
    e = np.asarray(interactions, np.float64)
    b = np.asarray(batch_sizes, np.float64)
    grown = b > b_min
    if len(np.unique(e[grown])) < 2:
        raise ValueError("fit_power_schedule: the batch grew at fewer than 2 distinct E")
    slope, intercept = np.polyfit(np.log(e[grown]), np.log(b[grown] / b_min), 1)
    if slope <= 0:
        raise ValueError(f"fit_power_schedule: fitted exponent {slope:.3g} is not positive")
    return float(np.exp(-intercept / slope)), float(slope)
