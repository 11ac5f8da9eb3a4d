"""scalelab.maxpool: values and gradients bit-equal to autodiff of flax's reduce_window max-pool."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scalelab.maxpool import max_pool

# the networks' pools: IMPALA 3x3 stride 2 SAME (even sizes pad after, odd sizes on both sides:
# 64 -> 32 -> 16 -> 8 and the tests' 16x12 and 7x5 observations), MNIST 2x2 stride 2 VALID
# (24 -> 12, 10 -> 5, and an odd size that drops its last row), and a stride-1 overlap case
POOLS = [
    ((2, 16, 16, 3), (3, 3), (2, 2), "SAME"),
    ((2, 7, 5, 2), (3, 3), (2, 2), "SAME"),
    ((2, 3, 4, 2), (3, 3), (2, 2), "SAME"),
    ((2, 24, 24, 4), (2, 2), (2, 2), "VALID"),
    ((2, 10, 11, 3), (2, 2), (2, 2), "VALID"),
    ((2, 6, 6, 2), (3, 3), (1, 1), "SAME"),
]


def _bits(a) -> np.ndarray:
    return np.asarray(a, np.float32).view(np.uint32)


def _values_and_grads(pool, x, cotangent):
    y, vjp = jax.vjp(pool, x)
    return y, jax.jit(vjp)(cotangent)[0]


def _inputs(shape, ties: bool, seed: int = 0):
    kx, kg = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, shape)
    if ties:
        # a handful of distinct values (and signed zeros): most windows hold their max repeatedly
        x = jnp.round(1.2 * x)
    return x, kg


@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("shape, window, strides, padding", POOLS)
def test_max_pool_is_bit_equal_to_reduce_window_autodiff(shape, window, strides, padding, ties):
    x, kg = _inputs(shape, ties)
    g = jax.random.normal(kg, nn.max_pool(x, window, strides, padding).shape)
    ref_y, ref_dx = _values_and_grads(lambda x: nn.max_pool(x, window, strides, padding), x, g)
    y, dx = _values_and_grads(lambda x: max_pool(x, window, strides, padding), x, g)
    assert y.shape == ref_y.shape and dx.shape == x.shape
    np.testing.assert_array_equal(_bits(y), _bits(ref_y))
    np.testing.assert_array_equal(_bits(dx), _bits(ref_dx))
    # undifferentiated calls take the primal path (reduce_window), not the custom forward rule
    np.testing.assert_array_equal(_bits(max_pool(x, window, strides, padding)), _bits(ref_y))


def test_ties_go_to_the_first_max_in_window_scan_order():
    """All-equal inputs: each window's top-left element takes its cotangent, as XLA's
    select-and-scatter with select = ge does over x padded with -inf; with all -inf inputs that
    element is padding where the window starts on it, and the cotangent is dropped."""
    g = jnp.arange(1.0, 7.0).reshape(1, 2, 3, 1)
    for fill in (1.0, -jnp.inf):
        # 3 x 5 -> 2 x 3 outputs, SAME pads one row/column before and after
        x = jnp.full((1, 3, 5, 1), fill)
        _, dx = _values_and_grads(lambda x: max_pool(x, (3, 3), (2, 2), "SAME"), x, g)
        _, ref = _values_and_grads(lambda x: nn.max_pool(x, (3, 3), (2, 2), "SAME"), x, g)
        expected = np.zeros((3, 5))
        # window (i, j) covers x rows 2i-1..2i+1, cols 2j-1..2j+1; row/col -1 is padding
        for i in range(2):
            for j in range(3):
                top, left = 2 * i - 1, 2 * j - 1
                if fill == 1.0:
                    top, left = max(top, 0), max(left, 0)
                if top >= 0 and left >= 0:
                    expected[top, left] += float(g[0, i, j, 0])
        np.testing.assert_array_equal(dx[0, :, :, 0], expected)
        np.testing.assert_array_equal(_bits(dx), _bits(ref))


def test_max_pool_under_vmap_and_grad_of_a_loss():
    x, kg = _inputs((3, 2, 16, 16, 4), ties=True, seed=1)
    w = jax.random.normal(kg, (3, 2, 8, 8, 4))

    def loss(pool):
        return lambda x: jnp.sum(jnp.tanh(jax.vmap(pool)(x)) * w)

    got = jax.jit(jax.grad(loss(lambda x: max_pool(x, (3, 3), (2, 2), "SAME"))))(x)
    ref = jax.jit(jax.grad(loss(lambda x: nn.max_pool(x, (3, 3), (2, 2), "SAME"))))(x)
    np.testing.assert_array_equal(_bits(got), _bits(ref))


def test_max_pool_rejects_bad_inputs():
    with pytest.raises(ValueError, match="padding"):
        max_pool(jnp.zeros((1, 4, 4, 1)), (2, 2), (2, 2), "FULL")
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        max_pool(jnp.zeros((4, 4, 1)), (2, 2), (2, 2), "VALID")
    with pytest.raises(ValueError, match="does not fit"):
        max_pool(jnp.zeros((1, 1, 4, 1)), (2, 2), (2, 2), "VALID")
