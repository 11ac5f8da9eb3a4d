"""Fits run to convergence: resumed Levenberg-Marquardt rounds, then fresh restarts.

Used for the full-data fit (after the multi-start search) and for every bootstrap resample.
A result counts as converged when its loss is finite and the remaining Gauss-Newton step in the
law's constants (ln alpha_N, ln alpha_E, D) is below STEP_TOL (see `fitting.optimize`). Results
that have not converged get up to MAX_ROUNDS more rounds of ROUND_STEPS Levenberg-Marquardt
steps (Gauss-Newton converges linearly on noisy data, sometimes over a thousand steps); those
still failing are refitted from RESTARTS fresh starting points, and the better of the two ends
is kept. Nothing is dropped: every resample keeps its best end point, converged or not, so the
caller can report how many converged and decide whether intervals are meaningful.

Every call computes CHUNK resamples (the last chunk padded), so one compiled shape per function
serves the warm start, every round and every restart, whatever the number still failing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from fitting.objective import (
    NUM_LAW,
    FitData,
    Residual,
    Terms,
    residuals,
    start_from_law,
    terms,
)
from fitting.optimize import MinimizeResult, Residuals, bfgs, polish, resume

GTOL = 1e-9
STEP_TOL = 1e-4
ROUND_STEPS = 250
STALLED = 0.9
MAX_ROUNDS = 8
RESTARTS = 4
CHUNK = 8
T = TypeVar("T")


def converged_mask(res: MinimizeResult) -> np.ndarray:
    """(B,) whether each result passes the step test (module docstring)."""
    return np.isfinite(np.asarray(res.loss)) & (_law_step(res) < STEP_TOL)


class Refit(NamedTuple):
    """res: the end point of every fit (NumPy arrays, leading axis B); ok (B,): converged;
    restarted (B,): refitted from fresh starts."""

    res: MinimizeResult
    ok: np.ndarray
    restarted: np.ndarray


def _resampled(data: FitData, score: jax.Array, weight: jax.Array) -> tuple[FitData, Terms]:
    d = data._replace(score=score, weight=weight)
    return d, terms(d)


@functools.partial(jax.jit, static_argnames=("lm_steps", "kind"))
def _warm(data: FitData, scores: jax.Array, weights: jax.Array, theta0: jax.Array,
          maxiter: jax.Array, lm_steps: int, kind: Residual) -> MinimizeResult:
    """BFGS from theta0 (B, P), then `lm_steps` of LM, for each (score, weight) resample.
    maxiter is traced, so the full fit and the warm-started resamples share one program."""
    def res(score: jax.Array, weight: jax.Array) -> Residuals:
        return functools.partial(residuals, data=_resampled(data, score, weight)[1], kind=kind)

    starts = jax.lax.map(lambda a: bfgs(res(a[0], a[1]), a[2], gtol=GTOL, maxiter=maxiter),
                         (scores, weights, theta0))
    return jax.vmap(lambda score, weight, s: polish(res(score, weight), s, lm_steps))(
        scores, weights, starts)


@functools.partial(jax.jit, static_argnames=("lm_steps", "kind"))
def _more(data: FitData, scores: jax.Array, weights: jax.Array, prev: MinimizeResult,
          lm_steps: int, kind: Residual) -> MinimizeResult:
    """`lm_steps` more LM steps for each resample, from where `prev` left it."""
    def more_one(score: jax.Array, weight: jax.Array, p: MinimizeResult) -> MinimizeResult:
        _, t = _resampled(data, score, weight)
        return resume(functools.partial(residuals, data=t, kind=kind), p, lm_steps)

    return jax.vmap(more_one)(scores, weights, prev)


def fresh_thetas(data: FitData, scores: np.ndarray, weights: np.ndarray,
                 law_starts: np.ndarray) -> np.ndarray:
    """Full starting points θ (B, P) from law constants (B, 3), one per resample (score
    (B, M, T), weight (B, M, T)): the score map set to match the law (`start_from_law`)."""
    return _chunks(functools.partial(_fresh_thetas, data), np.arange(scores.shape[0]), scores,
                   weights, law_starts)


def fit_from(data: FitData, scores: np.ndarray, weights: np.ndarray, thetas: np.ndarray, *,
             maxiter: int, lm_steps: int, kind: Residual) -> MinimizeResult:
    """BFGS (maxiter) then LM (lm_steps) from thetas (B, P) for each resample; NumPy result."""
    warm = functools.partial(_warm, data, maxiter=jnp.asarray(maxiter), lm_steps=lm_steps,
                             kind=kind)
    return _chunks(warm, np.arange(scores.shape[0]), scores, weights, thetas)


@jax.jit
def _fresh_thetas(data: FitData, scores: jax.Array, weights: jax.Array,
                  law_starts: jax.Array) -> jax.Array:
    """Full starting points (B, P) from law constants (B, 3) for each resample."""
    return jax.vmap(lambda score, weight, law3: start_from_law(
        law3, _resampled(data, score, weight)[0]))(scores, weights, law_starts)


def _chunks(fn: Callable[..., T], idx: np.ndarray, *arrays: np.ndarray | MinimizeResult) -> T:
    """fn over the rows idx of each array (leading axis), CHUNK rows per call (the last chunk
    padded by repeating a row), so that one compiled shape serves every call."""
    parts = []
    for lo in range(0, idx.size, CHUNK):
        rows = idx[lo:lo + CHUNK]
        rows = np.concatenate([rows, np.full(CHUNK - rows.size, rows[0])])
        args = [jax.tree.map(functools.partial(_rows, rows), x) for x in arrays]
        parts.append(jax.tree.map(np.asarray, fn(*args)))
    joined = jax.tree.map(lambda *a: np.concatenate(a), *parts)
    return jax.tree.map(lambda a: a[:idx.size], joined)


def _rows(rows: np.ndarray, a: np.ndarray) -> jax.Array:
    return jnp.asarray(a[rows])


def _take(tree: MinimizeResult, idx: np.ndarray) -> MinimizeResult:
    return jax.tree.map(lambda a: a[idx], tree)


def _put(tree: MinimizeResult, idx: np.ndarray, new: MinimizeResult) -> MinimizeResult:
    def put(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[idx] = b
        return a

    return jax.tree.map(put, tree, new)


def resume_rounds(data: FitData, scores: np.ndarray, weights: np.ndarray,
                  res: MinimizeResult, kind: Residual) -> MinimizeResult:
    """Up to MAX_ROUNDS rounds of ROUND_STEPS more LM steps for the results (NumPy, leading
    axis B) that have not converged; the others are left as they are, and so is a result
    whose step shrank by less than a factor STALLED in a round (a flat direction, not slow
    convergence: it would not converge in any number of rounds)."""
    more = functools.partial(_more, data, lm_steps=ROUND_STEPS, kind=kind)
    active = ~converged_mask(res)
    for _ in range(MAX_ROUNDS):
        bad = np.flatnonzero(active)
        if bad.size == 0:
            break
        before = _law_step(_take(res, bad))
        res = _put(res, bad, _chunks(more, bad, scores, weights, res))
        after = _law_step(_take(res, bad))
        active[bad] = ~converged_mask(_take(res, bad)) & (after < STALLED * before)
    return res


def _law_step(res: MinimizeResult) -> np.ndarray:
    return np.max(np.abs(res.step[..., :NUM_LAW]), axis=-1)


def refit(data: FitData, scores: np.ndarray, weights: np.ndarray, theta0: np.ndarray,
          law_starts: np.ndarray, *, maxiter: int, lm_steps: int, kind: Residual) -> Refit:
    """Fit every (score (B, M, T), weight (B, M, T)) resample of `data` to convergence.

    Starts from theta0 (P,) (the full fit's optimum), then resumed LM rounds, then restarts
    from each of law_starts (R, 3) for the resamples still failing, keeping the better end
    (module docstring). Call inside `jax.enable_x64(True)` with `data` as float64 jax arrays.
    """
    num = scores.shape[0]
    fit = functools.partial(fit_from, data, maxiter=maxiter, lm_steps=lm_steps, kind=kind)
    thetas = np.broadcast_to(np.asarray(theta0), (num, np.size(theta0)))
    res = resume_rounds(data, scores, weights, fit(scores, weights, thetas), kind)
    restarted = np.zeros(num, bool)
    for law3 in law_starts:
        bad = np.flatnonzero(~converged_mask(res))
        if bad.size == 0:
            break
        starts = fresh_thetas(data, scores[bad], weights[bad],
                              np.broadcast_to(law3, (bad.size, 3)))
        fresh = fit(scores[bad], weights[bad], starts)
        fresh = resume_rounds(data, scores[bad], weights[bad], fresh, kind)
        old = _take(res, bad)
        better = converged_mask(fresh) | (~converged_mask(old) & (fresh.loss < old.loss))
        res = _put(res, bad[better], _take(fresh, np.flatnonzero(better)))
        restarted[bad[better]] = True
    return Refit(res, converged_mask(res), restarted)
