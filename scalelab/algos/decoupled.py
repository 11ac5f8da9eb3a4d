"""The policy phase of every algorithm but plain clipped PPO: decoupled-objective minibatch epochs.

One *iteration* (a trainer update) of PPO with the KL objective, PPO-EWMA, PPG or PPG-EWMA on a
rollout batch:

- "ppo", "ppo_ewma": `update_epochs` epochs of minibatch steps on the joint loss
  L_pi + vf_coef L_V - ent_coef H with one Adam (as plain PPO).
- "ppg", "ppg_ewma": `value_epochs` epochs on the value loss alone, stepping only the value
  tower with its own Adam, then `update_epochs` epochs on L_pi - ent_coef H stepping only the
  policy tower (and the auxiliary head) with another Adam (PPG's policy phase; the auxiliary
  phase is `scalelab.algos.ppg`).

The proximal policy is the rollout's (behaviour) policy in the plain variants and the EWMA of
the weights in the -EWMA ones, whose average folds in the parameters after every policy step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from scalelab.algos import ALGORITHMS, ppo
from scalelab.algos.ewma import EwmaState, ewma_update
from scalelab.algos.objectives import PolicyCoefs, policy_objective

Params = Any

ALGOS = tuple(ALGORITHMS)
PARTS = ("all", "policy", "value")


def is_ewma(algo: str) -> bool:
    """Whether `algo` uses an EWMA of the weights as its proximal policy."""
    return ALGORITHMS[algo].ewma


def is_phasic(algo: str) -> bool:
    """Whether `algo` is a PPG variant (separate policy/value steps, an auxiliary phase)."""
    return ALGORITHMS[algo].phasic


class StepInfo(NamedTuple):
    """Diagnostics of one minibatch step: the loss terms, the pre-clip gradient norm and the
    mean exact KL(π_prox‖π) over the minibatch's states (0 where π_prox is only known at the
    taken actions)."""

    loss: ppo.LossInfo
    grad_norm: jax.Array
    prox_kl: jax.Array


def decoupled_loss(
    params: Params,
    apply_fn: ppo.ApplyFn,
    batch: ppo.Batch,
    prox_log_probs_all: jax.Array | None,
    objective: str,
    coefs: ppo.LossCoefs,
    policy_coefs: PolicyCoefs,
    part: str = "all",
) -> tuple[jax.Array, tuple[ppo.LossInfo, jax.Array]]:
    """Loss of one minibatch (to minimize) and its diagnostics (LossInfo, prox KL).

    part "all": L_pi + vf_coef L_V - ent_coef H; "policy": L_pi - ent_coef H; "value":
    vf_coef L_V. L_pi is `policy_objective` (advantages normalized over the minibatch), L_V the
    clipped value loss of `ppo.clipped_value_loss` (ε = clip_eps), H the mean entropy. Terms a
    part leaves out are reported as 0 and not computed, so e.g. a policy step never evaluates the
    value tower. approx_kl is PPO's estimate mean((ρ-1) - log ρ) of KL(π_b‖π), ρ = π/π_b.
    """
    if part not in PARTS:
        raise ValueError(f"part: {part!r} is not one of {PARTS}")
    logits, values = apply_fn(params, batch.obs)
    zero = jnp.zeros((), jnp.float32)
    policy_loss = entropy = approx_kl = clip_frac = prox_kl = value_loss = zero
    total = zero
    if part in ("all", "policy"):
        log_probs_all = jax.nn.log_softmax(logits)
        terms = policy_objective(
            log_probs_all, batch.actions, batch.old_log_probs, prox_log_probs_all,
            ppo.normalize_advantages(batch.advantages), objective, policy_coefs,
        )
        log_probs = jnp.take_along_axis(log_probs_all, batch.actions[:, None], axis=-1)[:, 0]
        log_ratio = log_probs - batch.old_log_probs
        approx_kl = (jnp.expm1(log_ratio) - log_ratio).mean()
        entropy = ppo.categorical_entropy(log_probs_all)
        policy_loss, clip_frac, prox_kl = terms.loss, terms.clip_frac, terms.kl
        total = policy_loss - coefs.ent_coef * entropy
    if part in ("all", "value"):
        value_loss = ppo.clipped_value_loss(
            values, batch.old_values, batch.returns, coefs.clip_eps
        )
        total = total + coefs.vf_coef * value_loss
    info = ppo.LossInfo(total, policy_loss, value_loss, entropy, approx_kl, clip_frac)
    return total, (info, prox_kl)


class PhaseConfig(NamedTuple):
    """Static structure of a policy phase: algorithm, objective, epochs and minibatches."""

    algo: str
    objective: str
    update_epochs: int
    value_epochs: int
    num_minibatches: int


def policy_phase(
    cfg: PhaseConfig,
    params: Params,
    opt_state: Any,
    ewma: EwmaState | None,
    batch: ppo.Batch,
    key: jax.Array,
    apply_fn: ppo.ApplyFn,
    optimizers: dict[str, optax.GradientTransformation],
    coefs: ppo.LossCoefs,
    policy_coefs: PolicyCoefs,
    ewma_decay: jax.Array | float,
    lr: jax.Array | float,
    max_grad_norm: jax.Array | float,
) -> tuple[Params, Any, EwmaState | None, StepInfo]:
    """One iteration's minibatch epochs on `batch` (n samples); see the module docstring.

    optimizers: {"all": ...} for the PPO variants (opt_state is its state) or {"policy": ...,
    "value": ...} for PPG (opt_state a dict with those keys; other keys pass through). `ewma` is
    required (and returned updated) exactly for the -EWMA algorithms. Returns params, opt_state,
    ewma and the mean diagnostics (for PPG: value terms from the value epochs, the rest from the
    policy epochs; grad_norm the mean over all steps).
    """
    if is_ewma(cfg.algo) != (ewma is not None):
        raise ValueError(f"algo {cfg.algo!r}: an EWMA state is needed exactly for -EWMA algos")
    behaviour_params = params
    grad_fn = jax.value_and_grad(decoupled_loss, has_aux=True)

    def prox_log_probs(ewma: EwmaState | None, obs: jax.Array) -> jax.Array | None:
        if ewma is not None:
            return jax.nn.log_softmax(apply_fn(ewma.params, obs)[0])
        if cfg.objective == "kl":
            return jax.nn.log_softmax(apply_fn(behaviour_params, obs)[0])
        return None

    def make_step(part: str, opt_key: str):
        optimizer = optimizers[opt_key]

        def step(carry, mb: ppo.Batch):
            params, opt_states, ewma = carry
            prox = None if part == "value" else prox_log_probs(ewma, mb.obs)
            (_, (info, prox_kl)), grads = grad_fn(
                params, apply_fn, mb, prox, cfg.objective, coefs, policy_coefs, part
            )
            params, opt_state, norm = ppo.gradient_step(
                params, opt_states[opt_key], grads, optimizer, lr, max_grad_norm
            )
            if ewma is not None and part != "value":
                ewma = ewma_update(ewma, params, ewma_decay)
            return (params, {**opt_states, opt_key: opt_state}, ewma), StepInfo(
                info, norm, prox_kl
            )

        return step

    if not is_phasic(cfg.algo):
        (params, opt_states, ewma), info = ppo.run_epochs(
            make_step("all", "all"), (params, {"all": opt_state}, ewma), batch, key,
            cfg.update_epochs, cfg.num_minibatches,
        )
        return params, opt_states["all"], ewma, info

    keys = jax.random.split(key, 2)
    (params, opt_state, ewma), value_info = ppo.run_epochs(
        make_step("value", "value"), (params, opt_state, ewma), batch, keys[0],
        cfg.value_epochs, cfg.num_minibatches,
    )
    (params, opt_state, ewma), info = ppo.run_epochs(
        make_step("policy", "policy"), (params, opt_state, ewma), batch, keys[1],
        cfg.update_epochs, cfg.num_minibatches,
    )
    steps_v, steps_pi = cfg.value_epochs, cfg.update_epochs
    loss = info.loss._replace(
        value=value_info.loss.value,
        total=info.loss.total + value_info.loss.total,
    )
    grad_norm = (steps_v * value_info.grad_norm + steps_pi * info.grad_norm) / (steps_v + steps_pi)
    return params, opt_state, ewma, StepInfo(loss, grad_norm, info.prox_kl)
