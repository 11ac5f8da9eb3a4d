"""2-D convolution computed by XLA, with its kernel gradient computed as one matmul per kernel tap.

On XLA:CPU a convolution's kernel gradient inside a ``lax.scan`` body (where the trainer runs its
minibatch steps) compiles to a plain loop emitter: for the IMPALA CNN at width 1/4 the scan of 8
minibatch steps took 12.5 s against 3.0 s for the same steps as top-level calls, the kernel
gradients being its heaviest ops (``benchmarks/scan_vs_steps.py``). Written as a sum over taps
the kernel gradient is a handful of matmuls, which XLA runs as library calls anywhere:

    dK[i, j] = sum over b, h, w of x_pad[b, h + i, w + j, :]^T g[b, h, w, :]    ([C_in, C_out])

for a stride-1 convolution y = conv(x, K) with output cotangent g and x_pad x zero-padded as XLA
pads for the convolution. The values and the input gradient are XLA's own (``lax`` convolution
and its autodiff transpose), bit for bit; the kernel gradient sums the same products in another
order (equal up to float rounding).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _conv(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
    return lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_tap_grad(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
    """Stride-1 2-D convolution (cross-correlation) of x [B, H, W, C_in] with ``kernel``
    [kh, kw, C_in, C_out] -> [B, H_out, W_out, C_out], no bias; the same values as
    ``lax.conv_general_dilated(x, kernel, (1, 1), padding)`` in NHWC/HWIO ("VALID" or "SAME").
    Reverse-mode only (a custom VJP); the kernel gradient is per-tap matmuls (module docstring).
    """
    return _conv(x, kernel, padding)


def _fwd(x, kernel, padding):
    return _conv(x, kernel, padding), (x, kernel)


def _bwd(padding, residuals, g):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x: _conv(x, kernel, padding), x)
    (dx,) = input_vjp(g)
    kh, kw = kernel.shape[:2]
    pads = lax.padtype_to_pads(x.shape[1:3], (kh, kw), (1, 1), padding)
    x_pad = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    h_out, w_out = g.shape[1:3]
    over_positions = (((0, 1, 2), (0, 1, 2)), ((), ()))
    taps = [
        lax.dot_general(x_pad[:, i : i + h_out, j : j + w_out], g, over_positions)
        for i in range(kh)
        for j in range(kw)
    ]
    return dx, jnp.stack(taps).reshape(kernel.shape)


conv_tap_grad.defvjp(_fwd, _bwd)
