"""The gradient noise scale estimator against a quadratic with a known gradient covariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalelab.algos.noise_scale import (
    minibatch_noise_estimate,
    noise_scale_from_sums,
    two_batch_estimates,
)


def test_two_batch_formulas_invert_the_expected_norms():
    g2, trace, b, big = 0.7, 12.0, 8.0, 32.0
    est = two_batch_estimates(g2 + trace / b, g2 + trace / big, b, big)
    np.testing.assert_allclose([est.g2, est.trace], [g2, trace], rtol=1e-12)


def test_noise_scale_of_a_quadratic_matches_the_analytic_value():
    # L(θ) = mean_i ½|θ - x_i|², x_i ~ N(μ, diag(σ²)): per-sample gradients θ - x_i have mean
    # G = θ - μ and covariance diag(σ²), so B_simple = Σσ² / |θ - μ|².
    dim, m, b, draws = 6, 4, 8, 4000
    mu = jnp.linspace(-1.0, 1.0, dim)
    sigma = jnp.linspace(0.5, 2.0, dim)
    theta = {"a": jnp.zeros(3), "b": jnp.ones(3)}  # a pytree, flattened to 6 coordinates

    def grad_fn(params, x):
        flat = jnp.concatenate([params["a"], params["b"]])
        g = jax.grad(lambda f: 0.5 * jnp.mean(jnp.sum((f - x) ** 2, axis=-1)))(flat)
        return {"a": g[:3], "b": g[3:]}

    def one(key):
        x = mu + sigma * jax.random.normal(key, (m, b, dim))
        return minibatch_noise_estimate(grad_fn, theta, x)

    est = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), draws))
    g_true = float(jnp.sum((jnp.concatenate([theta["a"], theta["b"]]) - mu) ** 2))
    tr_true = float(jnp.sum(sigma**2))
    assert float(est.g2.mean()) == pytest.approx(g_true, rel=0.05)
    assert float(est.trace.mean()) == pytest.approx(tr_true, rel=0.05)
    assert float(noise_scale_from_sums(np.asarray(est.g2), np.asarray(est.trace))) == (
        pytest.approx(tr_true / g_true, rel=0.08))
    # single estimates scatter widely: why numerator and denominator are averaged first
    assert float(est.trace.std()) > 0.2 * tr_true


def test_noise_scale_needs_two_minibatches_and_flags_unresolved_signal():
    with pytest.raises(ValueError, match="at least 2"):
        minibatch_noise_estimate(lambda p, x: p, jnp.zeros(2), jnp.zeros((1, 4, 2)))
    out = noise_scale_from_sums(np.array([[-1.0, 0.5], [1.0, 3.0]]),
                                np.array([[2.0, 2.0], [4.0, 4.0]]), axis=1)
    assert np.isnan(out[0]) and out[1] == pytest.approx(2.0)
