"""Uniform random numbers for level generators: one threefry call, handed out by name.

Every `jax.random` call compiles its own threefry kernel, so a generator that needs a dozen
kinds of random numbers compiles several times slower than one that draws them all at once
(measured here: 14 calls ~4.7 s, one call ~0.7 s of XLA CPU compile time).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def uniform_draws(key: jax.Array, shapes: dict[str, tuple[int, ...]]) -> dict[str, jax.Array]:
    """Named float32 arrays of U[0, 1) numbers with the given shapes, from ONE uniform call."""
    sizes = [math.prod(shape) for shape in shapes.values()]
    flat = jax.random.uniform(key, (sum(sizes),))
    out, start = {}, 0
    for (name, shape), size in zip(shapes.items(), sizes, strict=True):
        out[name] = flat[start : start + size].reshape(shape)
        start += size
    return out


def randint(u: jax.Array, low: jax.Array | int, high: jax.Array | int) -> jax.Array:
    """Integers uniform on [low, high) (int32, same shape as u) from uniforms u in [0, 1)."""
    value = low + jnp.floor(u * (high - low)).astype(jnp.int32)
    return jnp.minimum(value, jnp.asarray(high) - 1).astype(jnp.int32)
