"""2-D convolution computed by XLA, with its gradients computed as matmuls.

On XLA:CPU a convolution's gradients inside a ``lax.scan`` body (where the trainer runs its
minibatch steps) compile to plain loop emitters. For the kernel gradient: for the IMPALA CNN at
width 1/4 the scan of 8 minibatch steps took 12.5 s against 3.0 s for the same steps as top-level
calls (``benchmarks/scan_vs_steps.py``). For the input gradient (the autodiff transpose, a
convolution with the kernel's in and out features swapped) inside a scan of minibatch steps,
64 16x16 images of 32 channels took 59.6 ms per step against 4.1 ms as per-tap matmuls, 128
32x32 images of 16 channels 97.5 against 19.8 ms, and per tap was 1.2-15x faster on every layer
shape measured (``benchmarks/input_grad.py``). Written as sums over taps both gradients are a
handful of matmuls, which XLA runs as library calls anywhere. For a stride-1 convolution
y = conv(x, K) with output cotangent g and x_pad x zero-padded as XLA pads for the convolution:

    dK[i, j] = sum over b, h, w of x_pad[b, h + i, w + j, :]^T g[b, h, w, :]    ([C_in, C_out])
    dx_pad[b, h + i, w + j, :] += g[b, h, w, :] K[i, j]^T      (per tap, ``input_grad``)

The values are XLA's own (the ``lax`` convolution), bit for bit; both gradients sum the same
products as XLA's in another order (equal up to float rounding).

Two ways of taking a kernel gradient are here, chosen per layer by ``kernel_grad``:

- per tap (``kernel_grad_taps``): kh*kw matmuls as above, each contracting all B*H_out*W_out
  positions into a (C_in x C_out) block. With few channels each is a memory-bound pass over the
  input and the cotangent: on the quickstart's 9 fused MNIST members (28x28 input, 5x5 kernel,
  one channel each) the 25 passes took 139 ms against 42 ms by rows (load 1.7,
  ``benchmarks/results/kernel_grad.jsonl``);
- by rows (``kernel_grad_rows``): one matmul per kernel row i, contracting the B*H_out output
  rows, M_i[w', c, w, o] = sum over b, h of x_pad[b, h + i, w', c] g[b, h, w, o], then
  dK[i, j] = sum over w of M_i[w + j, :, w, :] (a diagonal). It does W_pad / kw times the
  multiply-adds but in kh large matmuls. ``kernel_grad`` takes it while C_in * C_out <=
  ROWS_MAX_CHANNELS: in ``benchmarks/kernel_grad.py`` it was faster than per tap on every such
  layer shape of the networks but IMPALA's first conv at width 1/4 (9.0 against 8.3 ms); on
  the wider ones measured it was faster at 64 and 2048 channel pairs and slower at 48 and 256,
  so the cut-off leaves them per tap.

"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

# kernel gradients by rows up to this C_in * C_out, per tap above it (module docstring)
ROWS_MAX_CHANNELS = 32


def kernel_grad_taps(x_pad: jax.Array, g: jax.Array, kh: int, kw: int) -> jax.Array:
    """dK [kh, kw, C_in, C_out] of a stride-1 VALID convolution of x_pad [B, H, W, C_in] with
    output cotangent g [B, H_out, W_out, C_out]: one matmul per tap."""
    h_out, w_out = g.shape[1:3]
    over_positions = (((0, 1, 2), (0, 1, 2)), ((), ()))
    taps = [lax.dot_general(x_pad[:, i : i + h_out, j : j + w_out], g, over_positions)
            for i in range(kh) for j in range(kw)]
    return jnp.stack(taps).reshape(kh, kw, *taps[0].shape)


def kernel_grad_rows(x_pad: jax.Array, g: jax.Array, kh: int, kw: int) -> jax.Array:
    """The same dK as ``kernel_grad_taps``: one matmul per kernel row, then diagonals."""
    h_out, w_out = g.shape[1:3]
    over_rows = (((0, 1), (0, 1)), ((), ()))
    rows = []
    for i in range(kh):
        m = lax.dot_general(x_pad[:, i : i + h_out], g, over_rows)  # [W_pad, C_in, W_out, C_out]
        # diagonal -j of (W_pad, W_out): m[w + j, :, w, :] for w < W_out, as [C_in, C_out, W_out]
        rows.append(jnp.stack([jnp.diagonal(m, -j, 0, 2).sum(-1) for j in range(kw)]))
    return jnp.stack(rows)


def kernel_grad(x: jax.Array, g: jax.Array, kernel_shape: tuple[int, ...],
                padding: str) -> jax.Array:
    """dK of the stride-1 convolution y = conv(x, K, padding) ("VALID" or "SAME", XLA's pads)
    with output cotangent g: by rows while C_in * C_out <= ROWS_MAX_CHANNELS, else per tap."""
    kh, kw, c_in, c_out = kernel_shape
    pads = lax.padtype_to_pads(x.shape[1:3], (kh, kw), (1, 1), padding)
    x_pad = jnp.pad(x, [(0, 0), *pads, (0, 0)])
    by_rows = c_in * c_out <= ROWS_MAX_CHANNELS
    return (kernel_grad_rows if by_rows else kernel_grad_taps)(x_pad, g, kh, kw)


def input_grad(g: jax.Array, kernel: jax.Array, x_shape: tuple[int, ...],
               padding: str) -> jax.Array:
    """dx [B, H, W, C_in] of the stride-1 convolution y = conv(x, K, padding) ("VALID" or
    "SAME", XLA's pads) with output cotangent g [B, H_out, W_out, C_out]: one matmul per tap,
    g @ K[i, j]^T, placed at offset (i, j) of x_pad and cropped to x (``lax.pad`` with the
    negative pads of the crop), the taps summed in row-major order."""
    kh, kw = kernel.shape[:2]
    (lo_h, hi_h), (lo_w, hi_w) = lax.padtype_to_pads(x_shape[1:3], (kh, kw), (1, 1), padding)
    zero = jnp.zeros((), g.dtype)
    dx = None
    for i in range(kh):
        for j in range(kw):
            tap = lax.dot_general(g, kernel[i, j], (((3,), (1,)), ((), ())))  # [B, Ho, Wo, C_in]
            placed = lax.pad(tap, zero, [(0, 0, 0), (i - lo_h, kh - 1 - i - hi_h, 0),
                                         (j - lo_w, kw - 1 - j - hi_w, 0), (0, 0, 0)])
            dx = placed if dx is None else dx + placed
    return dx


def lax_conv(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
    """``lax.conv_general_dilated`` stride 1, NHWC/HWIO: what ``conv_tap_grad`` computes."""
    return lax.conv_general_dilated(
        x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_tap_grad(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
    """Stride-1 2-D convolution (cross-correlation) of x [B, H, W, C_in] with ``kernel``
    [kh, kw, C_in, C_out] -> [B, H_out, W_out, C_out], no bias; the same values as
    ``lax.conv_general_dilated(x, kernel, (1, 1), padding)`` in NHWC/HWIO ("VALID" or "SAME").
    Reverse-mode only (a custom VJP): the input gradient is ``input_grad``, the kernel gradient
    ``kernel_grad`` (module docstring).
    """
    return lax_conv(x, kernel, padding)


def _fwd(x, kernel, padding):
    return lax_conv(x, kernel, padding), (x, kernel)


def _bwd(padding, residuals, g):
    x, kernel = residuals
    return input_grad(g, kernel, x.shape, padding), kernel_grad(x, g, kernel.shape, padding)


conv_tap_grad.defvjp(_fwd, _bwd)
