"""A natural performance metric against intrinsic performance: CoinRun's fail-to-success ratio.

Hilton et al. (2023) relate intrinsic performance I to a metric with a natural scale. For
CoinRun, whose episode return is 10 on success and 0 otherwise, R/10 is the success rate and the
fail-to-success ratio F = (10 - R)/R follows a power law F ∝ I^(-γ). `fit_natural` regresses
ln F on ln I over the points the power-law fit used (seed-mean smoothed scores, weights ∝ 1/E):

    ln F = ln A - γ·ln I,    I = exp(f(R)) from the fitted score map f.

Its interval comes from the power-law fit's bootstrap: every resample has its own score map
f_b, which gives its own γ_b (so the interval carries the uncertainty of I, the larger part;
the scores themselves are kept fixed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from fitting.bootstrap import percentile_intervals
from fitting.curves import LearningCurve, prepare
from fitting.powerlaw import PowerLawFit, interp_extend

MAX_RETURN = {"coinrun": 10.0}


@dataclasses.dataclass(frozen=True)
class NaturalFit:
    """F = A·I^(-gamma) with F = (max_return - R)/R: gamma, ln A, R² of the weighted fit in
    log space, n points, and gamma's 5–95% interval (None without bootstrap samples)."""

    metric: str
    max_return: float
    gamma: float
    log_coefficient: float
    r2: float
    n: int
    interval: tuple[float, float] | None = None

    def predict(self, intrinsic: ArrayLike) -> np.ndarray:
        """F at intrinsic performance I."""
        return np.exp(self.log_coefficient - self.gamma * np.log(np.asarray(intrinsic, float)))

    def to_dict(self) -> dict:
        """JSON-safe fields."""
        out = dataclasses.asdict(self)
        out["interval"] = None if self.interval is None else list(self.interval)
        return out


def fail_to_success(score: ArrayLike, max_return: float = 10.0) -> np.ndarray:
    """F = (max_return - R)/R; nan where R is not strictly between 0 and max_return."""
    r = np.asarray(score, dtype=np.float64)
    inside = (r > 0) & (r < max_return)
    return np.where(inside, (max_return - r) / np.where(inside, r, 1.0), np.nan)


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Weighted least squares y = a + b·x; returns (a, b, R²)."""
    w = w / w.sum()
    mx, my = w @ x, w @ y
    b = float(w @ ((x - mx) * (y - my)) / (w @ (x - mx) ** 2))
    a = float(my - b * mx)
    r2 = 1.0 - float(w @ (y - a - b * x) ** 2) / float(w @ (y - my) ** 2)
    return a, b, r2


def fit_natural(fit: PowerLawFit, curves: Sequence[LearningCurve], *, metric: str = "coinrun",
                exclude_fraction: float = 1 / 64, smooth: float = 0.1,
                bin_width: float = 0.05) -> NaturalFit:
    """Fit F ∝ I^(-gamma) (module docstring) for the curves `fit` was fitted to.

    metric: a key of MAX_RETURN ("coinrun": R in 0..10). exclude_fraction, smooth, bin_width:
    the preprocessing the power-law fit used (`fitting.curves.prepare`).
    """
    if metric not in MAX_RETURN:
        raise ValueError(f"unknown natural metric {metric!r}; known: {sorted(MAX_RETURN)}")
    top = MAX_RETURN[metric]
    prep = prepare(curves, fit.size, exclude_fraction, smooth, bin_width)
    r, w = prep.score.ravel(), prep.weight.ravel()
    log_f = np.log(fail_to_success(r, top))
    lo, hi = fit.score_range
    keep = (w > 0) & np.isfinite(log_f) & (r >= lo) & (r <= hi)
    if np.unique(r[keep]).size < 3:
        raise ValueError(f"fewer than 3 distinct scores strictly between 0 and {top:g} "
                         "to fit the fail-to-success ratio to")
    r, w, log_f = r[keep], w[keep], log_f[keep]
    a, b, r2 = _weighted_line(np.log(fit.intrinsic(r)), log_f, w)
    interval = None
    if fit.bootstrap_log_intrinsic_knots is not None:
        gammas = np.array([-_weighted_line(interp_extend(r, fit.score_knots, knots), log_f,
                                           w)[1]
                           for knots in fit.bootstrap_log_intrinsic_knots])
        interval = percentile_intervals({"gamma": gammas})["gamma"]
    return NaturalFit(metric, top, -b, a, r2, int(keep.sum()), interval)
