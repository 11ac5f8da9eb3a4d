"""Test helper shared by the network tests: a PPO-like loss whose gradient reaches every layer."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def ppo_like_loss(module: Any, params: Any, obs: jax.Array, actions: jax.Array,
                  adv: jax.Array, returns: jax.Array) -> jax.Array:
    """-mean(log π(a)·A) + ½·mean((V - R)²) - 0.01·mean entropy, for a (logits, value) module."""
    logits, value = module.apply(params, obs)
    logp = jax.nn.log_softmax(logits)
    chosen = jnp.take_along_axis(logp, actions[:, None], axis=1)[:, 0]
    entropy = -jnp.sum(jnp.exp(logp) * logp, axis=1)
    return -jnp.mean(chosen * adv) + 0.5 * jnp.mean((value - returns) ** 2) - 0.01 * entropy.mean()
