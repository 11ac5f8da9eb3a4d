"""The empirical (non-parametric) intrinsic performance: the compute-efficient frontier.

I(R) = min over models i of the least compute C = k·N_i·E at which model i's seed-averaged
(and, by default, smoothed) curve first reaches score R — a step function read off the logged
points, with no interpolation between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from fitting.curves import LearningCurve, Size, prepare


class EmpiricalFrontier(NamedTuple):
    """score (L,) levels; compute (L,) least compute reaching each level (inf if none does);
    size (L,) model size N of the model that reaches it first (nan if none); curve_index (L,)
    index into the seed-averaged models (-1 if none)."""

    score: np.ndarray
    compute: np.ndarray
    size: np.ndarray
    curve_index: np.ndarray


def empirical_intrinsic(curves: Sequence[LearningCurve], *, size: Size = "params",
                        k: float = 1.0, levels: ArrayLike | None = None, smooth: float = 0.1,
                        num_levels: int = 256) -> EmpiricalFrontier:
    """Least compute at which any model size first reaches each score level.

    Curves are averaged over seeds and smoothed (bandwidth `smooth` in ln E, 0 = raw; see
    `fitting.curves.smooth_scores`). levels: score levels (L,); default `num_levels` evenly
    spaced from the lowest to the highest smoothed score. k: compute constant, C = k·N·E, with N
    the `size` measure (see `fitting.curves.CurveGroup.size`).
    """
    if not k > 0:
        raise ValueError(f"k must be > 0, got {k}")
    prep = prepare(curves, size, exclude_fraction=0.0, smooth=smooth, bin_width=0.0)
    lengths = [g.interactions.size for g in prep.groups]
    if levels is None:
        lo = min(float(r[:t].min()) for r, t in zip(prep.score, lengths, strict=True))
        hi = max(float(r[:t].max()) for r, t in zip(prep.score, lengths, strict=True))
        levels = np.linspace(lo, hi, num_levels)
    levels = np.asarray(levels, dtype=np.float64)
    if levels.ndim != 1 or not np.all(np.isfinite(levels)):
        raise ValueError("levels must be a 1-D array of finite scores")
    best = np.full(levels.shape, np.inf)
    who = np.full(levels.shape, -1)
    for i, t in enumerate(lengths):
        best_so_far = np.maximum.accumulate(prep.score[i, :t])
        first = np.searchsorted(best_so_far, levels, side="left")
        reached = first < t
        c = np.where(reached, k * prep.sizes[i] * prep.interactions[i, np.minimum(first, t - 1)],
                     np.inf)
        better = c < best
        best = np.where(better, c, best)
        who = np.where(better, i, who)
    size = np.where(who >= 0, prep.sizes[np.maximum(who, 0)], np.nan)
    return EmpiricalFrontier(levels, best, size, who)
