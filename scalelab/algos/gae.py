"""Generalized advantage estimation GAE(γ, λ) over a time-major rollout, truncation-aware."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: jax.Array | float,
    gae_lambda: jax.Array | float,
) -> tuple[jax.Array, jax.Array]:
    """Advantages and value targets of a rollout of T steps over B environments.

    All arrays are time-major, shape (T, B): `rewards[t]` is r_t, `values[t]` is V(s_t) and
    `next_values[t]` is V(s'_t), the value of the state the step *reached* before any auto-reset
    (for gymnax envs: the value of `info["final_observation"]`). `terminated[t]` marks a true
    terminal s'_t (no bootstrap); `done[t]` = terminated or truncated marks where the episode
    ended, so the advantage recursion must not look past it. A truncated step still bootstraps
    from V(s'_t). With these,

        δ_t = r_t + γ (1 - terminated_t) V(s'_t) - V(s_t)
        A_t = δ_t + γ λ (1 - done_t) A_{t+1},     A_T = 0
        returns_t = A_t + V(s_t)

    `gamma` and `gae_lambda` are scalars (may be traced). Returns (advantages, returns), both
    (T, B) float32.
    """
    not_term = 1.0 - terminated.astype(jnp.float32)
    not_done = 1.0 - done.astype(jnp.float32)
    deltas = rewards + gamma * not_term * next_values - values
    decay = gamma * gae_lambda * not_done

    def backward(carry: jax.Array, x: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        delta, dec = x
        adv = delta + dec * carry
        return adv, adv

    _, advantages = lax.scan(
        backward, jnp.zeros_like(deltas[0]), (deltas, decay), reverse=True
    )
    return advantages, advantages + values
