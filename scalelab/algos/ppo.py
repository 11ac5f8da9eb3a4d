"""Clipped PPO: the loss, one clipped-Adam gradient step, and epochs of minibatch updates.

Everything here is a pure function of one member's arrays; the trainer vmaps it over members, so
every scalar hyperparameter (lr, clip range, coefficients) may be a traced per-member value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

Params = Any
ApplyFn = Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]

_ADV_EPS = 1e-8


class Batch(NamedTuple):
    """Flat training samples, leading axis n: obs (n, *obs_shape), actions (n,) int32,
    old_log_probs (n,), old_values (n,), advantages (n,), returns (n,) (all float32 but obs)."""

    obs: jax.Array
    actions: jax.Array
    old_log_probs: jax.Array
    old_values: jax.Array
    advantages: jax.Array
    returns: jax.Array


class LossCoefs(NamedTuple):
    """Scalar loss hyperparameters (float32, possibly traced per member)."""

    clip_eps: jax.Array | float
    vf_coef: jax.Array | float
    ent_coef: jax.Array | float


class LossInfo(NamedTuple):
    """Diagnostics of one loss evaluation (scalars): total, policy, value, entropy, KL, clip."""

    total: jax.Array
    policy: jax.Array
    value: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_frac: jax.Array


def normalize_advantages(adv: jax.Array) -> jax.Array:
    """(adv - mean) / (std + 1e-8) over the whole minibatch (population std)."""
    return (adv - adv.mean()) / (adv.std() + _ADV_EPS)


def categorical_entropy(log_probs_all: jax.Array) -> jax.Array:
    """Mean entropy of categorical distributions given their log-probs (n, A): mean -Σ p log p."""
    return -jnp.sum(jnp.exp(log_probs_all) * log_probs_all, axis=-1).mean()


def clipped_value_loss(
    values: jax.Array, old_values: jax.Array, returns: jax.Array, eps: jax.Array | float
) -> jax.Array:
    """mean( 0.5 max((V - R)², (V_old + clip(V - V_old, -ε, ε) - R)²) ) over samples (n,)."""
    values_clipped = old_values + jnp.clip(values - old_values, -eps, eps)
    return 0.5 * jnp.maximum(
        jnp.square(values - returns), jnp.square(values_clipped - returns)
    ).mean()


def ppo_loss(
    params: Params, apply_fn: ApplyFn, batch: Batch, coefs: LossCoefs
) -> tuple[jax.Array, LossInfo]:
    """Clipped PPO loss of one minibatch (to minimize) and its diagnostics.

    With ρ = π(a|s) / π_old(a|s), Â the minibatch-normalized advantage, ε = clip_eps,
    V the new value, V_old the rollout's value and R the GAE return:

        L_pi = mean( -min(ρ Â, clip(ρ, 1-ε, 1+ε) Â) )
        L_V  = mean( 0.5 max((V - R)², (V_old + clip(V - V_old, -ε, ε) - R)²) )
        H    = mean( entropy of π(.|s) )
        L    = L_pi + vf_coef L_V - ent_coef H

    The value loss is clipped like PureJaxRL/baselines (the reference whose CartPole numbers we
    benchmark against). approx_kl = mean((ρ - 1) - log ρ) (an unbiased, non-negative estimate of
    KL(π_old‖π)); clip_frac = fraction of samples with |ρ - 1| > ε.
    """
    logits, values = apply_fn(params, batch.obs)
    log_probs_all = jax.nn.log_softmax(logits)
    log_probs = jnp.take_along_axis(log_probs_all, batch.actions[:, None], axis=-1)[:, 0]
    entropy = categorical_entropy(log_probs_all)

    log_ratio = log_probs - batch.old_log_probs
    ratio = jnp.exp(log_ratio)
    adv = normalize_advantages(batch.advantages)
    eps = coefs.clip_eps
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - eps, 1.0 + eps) * adv)
    policy_loss = -surrogate.mean()

    value_loss = clipped_value_loss(values, batch.old_values, batch.returns, eps)

    total = policy_loss + coefs.vf_coef * value_loss - coefs.ent_coef * entropy
    approx_kl = ((ratio - 1.0) - log_ratio).mean()
    clip_frac = (jnp.abs(ratio - 1.0) > eps).astype(jnp.float32).mean()
    return total, LossInfo(total, policy_loss, value_loss, entropy, approx_kl, clip_frac)


def adam(adam_eps: float) -> optax.GradientTransformation:
    """Adam's moment scaling (β = 0.9, 0.999) without a step size; the trainer applies -lr."""
    return optax.scale_by_adam(eps=adam_eps)


def clip_by_global_norm(grads: Params, max_norm: jax.Array | float) -> tuple[Params, jax.Array]:
    """Scale grads by min(1, max_norm / ‖g‖₂) (‖g‖ over all leaves); returns (grads, ‖g‖)."""
    norm = optax.tree.norm(grads)
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
    return jax.tree.map(lambda g: g * scale, grads), norm


def gradient_step(
    params: Params,
    opt_state: optax.OptState,
    grads: Params,
    optimizer: optax.GradientTransformation,
    lr: jax.Array | float,
    max_grad_norm: jax.Array | float,
) -> tuple[Params, optax.OptState, jax.Array]:
    """θ ← θ - lr · Adam(clip(g)); returns (params, opt_state, pre-clip gradient norm).

    Not optax.chain(clip_by_global_norm, inject_hyperparams(adam)): lr and max_grad_norm are
    traced per member and the pre-clip norm is a logged metric, so the clip (which returns the
    norm) and the -lr scaling stay outside the Adam transformation, whose state holds no lr."""
    grads, norm = clip_by_global_norm(grads, max_grad_norm)
    direction, opt_state = optimizer.update(grads, opt_state, params)
    params = jax.tree.map(lambda p, d: p - lr * d, params, direction)
    return params, opt_state, norm


def shuffle_minibatches(key: jax.Array, batch: Batch, num_minibatches: int) -> Batch:
    """A random partition of the n samples into num_minibatches of n/num_minibatches each:
    every field reshaped from (n, ...) to (num_minibatches, n/num_minibatches, ...)."""
    n = batch.actions.shape[0]
    perm = jax.random.permutation(key, n)
    return jax.tree.map(
        lambda x: jnp.take(x, perm, axis=0).reshape(num_minibatches, -1, *x.shape[1:]), batch
    )


class UpdateInfo(NamedTuple):
    """Means over all epochs and minibatches of one PPO update (scalars)."""

    loss: LossInfo
    grad_norm: jax.Array


def ppo_update(
    params: Params,
    opt_state: optax.OptState,
    batch: Batch,
    key: jax.Array,
    apply_fn: ApplyFn,
    optimizer: optax.GradientTransformation,
    coefs: LossCoefs,
    lr: jax.Array | float,
    max_grad_norm: jax.Array | float,
    update_epochs: int,
    num_minibatches: int,
) -> tuple[Params, optax.OptState, UpdateInfo]:
    """`update_epochs` passes over `batch` (n samples), each split into random minibatches.

    Every epoch draws a fresh permutation of the n samples from `key` (split per epoch);
    n must be divisible by num_minibatches. Returns the new params, optimizer state and the
    mean diagnostics.
    """
    grad_fn = jax.value_and_grad(ppo_loss, has_aux=True)

    def minibatch_step(carry, mb: Batch):
        params, opt_state = carry
        (_, info), grads = grad_fn(params, apply_fn, mb, coefs)
        params, opt_state, norm = gradient_step(
            params, opt_state, grads, optimizer, lr, max_grad_norm
        )
        return (params, opt_state), UpdateInfo(info, norm)

    (params, opt_state), info = run_epochs(
        minibatch_step, (params, opt_state), batch, key, update_epochs, num_minibatches
    )
    return params, opt_state, info


def run_epochs(
    step: Callable[[Any, Batch], tuple[Any, Any]],
    carry: Any,
    batch: Batch,
    key: jax.Array,
    epochs: int,
    num_minibatches: int,
) -> tuple[Any, Any]:
    """`epochs` passes of `step(carry, minibatch) -> (carry, info)` over random minibatches.

    Every epoch draws a fresh permutation of the batch's n samples from `key` (split per epoch)
    and scans `step` over its num_minibatches minibatches. Returns the final carry and the mean
    of `info` over all epochs and minibatches.
    """

    def epoch(carry, epoch_key):
        return lax.scan(step, carry, shuffle_minibatches(epoch_key, batch, num_minibatches))

    carry, infos = lax.scan(epoch, carry, jax.random.split(key, epochs))
    return carry, jax.tree.map(jnp.mean, infos)
