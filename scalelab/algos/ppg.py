"""Phasic policy gradient's auxiliary phase: its replay buffer, optimizers and update epochs.

PPG (Cobbe, Hilton, Klimov & Schulman 2020) alternates a policy phase of N_π iterations
(`scalelab.algos.decoupled.policy_phase`) with an auxiliary phase that revisits the N_π rollouts
kept in a buffer for E_aux epochs, minimizing

    L_aux = β_clone · mean_s KL(π_pre(.|s) ‖ π(.|s)) + ½ mean (V_aux(s) - R)² + ½ mean (V(s) - R)²

where π_pre is the policy before the phase, V_aux an auxiliary value head on the policy tower
(so the policy's features learn from value targets while cloning keeps the policy itself in
place), V the true value tower and R the GAE returns computed when each rollout was collected.
Parameters split into a policy part (policy tower, its head, the auxiliary head) and a value
part (`value_encoder` and `value_head`), as `scalelab.networks.TOWERS` assigns them
(`param_labels`); the policy phase steps each part with its own Adam, the auxiliary phase steps
both with a third.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax import lax

from scalelab.algos import ppo
from scalelab.algos.objectives import categorical_kl
from scalelab.networks import param_labels

Params = Any
AuxApplyFn = Callable[[Params, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]


def check_phasic_params(params: Params) -> None:
    """Raise ValueError unless params have both a value part and a policy part."""
    labels = set(jax.tree.leaves(param_labels(params)))
    if labels != {"policy", "value"}:
        raise ValueError(
            "PPG needs separate policy and value towers (the modules of "
            f"scalelab.networks.TOWERS); found parts {sorted(labels)}"
        )


def phasic_optimizers(adam_eps: float) -> dict[str, optax.GradientTransformation]:
    """Adam over the policy part only ("policy"), the value part only ("value"), and all
    parameters ("aux"). The first two hold no state for, and never move, the other part."""
    adam = ppo.adam(adam_eps)
    frozen = optax.set_to_zero()
    return {
        "policy": optax.multi_transform({"policy": adam, "value": frozen}, param_labels),
        "value": optax.multi_transform({"policy": frozen, "value": adam}, param_labels),
        "aux": adam,
    }


class AuxBuffer(struct.PyTreeNode):
    """The N_π most recent rollouts: obs (N_π, n, *obs_shape) in the env's dtype (uint8 for
    images) and their GAE returns (N_π, n) float32, n = num_envs * rollout_length."""

    obs: jax.Array
    returns: jax.Array


def aux_buffer_init(n_pi: int, batch_size: int, obs_shape: tuple[int, ...], obs_dtype: Any
                    ) -> AuxBuffer:
    """An all-zero buffer of N_π rollouts of `batch_size` samples each."""
    return AuxBuffer(
        obs=jnp.zeros((n_pi, batch_size, *obs_shape), obs_dtype),
        returns=jnp.zeros((n_pi, batch_size), jnp.float32),
    )


def aux_buffer_bytes(n_pi: int, batch_size: int, obs_shape: tuple[int, ...], obs_dtype: Any
                     ) -> int:
    """Bytes of one member's buffer: N_π · n · (prod(obs_shape) · itemsize + 4).

    E.g. Procgen at PPG's defaults (N_π 32, 64 envs x 256 steps, 64x64x3 uint8): 6.44e9.
    """
    per_sample = int(np.prod(obs_shape)) * np.dtype(obs_dtype).itemsize + 4
    return n_pi * batch_size * per_sample


def aux_buffer_store(buffer: AuxBuffer, slot: jax.Array, obs: jax.Array, returns: jax.Array
                     ) -> AuxBuffer:
    """Write one rollout's obs (n, *obs_shape) and returns (n,) into row `slot` (traced int)."""
    return AuxBuffer(
        obs=lax.dynamic_update_index_in_dim(buffer.obs, obs.astype(buffer.obs.dtype), slot, 0),
        returns=lax.dynamic_update_index_in_dim(buffer.returns, returns, slot, 0),
    )


class AuxInfo(NamedTuple):
    """Diagnostics of one auxiliary phase (scalars): KL(π_pre‖π) at the first step (0 by
    construction) and after the last, means over all steps of the KL, the auxiliary and true
    value losses and the pre-clip gradient norm."""

    kl_start: jax.Array
    kl_end: jax.Array
    kl: jax.Array
    aux_value_loss: jax.Array
    value_loss: jax.Array
    grad_norm: jax.Array


def aux_loss(
    params: Params,
    aux_apply_fn: AuxApplyFn,
    obs: jax.Array,
    returns: jax.Array,
    pre_log_probs_all: jax.Array,
    beta_clone: jax.Array | float,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    """L_aux of one minibatch (module docstring) and its (KL, aux value loss, value loss)."""
    logits, value, aux_value = aux_apply_fn(params, obs)
    kl = categorical_kl(pre_log_probs_all, jax.nn.log_softmax(logits)).mean()
    aux_value_loss = 0.5 * jnp.square(aux_value - returns).mean()
    value_loss = 0.5 * jnp.square(value - returns).mean()
    return beta_clone * kl + aux_value_loss + value_loss, (kl, aux_value_loss, value_loss)


def aux_phase(
    params: Params,
    opt_state: optax.OptState,
    buffer: AuxBuffer,
    key: jax.Array,
    aux_apply_fn: AuxApplyFn,
    optimizer: optax.GradientTransformation,
    beta_clone: jax.Array | float,
    lr: jax.Array | float,
    max_grad_norm: jax.Array | float,
    epochs: int,
    num_minibatches: int,
) -> tuple[Params, optax.OptState, AuxInfo]:
    """E_aux = `epochs` passes over the buffer's N_π·n samples in random minibatches.

    π_pre is evaluated once, minibatch by minibatch, before the first step. Minibatches gather
    their rows from the buffer by index, so the (large) buffer is never copied or permuted.
    N_π·n must be divisible by num_minibatches.
    """
    n_pi, n = buffer.returns.shape
    total = n_pi * n
    obs = buffer.obs.reshape(total, *buffer.obs.shape[2:])
    returns = buffer.returns.reshape(total)
    mb_obs = obs.reshape(num_minibatches, total // num_minibatches, *obs.shape[1:])
    pre = lax.map(lambda o: jax.nn.log_softmax(aux_apply_fn(params, o)[0]), mb_obs)
    pre = pre.reshape(total, pre.shape[-1])
    grad_fn = jax.value_and_grad(aux_loss, has_aux=True)

    def step(carry, idx):
        params, opt_state = carry
        (_, terms), grads = grad_fn(
            params, aux_apply_fn, obs[idx], returns[idx], pre[idx], beta_clone
        )
        params, opt_state, norm = ppo.gradient_step(
            params, opt_state, grads, optimizer, lr, max_grad_norm
        )
        return (params, opt_state), (*terms, norm)

    def epoch(carry, epoch_key):
        perm = jax.random.permutation(epoch_key, total).reshape(num_minibatches, -1)
        return lax.scan(step, carry, perm)

    (params, opt_state), (kl, aux_v, v, norm) = lax.scan(
        epoch, (params, opt_state), jax.random.split(key, epochs)
    )
    last_idx = jnp.arange(total // num_minibatches)
    kl_end = categorical_kl(
        pre[last_idx], jax.nn.log_softmax(aux_apply_fn(params, obs[last_idx])[0])
    ).mean()
    info = AuxInfo(kl.reshape(-1)[0], kl_end, kl.mean(), aux_v.mean(), v.mean(), norm.mean())
    return params, opt_state, info
