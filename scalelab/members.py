"""The member-vmapped PPO chunk function: per-member state and hyperparameters, K updates a call.

A *member* is one training run (its own params, optimizer, environments, keys, hyperparameters).
`make_chunk_fn` builds a pure function advancing every member by K PPO updates (rollout, GAE,
epochs of minibatch updates) inside `lax.scan`s, vmapped over a leading member axis, with the
environment's shared read-only data passed once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax import lax

from scalelab.algos import ppo
from scalelab.algos.gae import gae

Params = Any

# Named key streams of a member: its root key is folded with one of these ids, then (for the
# per-update streams) with the update index, so every random draw depends only on the member's
# seed and the update it belongs to.
_STREAM_INIT, _STREAM_ENV, _STREAM_POLICY, _STREAM_MINIBATCH = range(4)


class MemberHparams(struct.PyTreeNode):
    """Per-member traced scalar hyperparameters (float32; leading member axis when batched)."""

    lr: jax.Array
    gamma: jax.Array
    gae_lambda: jax.Array
    clip_eps: jax.Array
    ent_coef: jax.Array
    vf_coef: jax.Array
    max_grad_norm: jax.Array

    @classmethod
    def from_config(cls, config: Any, num_members: int) -> MemberHparams:
        """A config's same-named values (e.g. a TrainConfig's) repeated over `num_members`
        members: every field (num_members,) float32."""
        return cls(**{
            f.name: jnp.full((num_members,), getattr(config, f.name), jnp.float32)
            for f in dataclasses.fields(cls)
        })


class MemberState(struct.PyTreeNode):
    """Everything one member carries between updates (leading member axis when batched).

    params / opt_state: network parameters and Adam moments. env_state / obs: the num_envs
    environments and their current observations (num_envs, *obs_shape). key: the member's root
    key (uint32 (2,)). update_count: updates done (int32). episode_return / episode_length:
    running sums of the unfinished episode in each environment (num_envs,).
    """

    params: Params
    opt_state: optax.OptState
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update_count: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


class UpdateMetrics(NamedTuple):
    """Per-update diagnostics of one member (scalars; (members, K) out of a chunk).

    reward_sum: sum of the rollout's num_envs*rollout_length rewards. episodes: episodes that
    ended (terminated or truncated) in the rollout, with the sums of their returns and lengths.
    The rest are means over the update's epochs and minibatches; lr is the step size used.
    """

    reward_sum: jax.Array
    episodes: jax.Array
    episode_return_sum: jax.Array
    episode_length_sum: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_frac: jax.Array
    grad_norm: jax.Array
    lr: jax.Array


@dataclass(frozen=True)
class ChunkStatic:
    """Compile-time structure of a chunk function: shared by all members it is vmapped over.

    env: a gymnax-API environment; apply_fn(params, obs (n, *obs_shape)) -> (logits (n, A),
    values (n,)). total_updates is the lr-anneal horizon (used when anneal_lr).
    """

    env: Any
    apply_fn: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
    num_envs: int
    rollout_length: int
    update_epochs: int
    num_minibatches: int
    updates_per_chunk: int
    total_updates: int
    anneal_lr: bool = False
    adam_eps: float = 1e-5
    level_seed: int = 0

    def with_updates_per_chunk(self, k: int) -> ChunkStatic:
        """The same structure advancing k updates per call."""
        return dataclasses.replace(self, updates_per_chunk=k)


def member_root_keys(seeds: jax.Array | list[int]) -> jax.Array:
    """Root keys (M, 2) uint32 from integer seeds (M,): PRNGKey(seed), nothing else."""
    return jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))


def init_key(root_key: jax.Array) -> jax.Array:
    """The parameter-initialization key of a member (its root key's init stream)."""
    return jax.random.fold_in(root_key, _STREAM_INIT)


def _stream_key(root_key: jax.Array, stream: int, update: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(root_key, stream), update)


def init_members(
    static: ChunkStatic,
    hparams: MemberHparams,
    keys: jax.Array,
    params: Params,
    env_params: Any = None,
) -> MemberState:
    """Initial state of M members from their root keys (M, 2) and initialized params (leading M).

    Environments are reset from each member's env stream (update index 0), so a member's start
    depends only on its own key. `hparams` must have the same leading member axis. `env_params`
    (shared, unbatched) defaults to the env's `default_params`; pass the ones the chunk will get.
    """
    num_members = keys.shape[0]
    if hparams.lr.shape != (num_members,):
        raise ValueError(
            f"hparams: expected a leading member axis of {num_members} (keys), "
            f"got lr of shape {hparams.lr.shape}"
        )
    optimizer = ppo.adam(static.adam_eps)

    def one(key: jax.Array, p: Params, env_params: Any) -> MemberState:
        reset_keys = jax.random.split(_stream_key(key, _STREAM_ENV, 0), static.num_envs)
        obs, env_state = jax.vmap(static.env.reset, in_axes=(0, None))(reset_keys, env_params)
        return MemberState(
            params=p,
            opt_state=optimizer.init(p),
            env_state=env_state,
            obs=obs,
            key=key,
            update_count=jnp.zeros((), jnp.int32),
            episode_return=jnp.zeros((static.num_envs,), jnp.float32),
            episode_length=jnp.zeros((static.num_envs,), jnp.int32),
        )

    if env_params is None:
        env_params = static.env.default_params
    # One compiled program rather than hundreds of eagerly dispatched small ops (faster, and
    # eager dispatch of this many ops has been seen to deadlock jax 0.10's CPU client).
    return jax.jit(jax.vmap(one, in_axes=(0, 0, None)))(keys, params, env_params)


class _Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    next_value: jax.Array
    terminated: jax.Array
    done: jax.Array


class _EpisodeTotals(NamedTuple):
    reward_sum: jax.Array
    episodes: jax.Array
    return_sum: jax.Array
    length_sum: jax.Array


def _rollout(
    static: ChunkStatic, state: MemberState, env_params: Any
) -> tuple[MemberState, _Transition, _EpisodeTotals]:
    """rollout_length steps of num_envs envs under the member's policy (time-major outputs)."""
    env_step = jax.vmap(static.env.step, in_axes=(0, 0, 0, None))
    shape = (static.rollout_length, static.num_envs)
    # All of the rollout's randomness is drawn up front in two vectorized calls (cheaper than
    # per-step draws inside the loop). Actions use the Gumbel-max trick: argmax(logits + G) is
    # a sample of softmax(logits).
    env_keys = jax.random.split(
        _stream_key(state.key, _STREAM_ENV, state.update_count + 1), shape
    )
    gumbels = jax.random.gumbel(
        _stream_key(state.key, _STREAM_POLICY, state.update_count), (*shape, static.env.num_actions)
    )

    def step(carry, xs):
        env_state, obs, ep_ret, ep_len, totals = carry
        keys, gumbel = xs
        logits, value = static.apply_fn(state.params, obs)
        action = jnp.argmax(logits + gumbel, axis=-1)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=-1)[:, 0]
        next_obs, env_state, reward, terminated, truncated, info = env_step(
            keys, env_state, action, env_params
        )
        # V(s') of the state reached, before auto-reset: the bootstrap for truncated episodes
        # (and equal to V(next_obs) wherever the episode goes on). Only the value tower is live.
        _, next_value = static.apply_fn(state.params, info["final_observation"])
        reward = reward.astype(jnp.float32)
        done = jnp.logical_or(terminated, truncated)
        ep_ret = ep_ret + reward
        ep_len = ep_len + 1
        totals = _EpisodeTotals(
            totals.reward_sum + reward.sum(),
            totals.episodes + done.sum(dtype=jnp.int32),
            totals.return_sum + jnp.where(done, ep_ret, 0.0).sum(),
            totals.length_sum + jnp.where(done, ep_len, 0).sum(),
        )
        ep_ret = jnp.where(done, 0.0, ep_ret)
        ep_len = jnp.where(done, 0, ep_len)
        transition = _Transition(
            obs, action, log_prob, value, reward, next_value, terminated, done
        )
        return (env_state, next_obs, ep_ret, ep_len, totals), transition

    zero_totals = _EpisodeTotals(
        jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32),
    )
    carry = (state.env_state, state.obs, state.episode_return, state.episode_length, zero_totals)
    (env_state, obs, ep_ret, ep_len, totals), traj = lax.scan(
        step, carry, (env_keys, gumbels)
    )
    state = state.replace(
        env_state=env_state, obs=obs, episode_return=ep_ret, episode_length=ep_len
    )
    return state, traj, totals


def _member_update(
    static: ChunkStatic, state: MemberState, hp: MemberHparams, env_params: Any
) -> tuple[MemberState, UpdateMetrics]:
    """One PPO update of one member: rollout, GAE, epochs of minibatch steps."""
    state, traj, totals = _rollout(static, state, env_params)
    advantages, returns = gae(
        traj.reward, traj.value, traj.next_value, traj.terminated, traj.done,
        hp.gamma, hp.gae_lambda,
    )
    n = static.num_envs * static.rollout_length
    batch = ppo.Batch(
        obs=traj.obs.reshape(n, *traj.obs.shape[2:]),
        actions=traj.action.reshape(n),
        old_log_probs=traj.log_prob.reshape(n),
        old_values=traj.value.reshape(n),
        advantages=advantages.reshape(n),
        returns=returns.reshape(n),
    )
    lr = hp.lr
    if static.anneal_lr:
        lr = lr * (1.0 - state.update_count.astype(jnp.float32) / static.total_updates)
    params, opt_state, info = ppo.ppo_update(
        state.params,
        state.opt_state,
        batch,
        _stream_key(state.key, _STREAM_MINIBATCH, state.update_count),
        static.apply_fn,
        ppo.adam(static.adam_eps),
        ppo.LossCoefs(hp.clip_eps, hp.vf_coef, hp.ent_coef),
        lr,
        hp.max_grad_norm,
        static.update_epochs,
        static.num_minibatches,
    )
    state = state.replace(params=params, opt_state=opt_state, update_count=state.update_count + 1)
    metrics = UpdateMetrics(
        reward_sum=totals.reward_sum,
        episodes=totals.episodes,
        episode_return_sum=totals.return_sum,
        episode_length_sum=totals.length_sum,
        policy_loss=info.loss.policy,
        value_loss=info.loss.value,
        entropy=info.loss.entropy,
        approx_kl=info.loss.approx_kl,
        clip_frac=info.loss.clip_frac,
        grad_norm=info.grad_norm,
        lr=jnp.asarray(lr, jnp.float32),
    )
    return state, metrics


def make_chunk_fn(static: ChunkStatic, carry_env_params: bool = False) -> Callable[..., tuple]:
    """chunk(member_state, hparams, env_params) -> (member_state, metrics), K = updates_per_chunk.

    member_state and hparams carry a leading member axis M; env_params is shared (not batched).
    Every member advances K PPO updates inside one `lax.scan`; metrics fields are (M, K).

    Level pools: if the env has `refresh_levels(key, env_params)`, it is called once per update
    before the members' rollouts (outside the member vmap, so the pool stays one shared copy),
    keyed by `level_seed` and the update index. The pool is state that must persist across
    chunks, so such envs need `carry_env_params=True`, which makes the chunk return
    (member_state, env_params, metrics); pass the returned env_params to the next call (and
    checkpoint them). Without a refresh hook, the returned env_params are the input ones.
    The returned function is pure and not jitted: wrap it in `jax.jit` (donating the state).
    """
    refresh = getattr(static.env, "refresh_levels", None)
    if refresh is not None and not carry_env_params:
        raise ValueError(
            f"carry_env_params: {type(static.env).__name__} refreshes a level pool, which must "
            "persist across chunks; use make_chunk_fn(static, carry_env_params=True)"
        )
    update_all = jax.vmap(
        lambda s, h, e: _member_update(static, s, h, e), in_axes=(0, 0, None)
    )
    level_key = jax.random.PRNGKey(static.level_seed)

    def run(state: MemberState, hparams: MemberHparams, env_params: Any) -> tuple:
        if refresh is None:
            def body(state, _):
                return update_all(state, hparams, env_params)

            state, metrics = lax.scan(body, state, None, length=static.updates_per_chunk)
        else:
            def body(carry, _):
                state, env_params = carry
                env_params = refresh(
                    jax.random.fold_in(level_key, jnp.max(state.update_count)), env_params
                )
                state, metrics = update_all(state, hparams, env_params)
                return (state, env_params), metrics

            (state, env_params), metrics = lax.scan(
                body, (state, env_params), None, length=static.updates_per_chunk
            )
        return state, env_params, jax.tree.map(lambda m: jnp.swapaxes(m, 0, 1), metrics)

    if carry_env_params:
        return run

    def chunk(
        state: MemberState, hparams: MemberHparams, env_params: Any
    ) -> tuple[MemberState, UpdateMetrics]:
        state, _, metrics = run(state, hparams, env_params)
        return state, metrics

    return chunk
