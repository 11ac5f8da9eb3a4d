"""Bias-corrected exponentially weighted moving average (EWMA) of parameters.

PPO-EWMA and PPG-EWMA (Hilton, Cobbe & Schulman 2021) use such an average of the policy's
weights as the *proximal* policy. After t updates θ_1 … θ_t of a start θ_0 (the last reset),

    θ̄_t = Σ_{k=0}^{t} β^{t-k} θ_k  /  Σ_{k=0}^{t} β^{t-k}

with decay β ∈ [0, 1). Dividing by the weight sum is the bias correction: a fresh average is θ_0
itself, not θ_0 scaled towards zero. It is kept recursively as (θ̄, W) with W_0 = 1:

    W_t = β W_{t-1} + 1,     θ̄_t = (β W_{t-1} / W_t) θ̄_{t-1} + θ_t / W_t.

With β = 0 the average is the latest parameters. The centre of mass (mean age, in updates) of a
long-running average is β / (1 - β): β ≈ 0.889 gives 8.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

Params = Any


class EwmaState(struct.PyTreeNode):
    """The average θ̄ (a params pytree, float32) and its weight sum W (scalar float32)."""

    params: Params
    weight: jax.Array


def ewma_init(params: Params) -> EwmaState:
    """A fresh average of `params` alone (W = 1); also what a reset gives."""
    return EwmaState(params=params, weight=jnp.ones((), jnp.float32))


def ewma_update(state: EwmaState, params: Params, decay: jax.Array | float) -> EwmaState:
    """Fold the new parameters θ_t into the average with decay β (may be traced)."""
    weight = decay * state.weight + 1.0
    keep = decay * state.weight / weight
    averaged = jax.tree.map(lambda a, p: keep * a + p / weight, state.params, params)
    return EwmaState(params=averaged, weight=weight)


def center_of_mass(decay: float) -> float:
    """Mean age in updates, β / (1 - β), of a long-running average with decay β."""
    return decay / (1.0 - decay)
