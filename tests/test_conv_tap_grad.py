"""scalelab.conv_tap_grad: XLA's conv values, input and kernel gradients as matmuls."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from scalelab.conv_tap_grad import conv_tap_grad, input_grad, kernel_grad_rows, kernel_grad_taps


def _lax_conv(x, kernel, padding):
    return lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


# the networks' wider layers: MNIST 5x5 VALID on 28x28 and 3x3 VALID on 12x12, IMPALA 3x3 SAME
# on even and odd sizes (XLA puts the odd padding after)
CASES = [
    ((3, 28, 28, 1), (5, 5, 1, 8), "VALID"),
    ((3, 12, 12, 8), (3, 3, 8, 16), "VALID"),
    ((2, 16, 16, 3), (3, 3, 3, 16), "SAME"),
    ((2, 8, 8, 16), (3, 3, 16, 16), "SAME"),
    ((2, 7, 6, 4), (3, 3, 4, 8), "SAME"),
]


@pytest.mark.parametrize("x_shape, k_shape, padding", CASES)
def test_conv_tap_grad_equals_lax_conv(x_shape, k_shape, padding):
    """Values bit-equal to the lax convolution's, input and kernel gradients equal up to float
    rounding (the same products summed in another order)."""
    kx, kk, kc = jax.random.split(jax.random.key(0), 3)
    x, kernel = jax.random.normal(kx, x_shape), jax.random.normal(kk, k_shape)
    cotangent = jax.random.normal(kc, _lax_conv(x, kernel, padding).shape)

    def outputs_and_grads(conv):
        y, vjp = jax.vjp(lambda x, k: conv(x, k, padding), x, kernel)
        return (y, *jax.jit(vjp)(cotangent))

    y, dx, dk = outputs_and_grads(conv_tap_grad)
    ref_y, ref_dx, ref_dk = outputs_and_grads(_lax_conv)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(ref_y))
    for got, ref in ((dx, ref_dx), (dk, ref_dk)):
        scale = float(jnp.abs(ref).max())
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize("x_shape, k_shape, padding", [
    CASES[0],
    ((2, 9, 13, 2), (3, 5, 2, 3), "VALID"),
    ((2, 9, 13, 2), (5, 3, 2, 3), "SAME"),
    ((1, 6, 4, 1), (2, 4, 1, 1), "SAME"),
])
def test_both_kernel_gradients_equal_lax_autodiff(x_shape, k_shape, padding):
    """kernel_grad_rows and kernel_grad_taps each equal the lax convolution's autodiff kernel
    gradient up to float rounding, including non-square images and kernels and even kernels
    under SAME (where XLA pads more after than before)."""
    kx, kk, kc = jax.random.split(jax.random.key(1), 3)
    x, kernel = jax.random.normal(kx, x_shape), jax.random.normal(kk, k_shape)
    g = jax.random.normal(kc, _lax_conv(x, kernel, padding).shape)
    ref = jax.vjp(lambda k: _lax_conv(x, k, padding), kernel)[1](g)[0]
    pads = lax.padtype_to_pads(x_shape[1:3], k_shape[:2], (1, 1), padding)
    x_pad = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    scale = float(jnp.abs(ref).max())
    for fn in (kernel_grad_rows, kernel_grad_taps):
        got = fn(x_pad, g, *k_shape[:2])
        assert got.shape == k_shape
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize("x_shape, k_shape, padding", [
    ((2, 9, 13, 2), (3, 5, 2, 3), "VALID"),
    ((2, 9, 13, 2), (5, 3, 2, 3), "SAME"),
    ((1, 6, 4, 1), (2, 4, 1, 1), "SAME"),
])
def test_input_gradient_equals_lax_autodiff(x_shape, k_shape, padding):
    """input_grad equals the lax convolution's autodiff input gradient up to float rounding on
    non-square images and kernels and on even kernels under SAME (more padding after)."""
    kx, kk, kc = jax.random.split(jax.random.key(2), 3)
    x, kernel = jax.random.normal(kx, x_shape), jax.random.normal(kk, k_shape)
    g = jax.random.normal(kc, _lax_conv(x, kernel, padding).shape)
    ref = jax.vjp(lambda x: _lax_conv(x, kernel, padding), x)[1](g)[0]
    got = jax.jit(input_grad, static_argnums=(2, 3))(g, kernel, x.shape, padding)
    assert got.shape == ref.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=0,
                               atol=2e-6 * float(jnp.abs(ref).max()))
