"""Policy objectives with a decoupled proximal policy: clipped surrogate or fixed KL penalty.

Following "Batch size-invariance for policy optimization" (Hilton, Cobbe & Schulman 2021), the
"old" policy of PPO plays two roles that are separated here: the *behaviour* policy π_b (which
collected the data) gives the importance weights, and the *proximal* policy π_prox (the rollout's
policy in plain PPO/PPG, an EWMA of the weights in the -EWMA variants) bounds the update size.
With π_prox = π_b both objectives reduce to their textbook forms.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

OBJECTIVES = ("clip", "kl")


class PolicyCoefs(NamedTuple):
    """Scalar objective hyperparameters (possibly traced per member).

    clip_eps: ε of the clipped surrogate; kl_coef: c_KL of the KL penalty; imp_samp_max: cap
    on the importance weight π/π_b (stale data can make it huge; the cap keeps it finite).
    """

    clip_eps: jax.Array | float
    kl_coef: jax.Array | float
    imp_samp_max: jax.Array | float


class PolicyTerms(NamedTuple):
    """The policy loss and diagnostics (scalars): loss, surrogate (the -w·A part), kl (mean
    KL(π_prox‖π) over states), clip_frac (fraction of samples whose π/π_prox left [1-ε, 1+ε])."""

    loss: jax.Array
    surrogate: jax.Array
    kl: jax.Array
    clip_frac: jax.Array


def categorical_kl(p_log_probs: jax.Array, q_log_probs: jax.Array) -> jax.Array:
    """KL(p‖q) = Σ_a p(a) (log p(a) - log q(a)) per row of log-probs (n, A) -> (n,)."""
    return jnp.sum(jnp.exp(p_log_probs) * (p_log_probs - q_log_probs), axis=-1)


def policy_objective(
    log_probs_all: jax.Array,
    actions: jax.Array,
    behaviour_log_probs: jax.Array,
    prox_log_probs_all: jax.Array | None,
    advantages: jax.Array,
    objective: str,
    coefs: PolicyCoefs,
) -> PolicyTerms:
    """Policy loss (to minimize) of n samples under the decoupled objective.

    log_probs_all (n, A): the current policy's log-probs (differentiated); actions (n,);
    behaviour_log_probs (n,): log π_b(a|s); prox_log_probs_all (n, A) or None: the proximal
    policy's log-probs (treated as constants), None meaning π_prox = π_b (then only "clip" is
    possible, as the KL needs the whole distribution); advantages (n,), already normalized.

    With w = π/π_b capped at imp_samp_max (through log π_b ← max(log π_b, log π - log cap), the
    shift held constant), r = π/π_prox and A the advantage:

        clip:  L = mean( max(-A w, -A clip(r, 1-ε, 1+ε) · w / r) )
        kl:    L = mean( -A w ) + c_KL · mean_s KL(π_prox(.|s) ‖ π(.|s))

    w / r = π_prox/π_b is a constant, so clipping r stops the gradient exactly where PPO's does;
    with π_prox = π_b (and w below the cap) "clip" is PPO's -min(ρA, clip(ρ)A). The KL is exact
    (a sum over the A actions), not a sampled estimate.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: {objective!r} is not one of {OBJECTIVES}")
    log_probs = jnp.take_along_axis(log_probs_all, actions[:, None], axis=-1)[:, 0]
    cap = jnp.log(coefs.imp_samp_max)
    behaviour = jnp.maximum(behaviour_log_probs, jax.lax.stop_gradient(log_probs) - cap)
    weighted = -advantages * jnp.exp(log_probs - behaviour)
    if prox_log_probs_all is None:
        if objective == "kl":
            raise ValueError("objective 'kl' needs the proximal policy's log-probs (got None)")
        prox = behaviour_log_probs
    else:
        prox_log_probs_all = jax.lax.stop_gradient(prox_log_probs_all)
        prox = jnp.take_along_axis(prox_log_probs_all, actions[:, None], axis=-1)[:, 0]
    log_ratio = log_probs - prox
    eps = coefs.clip_eps
    lo, hi = jnp.log1p(-eps), jnp.log1p(eps)
    clip_frac = jnp.logical_or(log_ratio < lo, log_ratio > hi).astype(jnp.float32).mean()
    if prox_log_probs_all is None:
        kl = jnp.zeros((), jnp.float32)
    else:
        kl = categorical_kl(prox_log_probs_all, log_probs_all).mean()
    if objective == "clip":
        clipped = -advantages * jnp.exp(jnp.clip(log_ratio, lo, hi) + prox - behaviour)
        surrogate = jnp.maximum(weighted, clipped).mean()
        loss = surrogate
    else:
        surrogate = weighted.mean()
        loss = surrogate + coefs.kl_coef * kl
    return PolicyTerms(loss, surrogate, kl, clip_frac)
