"""2-D max-pool whose gradient is dense shifted compares and pads, not XLA's select-and-scatter.

``max_pool(x, window, strides, padding)`` computes what ``flax.linen.max_pool`` (a
``lax.reduce_window`` max) computes, with a ``jax.custom_vjp`` backward that gives bit-identical
gradients to autodiff of ``reduce_window`` for NaN-free inputs. Autodiff transposes the pool into
``select_and_scatter_add`` with ``select = ge`` over x padded with -inf (JAX pads explicitly on
CPU and GPU): in every window the *first* element, in row-major scan order over the window, that
equals the window's max receives the window's cotangent (a padding element too, when the window's
valid elements are all -inf: that cotangent is dropped), and an input position selected by several
overlapping windows accumulates their cotangents in row-major order of the windows, from 0.
XLA:CPU implements that as a scatter with index buffers (165 ms for 128x64x64x16 on the 2-core
CPU, issue 12).

The values are always ``reduce_window``'s: a max over shifted slices was faster under
differentiation, but XLA:CPU's reduce_window returns -0.0 for some windows tying -0.0 and 0.0 where
``lax.max`` in either order returns 0.0. The backward, for a kh x kw window with strides (sh, sw)
over x padded with -inf to x_pad:

    tap t = (a, b) of output (i, j) reads x_pad[sh*i + a, sw*j + b]
    first[i, j] = the smallest t (row-major over the window) with tap_t[i, j] == y[i, j]
    dx_pad = sum over taps t, in *reverse* scan order, of where(first == t, g, 0) placed at
             x_pad positions (sh*i + a, sw*j + b)

The placing is done per phase: x_pad row sh*m + r is row m of phase r, and tap a = sh*q + r of
output i lands on phase r, row i + q, so each phase is a sum of output-sized arrays shifted by
``jnp.pad``; the phases are then interleaved by a stack and reshape. Reverse tap order makes the
nonzero terms at every position arrive in row-major window order, so the floating-point sums are
the same as the scatter's (adding an exact zero changes nothing). Everything is elementwise (no
scatter, no index buffers), so XLA fuses it into a few dense loops. NaN inputs:
reduce_window's gradient goes by ``ge`` comparisons with NaN there; this backward gives such
windows no gradient.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
from jax import lax

Pads = tuple[tuple[int, int], tuple[int, int]]


def _pool_geometry(
    shape: Sequence[int], window: tuple[int, int], strides: tuple[int, int], padding: str
) -> tuple[Pads, tuple[int, int]]:
    """(pads (before, after) of H and W, output H and W) of a [B, H, W, C] pool."""
    if len(shape) != 4:
        raise ValueError(f"max_pool: x of shape {tuple(shape)} is not [B, H, W, C]")
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"max_pool: padding={padding!r}: expected 'SAME' or 'VALID'")
    pads = tuple(lax.padtype_to_pads(shape[1:3], window, strides, padding))
    out = tuple(
        (size + lo + hi - k) // s + 1
        for size, (lo, hi), k, s in zip(shape[1:3], pads, window, strides, strict=True)
    )
    if min(out) < 1:
        raise ValueError(f"max_pool: window {window} does not fit x of shape {tuple(shape)}")
    return pads, out


def _reduce_window_max(
    x: jax.Array, window: tuple[int, int], strides: tuple[int, int], pads: Pads
) -> jax.Array:
    return lax.reduce_window(
        x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(
    x: jax.Array, window: tuple[int, int], strides: tuple[int, int], pads: Pads
) -> jax.Array:
    return _reduce_window_max(x, window, strides, pads)


def _taps(
    x_pad: jax.Array, window: tuple[int, int], strides: tuple[int, int], out: tuple[int, int]
) -> Iterator[tuple[int, jax.Array]]:
    """(t, tap_t) for the window's taps t in row-major order: tap_t[i, j] = x_pad[sh*i + a,
    sw*j + b] with t = a * kw + b, an [B, H_out, W_out, C] strided slice."""
    (kh, kw), (sh, sw) = window, strides
    b, _, _, c = x_pad.shape
    ho, wo = out
    for t in range(kh * kw):
        a, bb = divmod(t, kw)
        limit = (b, a + sh * (ho - 1) + 1, bb + sw * (wo - 1) + 1, c)
        yield t, lax.slice(x_pad, (0, a, bb, 0), limit, (1, sh, sw, 1))


def _max_pool_fwd(x, window, strides, pads):
    y = _reduce_window_max(x, window, strides, pads)
    return y, (x, y)


def _first_max_tap(x_pad, y, window, strides):
    """Index (row-major over the window) of each window's first tap equal to its max y."""
    first = jnp.full(y.shape, window[0] * window[1], jnp.int32)
    for t, tap in reversed(list(_taps(x_pad, window, strides, y.shape[1:3]))):
        first = jnp.where(tap == y, t, first)
    return first


def _max_pool_bwd(window, strides, pads, residuals, g):
    x, y = residuals
    (kh, kw), (sh, sw) = window, strides
    x_pad = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    first = _first_max_tap(x_pad, y, window, strides)
    ho, wo = y.shape[1:3]
    # padded-input row s*m + r is phase r, row m; tap a = s*q + r of output i lands on its row i+q
    mh, mw = -(-x_pad.shape[1] // sh), -(-x_pad.shape[2] // sw)
    zero = jnp.zeros((), g.dtype)
    rows = []
    for rh in range(sh):
        cols = []
        for rw in range(sw):
            phase = jnp.zeros((g.shape[0], mh, mw, g.shape[3]), g.dtype)
            for t in reversed(range(kh * kw)):
                a, bb = divmod(t, kw)
                if a % sh != rh or bb % sw != rw:
                    continue
                qh, qw = a // sh, bb // sw
                part = jnp.where(first == t, g, zero)
                phase = phase + jnp.pad(part, ((0, 0), (qh, mh - qh - ho), (qw, mw - qw - wo),
                                               (0, 0)))
            cols.append(phase)
        rows.append(jnp.stack(cols, axis=3))
    dx_pad = jnp.stack(rows, axis=2).reshape(g.shape[0], mh * sh, mw * sw, g.shape[3])
    (lo_h, hi_h), (lo_w, hi_w) = pads
    return (dx_pad[:, lo_h : x_pad.shape[1] - hi_h, lo_w : x_pad.shape[2] - hi_w],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(
    x: jax.Array, window: tuple[int, int], strides: tuple[int, int], padding: str
) -> jax.Array:
    """Max over kh x kw windows of x [B, H, W, C] float, stride (sh, sw), padding "SAME" or
    "VALID" as XLA pads (SAME: the odd pixel after) -> [B, H_out, W_out, C].

    Same values as ``flax.linen.max_pool(x, window, strides, padding)``; its gradient is the
    dense compare-and-pad backward of the module docstring, bit-equal to autodiff of the
    reduce_window for NaN-free x. Reverse-mode only (a custom VJP: no ``jax.jvp``).
    """
    window, strides = tuple(window), tuple(strides)
    pads, _ = _pool_geometry(x.shape, window, strides, padding)
    return _max_pool(x, window, strides, pads)
