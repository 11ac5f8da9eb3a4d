"""Horizon fits: interactions needed to reach a target score, affine in the horizon h = 1/(1-γ).

Hilton et al. (2023) found, on MNIST-as-RL with GAE λ = 1 and the horizon set by γ, that the
interactions needed to reach a fixed score are E(h) ≈ intercept + slope·h (a task-inherent part
plus a part proportional to the horizon), and that the horizon changes the coefficient of the
power law but hardly its exponent.

`fit_horizons` reads the crossing of the target off each (size, γ) model's *smoothed* seed-mean
curve (local-linear smoothing in ln E, `fitting.curves.smooth_scores`): the first crossing of a
raw noisy curve comes early whenever noise lifts a point over the target, which biases the slope
low. It fits one line per size (sizes with at least 2 horizons) and one pooled over all points,
with percentile intervals from resampling seeds within every model (`fitting.bootstrap`).
`exponent_change` answers whether the size exponent moves with the horizon beyond its intervals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from fitting.bootstrap import percentile_intervals, seed_means
from fitting.curves import LearningCurve, Size, group_curves, smooth_scores
from fitting.powerlaw import PowerLawFit


@dataclasses.dataclass(frozen=True)
class HorizonFit:
    """Least-squares line E = intercept + slope·h over n points; r2 its coefficient of
    determination; intervals: "intercept"/"slope" → 5–95% bootstrap interval (None without
    bootstrap); resamples_used: resamples in which every model still reached the target."""

    intercept: float
    slope: float
    r2: float
    n: int
    intervals: dict[str, tuple[float, float]] | None = None
    resamples_used: int = 0

    def predict(self, horizon: ArrayLike) -> np.ndarray:
        """intercept + slope·h (interactions)."""
        return self.intercept + self.slope * np.asarray(horizon, dtype=np.float64)

    def to_dict(self) -> dict:
        """JSON-safe fields."""
        out = dataclasses.asdict(self)
        if self.intervals is not None:
            out["intervals"] = {k: list(v) for k, v in self.intervals.items()}
        return out


@dataclasses.dataclass(frozen=True)
class HorizonStudy:
    """Crossings of `target` per model (size (P,), horizon (P,), interactions (P,)), the
    pooled line and one line per size with at least 2 horizons (size → HorizonFit)."""

    target: float
    sizes: np.ndarray
    horizons: np.ndarray
    interactions: np.ndarray
    pooled: HorizonFit
    per_size: dict[float, HorizonFit]

    def to_dict(self) -> dict:
        """JSON-safe summary."""
        return {"target": self.target, "sizes": self.sizes.tolist(),
                "horizons": self.horizons.tolist(),
                "interactions_to_target": self.interactions.tolist(),
                "pooled": self.pooled.to_dict(),
                "per_size": [{"size": n, **f.to_dict()} for n, f in self.per_size.items()]}


def horizon_from_gamma(gamma: ArrayLike) -> np.ndarray:
    """h = 1/(1-γ) for discounts 0 <= γ < 1."""
    g = np.asarray(gamma, dtype=np.float64)
    if np.any(~np.isfinite(g)) or np.any(g < 0) or np.any(g >= 1):
        raise ValueError(f"gamma must be in [0, 1), got {gamma!r}")
    return 1.0 / (1.0 - g)


def _crossings(interactions: np.ndarray, scores: np.ndarray, target: float) -> np.ndarray:
    """First crossing of target by each row of scores (B, T), interpolated linearly between
    the last point below and the first at or above it; interactions[0] if a row starts at or
    above target; nan if it never reaches it."""
    above = scores >= target
    j = np.argmax(above, axis=1)
    i = np.maximum(j - 1, 0)
    rows = np.arange(scores.shape[0])
    r0, r1 = scores[rows, i], scores[rows, j]
    e0, e1 = interactions[i], interactions[j]
    frac = np.where(j > 0, (target - r0) / np.where(r1 > r0, r1 - r0, 1.0), 0.0)
    return np.where(above.any(axis=1), e0 + frac * (e1 - e0), np.nan)


def interactions_to_reach(curve: LearningCurve, target: float) -> float:
    """Interactions at which the curve first reaches `target`, interpolated linearly between
    the last logged point below it and the first at or above it; the first logged
    interactions if the curve starts at or above target; nan if it never reaches it."""
    return float(_crossings(curve.interactions, curve.score[None], target)[0])


def _line(h: np.ndarray, e: np.ndarray) -> tuple[float, float, float]:
    design = np.column_stack([np.ones_like(h), h])
    (intercept, slope), *_ = np.linalg.lstsq(design, e, rcond=None)
    resid = e - (intercept + slope * h)
    total = np.sum((e - e.mean()) ** 2)
    r2 = 1.0 - np.sum(resid**2) / total if total > 0 else 1.0
    return float(intercept), float(slope), float(r2)


def fit_horizon(horizons: ArrayLike, interactions_to_target: ArrayLike) -> HorizonFit:
    """Ordinary least squares of interactions_to_target (n,) on horizons (n,), no intervals.

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
    return HorizonFit(*_line(h, e), n=int(h.size))


def _with_intervals(h: np.ndarray, e: np.ndarray, boot: np.ndarray) -> HorizonFit:
    """The line through (h, e) with intervals from resampled crossings boot (B, n)."""
    fit = fit_horizon(h, e)
    used = boot[np.all(np.isfinite(boot), axis=1)]
    if used.shape[0] < 2:
        return fit
    lines = np.array([_line(h, row)[:2] for row in used])
    intervals = percentile_intervals({"intercept": lines[:, 0], "slope": lines[:, 1]})
    return dataclasses.replace(fit, intervals=intervals, resamples_used=int(used.shape[0]))


def fit_horizons(curves: Sequence[LearningCurve], target: float, *, size: Size = "params",
                 smooth: float = 0.1, bootstrap: int = 200, seed: int = 0) -> HorizonStudy:
    """Interactions to reach `target` against h = 1/(1-γ), per size and pooled (module
    docstring). curves: runs with a `gamma` hyperparameter (others are ignored); seeds of a
    (size, γ) model are averaged after smoothing (bandwidth `smooth` in ln E). Models that
    never reach the target are left out. bootstrap: seed resamples for the intervals (0 =
    none); a resample in which some model no longer reaches the target is not used for the
    intervals (HorizonFit.resamples_used counts the others).
    """
    rng = np.random.default_rng(seed)
    sizes, hs, es, boots = [], [], [], []
    for g in group_curves(curves):
        if "gamma" not in g.hparams:
            continue
        smoothed = smooth_scores(g.interactions, g.scores, smooth)
        crossing = _crossings(g.interactions, smoothed.mean(0)[None], target)[0]
        if not np.isfinite(crossing):
            continue
        sizes.append(g.size(size))
        hs.append(float(horizon_from_gamma(g.hparams["gamma"])))
        es.append(crossing)
        boots.append(_crossings(g.interactions, seed_means(smoothed, bootstrap, rng), target))
    if not hs:
        raise ValueError(f"no curve with a gamma hyperparameter reaches the target {target:g}")
    n, h, e = np.array(sizes), np.array(hs), np.array(es)
    boot = np.stack(boots, axis=1)  # (bootstrap, P)
    per_size = {float(m): _with_intervals(h[n == m], e[n == m], boot[:, n == m])
                for m in np.unique(n) if np.unique(h[n == m]).size >= 2}
    return HorizonStudy(float(target), n, h, e, _with_intervals(h, e, boot), per_size)


@dataclasses.dataclass(frozen=True)
class ExponentChange:
    """Does the size exponent change with the horizon? horizons (H,) and the fitted exponents
    (H,); slope: d exponent / d ln h by least squares, with its 5–95% interval from the fits'
    bootstrap samples (resample b of every horizon's fit forms line b); changes: the interval
    excludes 0; reason: the answer in words."""

    horizons: np.ndarray
    exponents: np.ndarray
    slope: float
    interval: tuple[float, float]
    changes: bool
    reason: str

    def to_dict(self) -> dict:
        """JSON-safe fields."""
        return {"horizons": self.horizons.tolist(), "exponents": self.exponents.tolist(),
                "slope_per_ln_h": self.slope, "interval": list(self.interval),
                "changes": self.changes, "reason": self.reason}


def exponent_change(fits: Mapping[float, PowerLawFit]) -> ExponentChange:
    """Test whether the size exponent changes with the horizon beyond its intervals.

    fits: horizon h → the power-law fit of the runs at that horizon, each with bootstrap
    samples (at least 2 horizons). The exponent s(h) is regressed on ln h; resample b of every
    fit gives line b (the fits are independent experiments, so pairing resamples by index
    draws from the joint distribution), and the percentile interval of those slopes decides.
    """
    if len(fits) < 2:
        raise ValueError(f"need power-law fits at 2 or more horizons, got {len(fits)}")
    missing = [h for h, f in fits.items() if f.bootstrap_samples is None]
    if missing:
        raise ValueError(f"the fits at horizons {missing} have no bootstrap samples")
    h = np.array(sorted(fits), dtype=np.float64)
    x = np.log(h) - np.log(h).mean()
    s = np.array([fits[k].size_exponent for k in sorted(fits)])
    num = min(fits[k].bootstrap_samples["size_exponent"].size for k in fits)
    boot = np.stack([fits[k].bootstrap_samples["size_exponent"][:num] for k in sorted(fits)])
    slopes = (x @ boot) / (x @ x)
    lo, hi = np.percentile(slopes[np.isfinite(slopes)], [5, 95])
    slope = float(x @ s / (x @ x))
    changes = bool(lo > 0 or hi < 0)
    spread = f"exponents {s.min():.3f}–{s.max():.3f} over h = {h.min():g}–{h.max():g}"
    reason = (f"{spread}; d s/d ln h = {slope:.3f}, 5–95% [{lo:.3f}, {hi:.3f}] "
              + ("excludes 0: the exponent changes with the horizon" if changes else
                 "includes 0: no change beyond the intervals"))
    return ExponentChange(h, s, slope, (float(lo), float(hi)), changes, reason)
