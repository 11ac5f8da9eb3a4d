"""The joint fit of the power law and a monotone score map, with bootstrap intervals.

`fit_power_law` preprocesses the curves (`fitting.curves.prepare`), then minimises the
objective of `fitting.objective` in float64 (inside `jax.enable_x64`, so the rest of the process
stays float32) from many starting points (BFGS from every start, mapped with `jax.lax.map`
rather than vmapped, see `fitting.optimize`, then a vmapped Levenberg-Marquardt polish; in
chunks of 8 starts so that one compiled program serves the starts and the resamples), keeps the
best and runs it to convergence (`fitting.refit`). With bootstrap=B it refits B resamples
(`fitting.bootstrap`) the same way, each to convergence, restarting from fresh starts where the
warm start fails.

Convergence is judged on the law's constants (ln alpha_N, ln alpha_E, D): the remaining
Gauss-Newton step (JᵀJ)⁻¹Jᵀr must be below 1e-4 in them (0.01% of an alpha, far below any
statistical uncertainty; a tighter test mostly measures how slowly the weakly determined ends
of the score map settle), and they must be identifiable: JᵀJ profiled over the score map must
be positive definite. BFGS status codes are reported but not trusted.

Intervals are percentiles over every resample, none dropped, and are reported only when at
least 95% of the resamples converged; otherwise the fit is "unresolved" and says why. The same
data and seed give the same intervals. `PowerLawFit.status` is the verdict of
`fitting.resolution` (does each size reach its frontier, how wide is the size exponent's
interval).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from fitting import law
from fitting.bootstrap import Chosen, Unit, choose_unit, percentile_intervals, resample
from fitting.curves import LearningCurve, Prepared, Size, prepare
from fitting.objective import (
    NUM_LAW,
    FitData,
    Residual,
    knot_values,
    law_y,
    unpack,
)
from fitting.refit import RESTARTS, STEP_TOL, fit_from, fresh_thetas, refit, resume_rounds
from fitting.resolution import (
    MIN_CONVERGED,
    SizeReach,
    Status,
    boundary_failures,
    size_reach,
    verdict,
)

PROFILE_EIG_TOL = 1e-9
BOOTSTRAP_MAXITER = 10  # resamples start at the full fit's optimum; LM does the rest
START_RANGE = {"alpha": (0.05, 2.0), "D": (-5.0, 5.0)}
RESIDUAL_BLOCK = 5.0  # residual-bootstrap block length, in smoothing bandwidths of ln E
PAD = (4, 16)  # the fit's (models, points) arrays are padded to multiples of these
CONSTANTS = ("alpha_N", "alpha_E", "beta", "size_exponent", "N_c", "E_c")


class FitWarning(UserWarning):
    """A fit result that needs care: non-convergence, odd curves or a poor fit."""


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """Fitted I^(-beta) = (N_c/N)^alpha_N + (E_c/E)^alpha_E with its score map f: score → ln I.

    N is in the units chosen by `size` ("params", "policy_params" or "flops" per interaction),
    E in interactions, I in compute units (C = k·N·E). score_knots (K,) and
    log_intrinsic_knots (K,) define f (piecewise linear, strictly increasing, end segments
    extended over score_range, the lowest and highest fitted score). converged: see the module
    docstring. status ("resolved", "weak", "unresolved") and status_reason: the verdict of
    `fitting.resolution`; reach: per size, max E / E*(N). intervals: name → (5th, 95th
    percentile) over all bootstrap resamples, None without bootstrap or when fewer than 95%
    converged; bootstrap_samples: name → (B,) values, bootstrap_ok (B,) which converged,
    bootstrap_restarted (B,) which needed fresh starts, bootstrap_log_intrinsic_knots (B, K)
    each resample's f at score_knots. n_starts_at_best: how many starts reached the best loss
    (to 1e-7 relative) after BFGS and the first polish; 1 suggests a rough loss landscape or
    too few iterations.
    """

    alpha_N: float
    alpha_E: float
    N_c: float
    E_c: float
    k: float
    size: Size
    residual: str
    score_knots: np.ndarray
    log_intrinsic_knots: np.ndarray
    score_range: tuple[float, float]
    converged: bool
    status: Status
    status_reason: str
    reach: tuple[SizeReach, ...]
    loss: float
    r2: float
    grad_norm: float
    gn_step: float
    bfgs_status: int
    n_starts: int
    n_starts_at_best: int
    n_models: int
    n_points: int
    warnings: tuple[str, ...] = ()
    intervals: dict[str, tuple[float, float]] | None = None
    bootstrap_samples: dict[str, np.ndarray] | None = None
    bootstrap_ok: np.ndarray | None = None
    bootstrap_restarted: np.ndarray | None = None
    bootstrap_log_intrinsic_knots: np.ndarray | None = None
    resample_unit: Chosen | None = None

    @property
    def beta(self) -> float:
        """alpha_N·alpha_E / (alpha_N + alpha_E)."""
        return float(law.beta(self.alpha_N, self.alpha_E))

    @property
    def size_exponent(self) -> float:
        """alpha_E / (alpha_N + alpha_E): N_opt ∝ C^size_exponent."""
        return float(law.size_exponent(self.alpha_N, self.alpha_E))

    def intrinsic(self, score: ArrayLike) -> np.ndarray:
        """I = exp(f(score)) in compute units (f's end segments extend to the fitted data's
        score_range); nan outside score_range."""
        r = np.asarray(score, dtype=np.float64)
        inside = (r >= self.score_range[0]) & (r <= self.score_range[1])
        y = interp_extend(r, self.score_knots, self.log_intrinsic_knots)
        return np.where(inside, np.exp(y), np.nan)

    def predict(self, N: ArrayLike, E: ArrayLike) -> np.ndarray:
        """The law's intrinsic performance I(N, E) (compute units); broadcasts N and E."""
        return np.exp(law.log_intrinsic(N, E, self.alpha_N, self.alpha_E, self.N_c, self.E_c))

    def predict_score(self, N: ArrayLike, E: ArrayLike) -> np.ndarray:
        """f⁻¹(ln I(N, E)): the score the fit predicts; nan where I is outside f's range."""
        score = interp_extend(np.log(self.predict(N, E)), self.log_intrinsic_knots,
                              self.score_knots)
        inside = (score >= self.score_range[0]) & (score <= self.score_range[1])
        return np.where(inside, score, np.nan)

    def optimal_params(self, C: ArrayLike) -> np.ndarray:
        """Compute-optimal model size N_opt(C) (units of N) for compute C."""
        return law.optimal_params(C, self.alpha_N, self.alpha_E, self.N_c, self.E_c, self.k)

    def to_dict(self) -> dict:
        """JSON-safe summary: verdict, constants, intervals, diagnostics and the score map."""
        out = {
            "status": self.status, "status_reason": self.status_reason,
            "alpha_N": self.alpha_N, "alpha_E": self.alpha_E, "beta": self.beta,
            "N_c": self.N_c, "E_c": self.E_c, "size_exponent": self.size_exponent,
            "k": self.k, "size": self.size, "residual": self.residual,
            "converged": self.converged,
            "reach": [r.to_dict() for r in self.reach],
            "loss": self.loss, "r2": self.r2, "grad_norm": self.grad_norm,
            "gn_step": self.gn_step, "bfgs_status": self.bfgs_status,
            "n_starts": self.n_starts, "n_starts_at_best": self.n_starts_at_best,
            "n_models": self.n_models, "n_points": self.n_points,
            "warnings": list(self.warnings),
            "score_range": list(self.score_range),
            "score_map": {"score": self.score_knots.tolist(),
                          "log_intrinsic": self.log_intrinsic_knots.tolist()},
        }
        if self.intervals is not None:
            out["intervals"] = {name: [lo, hi] for name, (lo, hi) in self.intervals.items()}
        if self.bootstrap_ok is not None:
            out["bootstrap"] = {"resamples": int(self.bootstrap_ok.size),
                                "converged": int(self.bootstrap_ok.sum()),
                                "restarted": int(self.bootstrap_restarted.sum()),
                                "unit": self.resample_unit}
        return out


def interp_extend(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp with the end segments extended linearly beyond xp."""
    y = np.interp(x, xp, fp)
    lo = fp[0] + (x - xp[0]) * (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi = fp[-1] + (x - xp[-1]) * (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])
    return np.where(x < xp[0], lo, np.where(x > xp[-1], hi, y))


def _profile_min_eig(jtj: np.ndarray) -> float:
    """Smallest eigenvalue of JᵀJ profiled over the score map: the law constants' curvature
    once f has adjusted to any change in them (Schur complement of the f block)."""
    hll, hlf, hff = jtj[:NUM_LAW, :NUM_LAW], jtj[:NUM_LAW, NUM_LAW:], jtj[NUM_LAW:, NUM_LAW:]
    profile = hll - hlf @ np.linalg.solve(hff, hlf.T)
    return float(np.linalg.eigvalsh(0.5 * (profile + profile.T))[0])


def _weighted_quantile_knots(score: np.ndarray, weight: np.ndarray,
                             num: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots at the centres of `num` equal-weight score bins (weighted quantiles
    (i + 1/2)/num); scores beyond the end knots use the end segments. Knots at the extreme
    scores would leave end segments so narrow that noise, not the law, sets their slope."""
    kept = weight > 0
    r, w = score[kept], weight[kept]
    order = np.argsort(r)
    r, w = r[order], w[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    p = (np.arange(num) + 0.5) / num
    knots = np.interp(p, cdf, r)
    keep = np.concatenate([[True], np.diff(knots) > 1e-9 * (r[-1] - r[0])])
    knots, p = knots[keep], p[keep]
    if knots.size < 3:
        raise ValueError(f"the kept scores take too few distinct values ({knots.size} knots); "
                         "the score map cannot be fitted")
    return knots, p


def _weighted_var(x: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(w * (x - np.sum(w * x)) ** 2))


class _Problem(NamedTuple):
    data: FitData  # NumPy arrays, converted to float64 jax arrays inside enable_x64
    log_n0: float
    log_e0: float


def _problem(prep: Prepared, knots: int, residual: Residual) -> _Problem:
    weight = prep.weight / prep.weight.sum()
    log_n = np.log(prep.sizes)
    log_n0 = float(log_n.mean())
    log_e0 = float(np.sum(weight * np.log(prep.interactions)))
    u, v = log_n - log_n0, np.log(prep.interactions) - log_e0
    score_knots, knot_p = _weighted_quantile_knots(prep.score, weight, knots)
    target_var = (_weighted_var(prep.score, weight) if residual == "score"
                  else _weighted_var(u[:, None] + v, weight))
    shape = _padded_shape(weight.shape)
    return _Problem(FitData(_pad(u, shape[:1]), _pad(v, shape), _pad(prep.score, shape),
                            _pad(weight, shape, zero=True), score_knots, knot_p,
                            1.0 / target_var), log_n0, log_e0)


def _padded_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """(M, T) rounded up to multiples of PAD: designs of similar size then share one compiled
    program (compiling it takes longer than most fits)."""
    m, t = shape[-2:]
    return -(-m // PAD[0]) * PAD[0], -(-t // PAD[1]) * PAD[1]


def _pad(a: np.ndarray, shape: tuple[int, ...], zero: bool = False) -> np.ndarray:
    """a padded at the end of its last len(shape) axes to `shape`: with zeros (weights), or by
    repeating the last entry (finite values that carry zero weight)."""
    widths = [(0, 0)] * (a.ndim - len(shape)) + [(0, n - k) for n, k in
                                                   zip(shape, a.shape[-len(shape):], strict=True)]
    return np.pad(a, widths, mode="constant" if zero else "edge")


def _r2(theta: np.ndarray, loss_value: float, prob: _Problem, residual: Residual) -> float:
    """Fraction of the weighted variance of the residual's target (score, or f(score) = ln I)
    that the fit explains."""
    d = prob.data
    if residual == "score":
        target = d.score
    else:
        with jax.enable_x64(True):
            vals = np.asarray(knot_values(jnp.asarray(theta)))
        target = np.interp(d.score, d.knots, vals)
    return 1.0 - loss_value / d.scale / _weighted_var(target, d.weight)


def _fitted_scores(theta: np.ndarray, data: FitData) -> np.ndarray:
    """f⁻¹(y_law) at every point (M, T): the score the fit predicts there."""
    with jax.enable_x64(True):
        vals = np.asarray(knot_values(jnp.asarray(theta)))
        y = np.asarray(law_y(jnp.asarray(theta), jnp.asarray(data.u), jnp.asarray(data.v)))
    return interp_extend(y, vals, np.asarray(data.knots))


def _samples(x: np.ndarray, prob: _Problem, log_k: float) -> dict[str, np.ndarray]:
    c = unpack(x, prob.log_n0, prob.log_e0, log_k)
    return {"alpha_N": c["alpha_N"], "alpha_E": c["alpha_E"],
            "beta": law.beta(c["alpha_N"], c["alpha_E"]),
            "size_exponent": law.size_exponent(c["alpha_N"], c["alpha_E"]),
            "N_c": np.exp(c["log_N_c"]), "E_c": np.exp(c["log_E_c"])}


def _check_ints(**values: tuple[int, int]) -> None:
    for name, (value, low) in values.items():
        if not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def fit_power_law(curves: Sequence[LearningCurve], *, size: Size = "params",
                  k: float = 1.0, exclude_fraction: float = 1 / 64, bootstrap: int = 0,
                  seed: int = 0, smooth: float = 0.1, bin_width: float = 0.05,
                  knots: int = 20, starts: int = 64, resample_unit: Unit = "auto",
                  residual: Residual = "score", maxiter: int = 40,
                  lm_steps: int = 100) -> PowerLawFit:
    """Jointly fit alpha_N, alpha_E, N_c/E_c (N_c·E_c pinned by I = C) and a monotone f.

    curves: learning curves of at least 3 model sizes (seeds of a size are averaged).
    size: the model size N of C = k·N·E: "params" (default: every trained parameter, the
    paper's measure of model size), "policy_params" (the acting network alone) or "flops"
    (forward FLOPs per interaction; the paper finds depth results more alike in FLOPs).
    k: C = k·N·E. exclude_fraction: drop points with E below this fraction of the curve's
    last E. smooth: smoothing bandwidth in ln E (0 = none). bin_width: width in ln E of the
    bins that kept points are merged into (0 = none); see `fitting.curves`. knots: knots of
    the score map, at weighted quantiles of the kept scores. starts: random starting points.
    bootstrap: number of resamples (0 = none) of `resample_unit` ("auto", "seeds",
    "residual", "runs"; see `fitting.bootstrap`), each fitted to convergence (`fitting.refit`).
    seed: seeds the starts and the resampling; the same data and seed give the same result.
    residual: "score" or "log_intrinsic" (see `fitting.objective`).
    maxiter / lm_steps: BFGS iterations and first Levenberg-Marquardt steps per start
    (resamples, warm-started at the optimum, use at most 10 BFGS iterations); further LM
    rounds follow until convergence.
    Returns a PowerLawFit; problems (non-convergence, flat or non-monotone curves, a poor fit,
    an unresolved law) are listed in its `warnings` and raised as FitWarning.
    """
    _check_ints(bootstrap=(bootstrap, 0), starts=(starts, 1), knots=(knots, 3),
                maxiter=(maxiter, 1), lm_steps=(lm_steps, 1))
    if not (np.isfinite(k) and k > 0):
        raise ValueError(f"k must be finite and > 0, got {k}")
    if residual not in ("score", "log_intrinsic"):
        raise ValueError(f"residual must be 'score' or 'log_intrinsic', got {residual!r}")
    prep = prepare(curves, size, exclude_fraction, smooth, bin_width)
    sizes = np.unique(prep.sizes)
    if sizes.size < 3:
        raise ValueError(f"the power law needs learning curves of at least 3 model sizes; got "
                         f"{sizes.size} distinct {size} value(s): {sizes.tolist()}")
    unit = choose_unit(prep, resample_unit) if bootstrap else None
    prob = _problem(prep, knots, residual)
    rng = np.random.default_rng(seed)
    lo, hi = np.log(START_RANGE["alpha"])
    law_starts = np.column_stack([rng.uniform(lo, hi, starts), rng.uniform(lo, hi, starts),
                                  rng.uniform(*START_RANGE["D"], starts)])
    with jax.enable_x64(True):
        data = jax.tree.map(jnp.asarray, prob.data)
        full = [np.broadcast_to(a, (starts, *a.shape)) for a in (prob.data.score,
                                                                 prob.data.weight)]
        res = fit_from(data, *full, fresh_thetas(data, *full, law_starts), maxiter=maxiter,
                       lm_steps=lm_steps, kind=residual)
        best = int(np.argmin(res.loss))
        at_best = int(np.sum(res.loss <= res.loss[best] + 1e-7 * abs(res.loss[best]) + 1e-12))
        top = resume_rounds(data, full[0][:1], full[1][:1],
                            jax.tree.map(lambda a: a[best:best + 1], res), residual)
        top = jax.tree.map(lambda a: a[0], top)
        theta = top.x
        knot_y = np.asarray(knot_values(jnp.asarray(theta)))
        boot = None
        if bootstrap:
            m, t = prep.weight.shape
            fitted = (_fitted_scores(theta, prob.data)[:m, :t] if unit == "residual"
                      else None)
            scores, weights = resample(prep, bootstrap, unit, rng, fitted,
                                       block=max(RESIDUAL_BLOCK * smooth, bin_width, 0.1))
            shape = prob.data.weight.shape
            scores, weights = _pad(scores, shape), _pad(weights, shape, zero=True)
            weights /= weights.sum(axis=(1, 2), keepdims=True)
            restart_starts = law_starts[np.argsort(res.loss)[:RESTARTS]]
            boot = refit(data, scores, weights, theta, restart_starts,
                         maxiter=min(maxiter, BOOTSTRAP_MAXITER), lm_steps=lm_steps,
                         kind=residual)
            boot_knots = np.asarray(jax.vmap(knot_values)(jnp.asarray(boot.res.x)))
    notes = list(prep.warnings)
    min_eig = _profile_min_eig(top.gauss_newton)
    step = float(np.max(np.abs(top.step[:NUM_LAW])))
    r2 = _r2(theta, float(top.loss), prob, residual)
    identifiable = min_eig > PROFILE_EIG_TOL
    converged = bool(np.isfinite(top.loss) and step < STEP_TOL and identifiable)
    problem = None
    if not identifiable:
        problem = (f"the law's constants are not identifiable from these data (profiled "
                   f"Gauss-Newton eigenvalue {min_eig:.2g} <= {PROFILE_EIG_TOL:g})")
    elif not converged:
        problem = (f"the fit did not converge: Gauss-Newton step {step:.2g} >= {STEP_TOL:g} "
                   f"(BFGS status {int(top.bfgs_status)}, loss {top.loss:.3g})")
    if problem:
        notes.append(problem)
    if r2 < 0.9:
        notes.append(f"the law explains only {r2:.1%} of the weighted variance of the {residual}")
    log_k = float(np.log(k))
    const = _samples(theta, prob, log_k)
    shift = log_k + prob.log_n0 + prob.log_e0
    intervals = samples = ok = restarted = knots_b = None
    failures = ""
    if boot is not None:
        ok, restarted = boot.ok, boot.restarted
        samples = _samples(boot.res.x, prob, log_k)
        knots_b = boot_knots + shift
        failures = boundary_failures(samples["alpha_N"], samples["alpha_E"], ok)
        if ok.sum() == 0:
            notes.append(f"none of the {bootstrap} bootstrap resamples converged; no "
                         f"intervals{failures}")
        elif ok.mean() < MIN_CONVERGED:
            notes.append(f"only {int(ok.sum())} of {bootstrap} bootstrap resamples converged "
                         f"(< {MIN_CONVERGED:.0%}); no intervals{failures}")
        else:
            intervals = percentile_intervals(samples)
    last = np.array([g.interactions[-1] for g in prep.groups])
    reach = size_reach(prep.sizes, last, float(const["alpha_N"]),
                       float(const["alpha_E"]), float(const["N_c"]), float(const["E_c"]), k)
    status, reason = verdict(converged=converged, problem=problem, reach=reach,
                             resamples=bootstrap, resamples_converged=int(ok.sum()) if
                             ok is not None else 0,
                             interval=intervals["size_exponent"] if intervals else None,
                             failures=failures)
    if status == "unresolved":
        notes.append(f"unresolved: {reason}")
    for note in notes:
        warnings.warn(note, FitWarning, stacklevel=2)
    return PowerLawFit(
        alpha_N=float(const["alpha_N"]), alpha_E=float(const["alpha_E"]),
        N_c=float(const["N_c"]), E_c=float(const["E_c"]), k=float(k), size=size,
        residual=residual, score_knots=np.asarray(prob.data.knots),
        score_range=(float(prep.score[prep.weight > 0].min()),
                     float(prep.score[prep.weight > 0].max())),
        log_intrinsic_knots=knot_y + shift, converged=converged, status=status,
        status_reason=reason, reach=reach, loss=float(top.loss), r2=r2,
        grad_norm=float(top.grad_inf), gn_step=step, bfgs_status=int(top.bfgs_status),
        n_starts=starts, n_starts_at_best=at_best, n_models=len(prep.groups),
        n_points=int(np.sum(prep.weight > 0)), warnings=tuple(notes), intervals=intervals,
        bootstrap_samples=samples, bootstrap_ok=ok, bootstrap_restarted=restarted,
        bootstrap_log_intrinsic_knots=knots_b, resample_unit=unit)
