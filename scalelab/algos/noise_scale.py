"""The simple gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018), online.

For a loss averaged over B i.i.d. samples whose per-sample gradients have mean G and covariance
Σ, the minibatch gradient g_B satisfies E|g_B|² = |G|² + tr(Σ)/B. Measuring |g|² at two batch
sizes b < B' therefore gives unbiased estimates

    |G|²  ≈ (B' |g_B'|² - b |g_b|²) / (B' - b)
    tr(Σ) ≈ (|g_b|² - |g_B'|²) / (1/b - 1/B')

Here the M minibatch gradients of one rollout, all taken at the same parameters, are the small
batches (b = n/M) and their mean is the big one (B' = n). Single estimates are noisy (|G|² can
come out negative); average numerator and denominator separately over many updates before taking
the ratio, as the paper recommends (`noise_scale_from_sums`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

Params = Any


class NoiseEstimate(NamedTuple):
    """One update's unbiased estimates of |G|² (g2) and tr(Σ) (trace), both scalars."""

    g2: jax.Array
    trace: jax.Array


def two_batch_estimates(
    sq_small: jax.Array, sq_big: jax.Array, b_small: float, b_big: float
) -> NoiseEstimate:
    """|G|² and tr(Σ) from the mean squared norm of b-sample gradients (sq_small) and the
    squared norm of a B'-sample gradient (sq_big) (module docstring); b < B'."""
    g2 = (b_big * sq_big - b_small * sq_small) / (b_big - b_small)
    trace = (sq_small - sq_big) / (1.0 / b_small - 1.0 / b_big)
    return NoiseEstimate(g2, trace)


def minibatch_noise_estimate(
    grad_fn: Callable[[Params, Any], Params], params: Params, minibatches: Any
) -> NoiseEstimate:
    """Estimates from M minibatch gradients at the same `params`.

    minibatches: a pytree whose leaves have a leading (M, b, ...) shape; grad_fn(params, mb) is
    the gradient of the mean loss over one minibatch. The gradients are accumulated in a scan
    (one gradient in memory at a time): sq_small = mean_i |g_i|², sq_big = |mean_i g_i|².
    """
    num = jax.tree.leaves(minibatches)[0].shape[0]
    size = jax.tree.leaves(minibatches)[0].shape[1]
    if num < 2:
        raise ValueError(f"minibatches: need at least 2 to estimate the noise scale, got {num}")

    def body(carry, mb):
        total, sq = carry
        g = grad_fn(params, mb)
        return (jax.tree.map(jnp.add, total, g), sq + optax.tree.norm(g, squared=True)), None

    zero = jax.tree.map(jnp.zeros_like, params)
    (total, sq), _ = lax.scan(body, (zero, jnp.zeros((), jnp.float32)), minibatches)
    sq_big = optax.tree.norm(jax.tree.map(lambda t: t / num, total), squared=True)
    return two_batch_estimates(sq / num, sq_big, float(size), float(size * num))


def noise_scale_from_sums(g2: np.ndarray, trace: np.ndarray, axis: int | None = None
                          ) -> np.ndarray:
    """B_simple = mean(tr(Σ)) / mean(|G|²) over `axis` (ratio of averages); NaN where the
    averaged |G|² is not positive (too few updates to resolve the signal)."""
    g2m, trm = np.mean(g2, axis=axis), np.mean(trace, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(g2m > 0, trm / g2m, np.nan)
