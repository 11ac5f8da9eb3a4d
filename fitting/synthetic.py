"""Synthetic learning curves from known power-law constants, a known score map and noise.

Used by the tests and the benchmark, and by researchers to check what a sweep design can
resolve before running it: `check_design` generates curves with the sizes, budget and seeds of
the planned sweep from laws across a prior range of size exponents, fits them with a
bootstrap, and reports the interval width and verdict each would get.

Each point is score = g(ln I(N, E)) + noise·(high - low)·ε, ε ~ N(0, 1) i.i.d., where I is the
law of `fitting.law` and g a monotone score map (by default logistic in ln I).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from fitting import law
from fitting.curves import LearningCurve, group_curves
from fitting.powerlaw import FitWarning, PowerLawFit, fit_power_law, interp_extend
from fitting.resolution import Status


@dataclasses.dataclass(frozen=True)
class LogisticScoreMap:
    """score = low + (high - low) / (1 + exp(-(ln I - center) / width)), and its inverse."""

    center: float
    width: float
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self) -> None:
        if not (self.width > 0 and self.high > self.low):
            raise ValueError(f"need width > 0 and high > low, got width={self.width}, "
                             f"low={self.low}, high={self.high}")

    def __call__(self, log_intrinsic: ArrayLike) -> np.ndarray:
        z = (np.asarray(log_intrinsic, float) - self.center) / self.width
        return self.low + (self.high - self.low) / (1.0 + np.exp(-z))

    def inverse(self, score: ArrayLike) -> np.ndarray:
        """ln I for a score strictly between low and high."""
        p = (np.asarray(score, float) - self.low) / (self.high - self.low)
        return self.center + self.width * np.log(p / (1.0 - p))


@dataclasses.dataclass(frozen=True)
class SyntheticLaw:
    """Known constants of I^(-beta) = (N_c/N)^alpha_N + (E_c/E)^alpha_E with k·N_c·E_c on the
    frontier constraint (check with `law.frontier_log_kNcEc`)."""

    alpha_N: float
    alpha_E: float
    N_c: float
    E_c: float
    k: float = 1.0

    @classmethod
    def from_optimum(cls, alpha_N: float, alpha_E: float, C_ref: float, N_opt_ref: float,
                     k: float = 1.0) -> SyntheticLaw:
        """The law whose compute-optimal size at compute C_ref is N_opt_ref.

        With L = ln(k·N_c·E_c) = -H(s)/beta and N_opt = P·C^s,
        ln P = ln N_c + (ln(alpha_N/alpha_E) - alpha_E·L)/(alpha_N + alpha_E).
        """
        if not (alpha_N > 0 and alpha_E > 0):
            raise ValueError(f"alphas must be > 0, got alpha_N={alpha_N}, alpha_E={alpha_E}")
        big_l = float(law.frontier_log_kNcEc(alpha_N, alpha_E))
        s = float(law.size_exponent(alpha_N, alpha_E))
        log_nc = (math.log(N_opt_ref) - s * math.log(C_ref)
                  - (math.log(alpha_N / alpha_E) - alpha_E * big_l) / (alpha_N + alpha_E))
        log_ec = big_l - math.log(k) - log_nc
        return cls(alpha_N, alpha_E, math.exp(log_nc), math.exp(log_ec), k)

    def log_intrinsic(self, N: ArrayLike, E: ArrayLike) -> np.ndarray:
        """ln I(N, E) of the law (compute units)."""
        return law.log_intrinsic(N, E, self.alpha_N, self.alpha_E, self.N_c, self.E_c)


@dataclasses.dataclass(frozen=True)
class Design:
    """A sweep design: model sizes (M,), logged interactions (T,), seeds per size."""

    sizes: np.ndarray
    interactions: np.ndarray
    seeds: int = 3


def default_design(num_sizes: int = 8, base_params: float = 1e5,
                   size_range: tuple[float, float] = (1 / 64, 8.0), num_points: int = 200,
                   max_interactions: float = 1e7, seeds: int = 3) -> Design:
    """num_sizes sizes log-spaced over size_range × base_params; num_points evenly spaced
    interactions up to max_interactions (as a trainer logs them)."""
    sizes = np.geomspace(base_params * size_range[0], base_params * size_range[1], num_sizes)
    inter = np.linspace(max_interactions / num_points, max_interactions, num_points)
    return Design(sizes, inter, seeds)


def law_for_design(alpha_N: float, alpha_E: float, design: Design, k: float = 1.0,
                   frontier_fraction: float = 1 / 8) -> SyntheticLaw:
    """A law whose frontier crosses the design: the geometric-mean size N_mid is
    compute-optimal at E*(N_mid) = frontier_fraction·E_max (compute k·N_mid·E*)."""
    n_mid = float(np.sqrt(design.sizes.min() * design.sizes.max()))
    c_ref = k * n_mid * float(design.interactions.max()) * frontier_fraction
    return SyntheticLaw.from_optimum(alpha_N, alpha_E, c_ref, n_mid, k)


def logistic_map_for(true_law: SyntheticLaw, design: Design,
                     exclude_fraction: float = 1 / 64) -> LogisticScoreMap:
    """A logistic score map sending the 5th-95th percentile of the design's ln I (after early
    exclusion) to scores 0.1-0.9."""
    e = design.interactions[design.interactions >= exclude_fraction * design.interactions[-1]]
    y = true_law.log_intrinsic(design.sizes[:, None], e[None, :])
    lo, hi = np.percentile(y, [5, 95])
    return LogisticScoreMap(center=0.5 * (lo + hi), width=(hi - lo) / (2 * math.log(9.0)))


def make_curves(true_law: SyntheticLaw, design: Design, *, noise: float = 0.05,
                seed_noise: float = 0.0,
                score_map: Callable[[np.ndarray], np.ndarray] | None = None,
                flops_per_param: float | None = None, seed: int = 0) -> list[LearningCurve]:
    """One LearningCurve per (size, seed): score = score_map(ln I + seed_noise·δ) + noise·ε.

    noise: standard deviation of the i.i.d. Gaussian noise per point, as a fraction of the
    score map's range (high - low; 1 for maps without those attributes).
    seed_noise: standard deviation of one Gaussian offset δ in ln I per run, the same at every
    point: a run uniformly e^δ times more or less efficient than the law. Real seeds differ like
    this, not only point by point (`seed_spread` measures it on a fit), and such noise does not
    average out along a curve.
    score_map: monotone ln I → score; default `logistic_map_for(true_law, design)`.
    flops_per_param: if given, flops_per_interaction = flops_per_param · params.
    """
    if noise < 0 or seed_noise < 0:
        raise ValueError(f"noise and seed_noise must be >= 0, got {noise}, {seed_noise}")
    g = score_map if score_map is not None else logistic_map_for(true_law, design)
    span = getattr(g, "high", 1.0) - getattr(g, "low", 0.0)
    rng = np.random.default_rng(seed)
    curves = []
    for n in design.sizes:
        log_i = true_law.log_intrinsic(n, design.interactions)
        for s in range(design.seeds):
            # no draw without seed noise, so existing seeds give the curves they always gave
            shift = seed_noise * rng.standard_normal() if seed_noise else 0.0
            clean = g(log_i + shift)
            score = clean + noise * span * rng.standard_normal(clean.shape)
            flops = None if flops_per_param is None else flops_per_param * float(n)
            curves.append(LearningCurve(float(n), design.interactions, score, seed=s,
                                        flops_per_interaction=flops))
    return curves


@dataclasses.dataclass(frozen=True)
class DesignTrial:
    """One simulated sweep: the true size exponent, the fitted one, its 5–95% interval (None
    if the fit gave none), its width (nan without one), whether it covers the truth, the fit's
    verdict and the largest max E / E*(N) over sizes under the true law."""

    true_exponent: float
    fitted_exponent: float
    interval: tuple[float, float] | None
    width: float
    covered: bool
    status: Status
    frontier_ratio: float


@dataclasses.dataclass(frozen=True)
class DesignCheck:
    """What a design is predicted to give: every simulated trial, the widest interval among
    them (inf when a trial gave none) and the share of trials that came out "resolved"."""

    trials: tuple[DesignTrial, ...]

    @property
    def predicted_width(self) -> float:
        """The widest size-exponent interval over the trials (inf if any had none)."""
        return max((t.width if t.interval else math.inf) for t in self.trials)

    @property
    def resolved_fraction(self) -> float:
        """Share of trials whose fit was "resolved"."""
        return sum(t.status == "resolved" for t in self.trials) / len(self.trials)


def check_design(sizes: ArrayLike, seeds: int, interactions: float,
                 exponent_range: tuple[float, float], *, alpha_sum: float = 1.0,
                 frontier_fraction: float = 1 / 8, noise: float = 0.02,
                 seed_noise: float = 0.0, num_points: int = 60, num_exponents: int = 3,
                 bootstrap: int = 32, starts: int = 16, seed: int = 0) -> DesignCheck:
    """Predict the size-exponent interval a sweep design gives, by simulating and fitting it.

    sizes (M,): the model sizes N; seeds: runs per size; interactions: the budget E_max per
    run, logged at num_points evenly spaced points. exponent_range: the prior range of the
    size exponent s = alpha_E/(alpha_N + alpha_E); num_exponents laws evenly spaced over it
    are simulated, with alpha_N + alpha_E = alpha_sum, the geometric-mean size on the
    frontier at frontier_fraction·E_max (`law_for_design`), a logistic score map,
    Gaussian noise (fraction of the score range) per point and a Gaussian offset of sd
    seed_noise in ln I per run (`make_curves`; measure it on a pilot run's fit with
    `seed_spread`: point noise alone makes designs look better than they are). Each is fitted
    with `bootstrap` seed resamples. Cost: num_exponents fits with bootstrap (about a second
    each after the first compile on an idle CPU core for small designs).
    """
    lo, hi = exponent_range
    if not 0 < lo <= hi < 1:
        raise ValueError(f"exponent_range must satisfy 0 < low <= high < 1, got {exponent_range}")
    design = Design(np.asarray(sizes, dtype=np.float64),
                    np.linspace(interactions / num_points, interactions, num_points), seeds)
    trials = []
    for i, s in enumerate(np.linspace(lo, hi, num_exponents)):
        truth = law_for_design((1 - s) * alpha_sum, s * alpha_sum, design,
                               frontier_fraction=frontier_fraction)
        curves = make_curves(truth, design, noise=noise, seed_noise=seed_noise, seed=seed + i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            fit = fit_power_law(curves, bootstrap=bootstrap, seed=seed + i, starts=starts)
        interval = fit.intervals["size_exponent"] if fit.intervals else None
        log_e_star = law.log_frontier_interactions(design.sizes, truth.alpha_N, truth.alpha_E,
                                                   truth.N_c, truth.E_c, truth.k)
        trials.append(DesignTrial(
            float(s), fit.size_exponent, interval,
            interval[1] - interval[0] if interval else math.nan,
            bool(interval and interval[0] <= s <= interval[1]), fit.status,
            float(np.exp(np.log(interactions) - log_e_star.min()))))
    return DesignCheck(tuple(trials))


def seed_spread(fit: PowerLawFit, curves: Sequence[LearningCurve],
                tail: float = 0.5) -> float:
    """The seed-to-seed spread in ln I of fitted runs, for `check_design`'s seed_noise: each
    run's mean ln I (through the fit's score map) over the last `tail` of its points, minus
    the mean of its size's runs; the pooled standard deviation of those offsets (with the
    n/(n-1) correction per size). Sizes with one run contribute nothing."""
    offsets, dof = [], 0
    for g in group_curves(curves):
        if g.scores.shape[0] < 2:
            continue
        keep = g.interactions >= g.interactions[-1] * (1 - tail)
        # the score map's end segments extended: single runs go past the seed means' range
        y = interp_extend(g.scores[:, keep], fit.score_knots, fit.log_intrinsic_knots).mean(1)
        offsets.append(y - y.mean())
        dof += y.size - 1
    if not dof:
        raise ValueError("seed_spread needs a size with at least 2 runs")
    return float(np.sqrt(np.sum(np.concatenate(offsets) ** 2) / dof))
