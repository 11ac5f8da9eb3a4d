"""PPO training of many members at once: config, member state, the jitted chunk function, `train`.

A *member* is one training run (its own params, optimizer, environments, keys, hyperparameters).
`make_chunk_fn` builds a pure function advancing every member by K PPO updates (rollout, GAE,
epochs of minibatch updates) inside `lax.scan`s, vmapped over a leading member axis, with the
environment's shared read-only data passed once. `train` drives it chunk by chunk from the host.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
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

_NETWORK_FAMILIES = ("mnist_cnn", "mlp", "impala")


@dataclass(frozen=True)
class TrainConfig:
    """One PPO training setup; `train(config, num_seeds)` runs it for seeds seed..seed+n-1.

    Sizes: `num_envs` parallel environments per member, `rollout_length` steps each per update
    (batch = num_envs * rollout_length interactions), `total_interactions` env steps per member
    (rounded down to whole updates), `updates_per_chunk` updates per compiled device call (one
    logged point per chunk). `network` None picks by observation: "mlp" for vectors,
    "mnist_cnn" for 28x28x1 images, "impala" otherwise. `anneal_lr` decays the step size linearly
    from lr to lr/num_updates (off by default: a curve read at every E should not depend on the
    final budget). `level_seed` keys the shared level-pool refresh of envs that have one.
    """

    env: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    network: str | None = None
    width: float = 1.0
    depth: int | None = None
    activation: str | None = None
    num_envs: int = 8
    rollout_length: int = 128
    total_interactions: int = 1_000_000
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 2.5e-4
    anneal_lr: bool = False
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5
    seed: int = 0
    updates_per_chunk: int = 16
    level_seed: int = 0

    @property
    def batch_size(self) -> int:
        """Interactions per update per member: num_envs * rollout_length."""
        return self.num_envs * self.rollout_length

    @property
    def num_updates(self) -> int:
        """Whole PPO updates that fit in total_interactions."""
        return self.total_interactions // self.batch_size

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first bad field; return self when all fields are sound."""
        import envs_jax

        if not isinstance(self.env, str) or self.env not in envs_jax.registered_names():
            raise ValueError(f"env: unknown environment {self.env!r} (see `scalelab envs`)")
        if not isinstance(self.env_kwargs, dict):
            raise ValueError(f"env_kwargs: expected a dict, got {type(self.env_kwargs).__name__}")
        if self.network is not None and self.network not in _NETWORK_FAMILIES:
            raise ValueError(f"network: {self.network!r} is not one of {_NETWORK_FAMILIES}")
        for name in ("num_envs", "rollout_length", "total_interactions", "update_epochs",
                     "num_minibatches", "updates_per_chunk"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        _check_int("level_seed", self.level_seed, minimum=0)
        if self.depth is not None:
            _check_int("depth", self.depth, minimum=1)
        for name in ("width", "lr", "clip_eps", "max_grad_norm", "adam_eps"):
            _check_real(name, getattr(self, name), low=0.0, low_open=True)
        for name in ("ent_coef", "vf_coef"):
            _check_real(name, getattr(self, name), low=0.0)
        for name in ("gamma", "gae_lambda"):
            _check_real(name, getattr(self, name), low=0.0, high=1.0)
        if not isinstance(self.anneal_lr, bool):
            raise ValueError(f"anneal_lr: expected a bool, got {self.anneal_lr!r}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"num_minibatches: num_envs*rollout_length = {self.batch_size} is not divisible "
                f"by num_minibatches = {self.num_minibatches}"
            )
        if self.total_interactions < self.batch_size:
            raise ValueError(
                f"total_interactions: {self.total_interactions} is less than one update "
                f"(num_envs*rollout_length = {self.batch_size})"
            )
        return self

    @classmethod
    def preset(cls, env: str, **overrides: Any) -> TrainConfig:
        """Recommended settings for `env` (see PRESETS; defaults elsewhere), then `overrides`."""
        return cls(env=env, **{**PRESETS.get(env, {}), **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # PureJaxRL's published CartPole defaults (the throughput/learning reference).
    "CartPole-v1": dict(
        network="mlp", activation="tanh", num_envs=4, rollout_length=128,
        total_interactions=500_000, update_epochs=4, num_minibatches=4, lr=2.5e-4,
        anneal_lr=True, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5, adam_eps=1e-5,
    ),
    # The paper's MNIST toy at horizon 1 (γ = 0, λ = 1: advantage = reward - V).
    "MNIST-v0": dict(
        num_envs=64, rollout_length=64, total_interactions=200_000, update_epochs=2,
        num_minibatches=4, lr=1e-3, gamma=0.0, gae_lambda=1.0, ent_coef=0.01,
        updates_per_chunk=4,
    ),
}


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _check_real(
    name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False
) -> None:
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > low if low_open else value >= low)
    if not ok or value > high:
        bound = f"> {low}" if low_open else f">= {low}"
        if high < math.inf:
            bound += f" and <= {high}"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value!r}")


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
    def from_config(cls, config: TrainConfig, num_members: int) -> MemberHparams:
        """The config's values repeated over `num_members` members: every field (num_members,)."""
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
    return jax.vmap(one, in_axes=(0, 0, None))(keys, params, env_params)


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
    env_key = _stream_key(state.key, _STREAM_ENV, state.update_count + 1)
    policy_key = _stream_key(state.key, _STREAM_POLICY, state.update_count)
    step_keys = jnp.stack(
        [jax.random.split(env_key, static.rollout_length),
         jax.random.split(policy_key, static.rollout_length)], axis=1
    )

    def step(carry, keys):
        env_state, obs, ep_ret, ep_len, totals = carry
        logits, value = static.apply_fn(state.params, obs)
        action = jax.random.categorical(keys[1], logits)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=-1)[:, 0]
        next_obs, env_state, reward, terminated, truncated, info = env_step(
            jax.random.split(keys[0], static.num_envs), env_state, action, env_params
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
    (env_state, obs, ep_ret, ep_len, totals), traj = lax.scan(step, carry, step_keys)
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


def make_chunk_fn(
    static: ChunkStatic,
) -> Callable[[MemberState, MemberHparams, Any], tuple[MemberState, UpdateMetrics]]:
    """chunk(member_state, hparams, env_params) -> (member_state, metrics), K = updates_per_chunk.

    member_state and hparams carry a leading member axis M; env_params is shared (not batched).
    Every member advances K PPO updates inside one `lax.scan`; metrics fields are (M, K). If the
    env has `refresh_levels(key, env_params)`, it is called once per update before the members'
    rollouts (outside the member vmap, so the level pool stays one shared copy), keyed by
    `level_seed` and the update index; the refreshed pool lives for the rest of the chunk.
    The returned function is pure and not jitted: wrap it in `jax.jit` (donating the state).
    """
    update_all = jax.vmap(
        lambda s, h, e: _member_update(static, s, h, e), in_axes=(0, 0, None)
    )
    refresh = getattr(static.env, "refresh_levels", None)
    level_key = jax.random.PRNGKey(static.level_seed)

    def chunk(
        state: MemberState, hparams: MemberHparams, env_params: Any
    ) -> tuple[MemberState, UpdateMetrics]:
        def body(carry, _):
            state, env_params = carry
            if refresh is not None:
                env_params = refresh(
                    jax.random.fold_in(level_key, jnp.max(state.update_count)), env_params
                )
            state, metrics = update_all(state, hparams, env_params)
            return (state, env_params), metrics

        (state, _), metrics = lax.scan(
            body, (state, env_params), None, length=static.updates_per_chunk
        )
        return state, jax.tree.map(lambda m: jnp.swapaxes(m, 0, 1), metrics)

    return chunk
