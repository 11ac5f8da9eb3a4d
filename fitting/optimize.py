"""Least-squares minimisation: BFGS, then a resumable Levenberg-Marquardt polish; vmappable.

The loss is L(x) = Σ r(x)², r a residual vector. `jax.scipy.optimize.minimize` (BFGS) often
stops with status 3 (line search "zoom failed") close to, but not at, a minimum, and a vmapped
while-loop runs as long as its slowest start. So BFGS gets a modest iteration budget and a fixed
number of Levenberg-Marquardt steps (Gauss-Newton matrix JᵀJ from forward-mode Jacobians,
about 10× cheaper than the exact Hessian here) finishes the job. The Gauss-Newton step
(JᵀJ)⁻¹Jᵀr at the end measures how far the result can still be from the minimum in parameter
units — the convergence test, independent of the scale of the loss and of BFGS's status code.
(It is solved with a 1e-10 relative ridge so that parameters pinned at a boundary — a zero
derivative, e.g. a saturated softplus — give a zero step instead of a failed solve.)
On noisy data the residuals stay large at the minimum and Gauss-Newton converges only
linearly, sometimes over a thousand steps, so the polish can be resumed (`resume`, with the
damping it reached) until the step test passes.

All functions are pure and trace-friendly. Map `bfgs` over starting points or resamples with
`jax.lax.map`, not vmap: a vmapped while-loop runs every lane until the slowest finishes and
evaluates both line-search branches for all of them (27x slower on the benchmark fit); the
fixed-length LM scan of `polish` has no such waste, so vmap it.
Call them inside a float64 context (`jax.enable_x64(True)`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.optimize import minimize

Residuals = Callable[[jax.Array], jax.Array]


class MinimizeResult(NamedTuple):
    """x (d,) the final point; loss = Σ r²; grad_inf = ‖∇L(x)‖∞; step (d,) = the remaining
    Gauss-Newton step (JᵀJ)⁻¹Jᵀr; gauss_newton (d, d) = JᵀJ at x (half the Gauss-Newton
    Hessian); bfgs_status (0 converged, 1 max iterations, 3 line search failed, ...);
    bfgs_iterations; mu the Levenberg-Marquardt damping reached (to resume from)."""

    x: jax.Array
    loss: jax.Array
    grad_inf: jax.Array
    step: jax.Array
    gauss_newton: jax.Array
    bfgs_status: jax.Array
    bfgs_iterations: jax.Array
    mu: jax.Array


def _sum_sq(residuals: Residuals) -> Callable[[jax.Array], jax.Array]:
    return lambda x: jnp.sum(residuals(x) ** 2)


class _LmState(NamedTuple):
    x: jax.Array
    mu: jax.Array
    r: jax.Array
    jac: jax.Array


def _lm_scan(residuals: Residuals, x: jax.Array, steps: int,
             mu: jax.Array | float = 1e-3) -> _LmState:
    """`steps` Levenberg-Marquardt steps from x with damping mu, returning the end point, its
    damping, and r and J at it.

    Step p solves (JᵀJ + μ·m·I) p = -Jᵀr with m = mean diag(JᵀJ); a step is kept only if it
    does not increase the loss; μ shrinks ×0.2 after a kept step and grows ×10 after a rejected
    one, so far from a minimum it falls back to short gradient steps. The scan runs steps + 1
    times with the last update switched off, so that r and J at the end point come from the
    same traced body as the steps (one copy of the Jacobian code).
    """
    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    res_jac = jax.jacfwd(lambda y: (residuals(y), residuals(y)), has_aux=True)

    def body(state: _LmState, i: jax.Array) -> tuple[_LmState, None]:
        x, mu = state.x, state.mu
        jac, r = res_jac(x)
        jtj = jac.T @ jac
        damp = mu * (jnp.mean(jnp.diag(jtj)) + 1e-30)
        p = jnp.linalg.solve(jtj + damp * eye, -(jac.T @ r))
        x_new = x + p
        f, f_new = jnp.sum(r**2), jnp.sum(residuals(x_new) ** 2)
        ok = (jnp.isfinite(f_new) & (f_new <= f) & jnp.all(jnp.isfinite(p))) & (i < steps)
        mu = jnp.clip(jnp.where(ok, mu * 0.2, mu * 10.0), 1e-12, 1e8)
        return _LmState(jnp.where(ok, x_new, x), mu, r, jac), None

    n = residuals(x).shape[0]
    init = _LmState(x, jnp.asarray(mu, x.dtype), jnp.zeros(n, x.dtype),
                    jnp.zeros((n, x.shape[0]), x.dtype))
    state, _ = jax.lax.scan(body, init, jnp.arange(steps + 1))
    return state


class BfgsResult(NamedTuple):
    """x (d,), loss, status (0 converged, 1 max iterations, 3 line search failed, ...),
    iterations."""

    x: jax.Array
    loss: jax.Array
    status: jax.Array
    iterations: jax.Array


def bfgs(residuals: Residuals, x0: jax.Array, *, gtol: float, maxiter: int) -> BfgsResult:
    """BFGS on Σ r² from x0 with explicit gtol (on ‖∇L‖∞) and maxiter; a non-finite end
    point (a failed line search can leave one) is replaced by x0 with infinite loss."""
    res = minimize(_sum_sq(residuals), x0, method="BFGS",
                   options={"gtol": gtol, "maxiter": maxiter})
    finite = jnp.isfinite(res.fun) & jnp.all(jnp.isfinite(res.x))
    return BfgsResult(jnp.where(finite, res.x, x0), jnp.where(finite, res.fun, jnp.inf),
                      res.status, res.nit)


def polish(residuals: Residuals, start: BfgsResult, lm_steps: int) -> MinimizeResult:
    """`lm_steps` Levenberg-Marquardt steps from a BFGS result, then the convergence
    measures of MinimizeResult at the end point."""
    return _measure(_lm_scan(residuals, start.x, lm_steps), start.status, start.iterations)


def resume(residuals: Residuals, prev: MinimizeResult, lm_steps: int) -> MinimizeResult:
    """`lm_steps` more Levenberg-Marquardt steps from a previous result, with its damping."""
    return _measure(_lm_scan(residuals, prev.x, lm_steps, prev.mu), prev.bfgs_status,
                    prev.bfgs_iterations)


def _measure(end: _LmState, status: jax.Array, iterations: jax.Array) -> MinimizeResult:
    x, r, jac = end.x, end.r, end.jac
    jtj = jac.T @ jac
    ridge = 1e-10 * jnp.mean(jnp.diag(jtj)) * jnp.eye(x.shape[0], dtype=x.dtype)
    step = jnp.linalg.solve(jtj + ridge, jac.T @ r)
    loss = jnp.sum(r**2)
    loss = jnp.where(jnp.isfinite(loss), loss, jnp.inf)
    return MinimizeResult(x, loss, jnp.max(jnp.abs(2.0 * jac.T @ r)), step, jtj, status,
                          iterations, end.mu)
