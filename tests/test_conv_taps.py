"""Tests for the "taps" convolution formulation: conv_taps == lax.conv, whole networks equal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from network_helpers import ppo_like_loss

from scalelab.networks import (
    TAPS_MAX_CHANNELS,
    NetworkConfig,
    build,
    conv_taps,
    init_params,
    resolve_conv_impl,
)


def _lax_conv(x, kernel, padding):
    return lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _close(a, b, rtol=2e-5):
    """Elementwise within rtol of the reference's largest magnitude (sums are reordered)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(np.abs(b).max(), 1e-30))


# the layer shapes the networks use: MNIST 5x5 on 28x28x1 and 3x3 on 12x12, IMPALA 3x3 SAME
# (even and odd sizes, where XLA puts the odd padding after), plus a wider one beyond the cut-off
CONV_CASES = [
    ((3, 28, 28, 1), (5, 5, 1, 1), "VALID"),
    ((3, 28, 28, 1), (5, 5, 1, 4), "VALID"),
    ((3, 12, 12, 2), (3, 3, 2, 2), "VALID"),
    ((2, 16, 16, 3), (3, 3, 3, 1), "SAME"),
    ((2, 7, 6, 2), (3, 3, 2, 2), "SAME"),
    ((2, 12, 12, 8), (3, 3, 8, 16), "VALID"),
]


@pytest.mark.parametrize("x_shape, k_shape, padding", CONV_CASES)
def test_conv_taps_matches_lax_conv_values_and_gradients(x_shape, k_shape, padding):
    kx, kk, kc = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, x_shape)
    kernel = jax.random.normal(kk, k_shape)
    out_shape = _lax_conv(x, kernel, padding).shape
    cotangent = jax.random.normal(kc, out_shape)

    def loss(conv):
        return lambda x, k: jnp.sum(jnp.tanh(conv(x, k, padding)) * cotangent)

    got = conv_taps(x, kernel, padding)
    assert got.shape == out_shape
    _close(got, _lax_conv(x, kernel, padding))
    grads = jax.grad(loss(conv_taps), argnums=(0, 1))(x, kernel)
    ref = jax.grad(loss(_lax_conv), argnums=(0, 1))(x, kernel)
    for g, r in zip(grads, ref, strict=True):
        _close(g, r)


def test_conv_taps_rejects_bad_inputs():
    x = jnp.zeros((1, 8, 8, 2))
    with pytest.raises(ValueError, match="padding"):
        conv_taps(x, jnp.zeros((3, 3, 2, 1)), "FULL")
    with pytest.raises(ValueError, match="C_in=3"):
        conv_taps(x, jnp.zeros((3, 3, 3, 1)), "VALID")


def test_resolve_conv_impl():
    assert resolve_conv_impl("lax") == "lax" and resolve_conv_impl("taps") == "taps"
    expected = "taps" if jax.default_backend() == "cpu" else "lax"
    assert resolve_conv_impl("auto") == expected
    with pytest.raises(ValueError, match="conv_impl='fft'"):
        build(NetworkConfig("mnist_cnn"), 10, conv_impl="fft")


def _conv_count(fn, *args) -> int:
    return str(jax.make_jaxpr(fn)(*args)).count("conv_general_dilated")


# MNIST widths 1/64 and 1/8 and a small IMPALA; each has layers on both sides of
# the TAPS_MAX_CHANNELS cut-off or all below it
NET_CASES = [
    (NetworkConfig("mnist_cnn", 1 / 64), (28, 28, 1), 10),
    (NetworkConfig("mnist_cnn", 1 / 8), (28, 28, 1), 10),
    (NetworkConfig("impala", 1 / 16, 1), (16, 12, 3), 15),
]


@pytest.mark.parametrize("cfg, shape, num_actions", NET_CASES, ids=lambda c: str(c)[:20])
def test_taps_network_equals_lax_network(cfg, shape, num_actions):
    """Same parameters from the same key (the taps layers declare nn.Conv's), and the same
    outputs and loss gradients on random uint8 observations; the taps program really has fewer
    library convolutions."""
    m_lax, m_taps = build(cfg, num_actions, "lax"), build(cfg, num_actions, "taps")
    obs = jax.random.randint(jax.random.key(1), (6, *shape), 0, 256).astype(jnp.uint8)
    p_lax = jax.jit(m_lax.init)(jax.random.key(2), obs)
    p_taps = jax.jit(m_taps.init)(jax.random.key(2), obs)
    assert jax.tree.structure(p_lax) == jax.tree.structure(p_taps)
    for a, b in zip(jax.tree.leaves(p_lax), jax.tree.leaves(p_taps), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(p_lax) == jax.tree.structure(
        init_params(cfg, jax.random.key(2), shape, num_actions)
    )
    # non-zero biases so that every term of the layers is exercised
    params = jax.tree.map(
        lambda p: p + 0.05 * jax.random.normal(jax.random.key(3), p.shape), p_lax
    )
    k_act, k_adv, k_ret = jax.random.split(jax.random.key(4), 3)
    actions = jax.random.randint(k_act, (len(obs),), 0, num_actions)
    adv, returns = jax.random.normal(k_adv, (len(obs),)), jax.random.normal(k_ret, (len(obs),))

    def outputs_and_grads(module):
        def loss(p):
            return ppo_like_loss(module, p, obs, actions, adv, returns), module.apply(p, obs)

        (_, outputs), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        return outputs, grads

    (out_lax, g_lax), (out_taps, g_taps) = map(outputs_and_grads, (m_lax, m_taps))
    for a, b in zip(out_taps, out_lax, strict=True):
        _close(a, b)
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(g_taps)[0], jax.tree.leaves(g_lax), strict=True
    ):
        assert np.abs(np.asarray(b)).max() > 0, jax.tree_util.keystr(path)
        _close(a, b, rtol=1e-4)
    assert _conv_count(m_taps.apply, params, obs) < _conv_count(m_lax.apply, params, obs)


def test_taps_cut_off_is_per_layer():
    """Layers with C_in * C_out above the cut-off stay library convolutions: at MNIST width
    1/8 (conv_0 1x4, conv_1 4x8 channels) exactly conv_0 of each tower is computed by taps."""
    assert 1 * 4 <= TAPS_MAX_CHANNELS < 4 * 8
    cfg = NetworkConfig("mnist_cnn", 1 / 8)
    params = init_params(cfg, jax.random.key(0), (28, 28, 1), 10)
    obs = jnp.zeros((2, 28, 28, 1))
    n_lax = _conv_count(build(cfg, 10, "lax").apply, params, obs)
    n_taps = _conv_count(build(cfg, 10, "taps").apply, params, obs)
    assert (n_lax, n_taps) == (4, 2)
