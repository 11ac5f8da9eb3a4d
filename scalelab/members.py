"""The member-vmapped training chunk function: per-member state and hyperparameters, K updates.

A *member* is one training run (its own params, optimizer, environments, keys, hyperparameters).
`make_chunk_fn` builds a pure function advancing every member by K updates (rollout, GAE,
epochs of minibatch updates, and for PPG an auxiliary phase every N_π updates) inside
`lax.scan`s, vmapped over a leading member axis, with the environment's shared read-only data
passed once. The algorithm (`ChunkStatic.algo`: "ppo", "ppo_ewma", "ppg", "ppg_ewma") and policy
objective ("clip", "kl") are static; their scalar hyperparameters are traced per member.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax import lax

from scalelab import networks
from scalelab.algos import ALGORITHMS, decoupled, ppo
from scalelab.algos import ppg as ppg_lib
from scalelab.algos.ewma import EwmaState, ewma_init
from scalelab.algos.gae import gae
from scalelab.algos.noise_scale import NoiseEstimate, minibatch_noise_estimate
from scalelab.algos.objectives import OBJECTIVES, PolicyCoefs
from scalelab.config import TRACED, TrainConfig, default_of

if TYPE_CHECKING:  # gymnax imported at start-up would start XLA before jax.distributed
    from gymnax.environments.environment import Environment

Params = Any

# Named key streams of a member: its root key is folded with one of these ids, then (for the
# per-update streams) with the update index, so every random draw depends only on the member's
# seed and the update it belongs to.
(_STREAM_INIT, _STREAM_ENV, _STREAM_POLICY, _STREAM_MINIBATCH, _STREAM_AUX, _STREAM_NOISE,
 _STREAM_GROW, _STREAM_LEVELS, _STREAM_LEVEL_FILL) = range(9)
# The vmap axis of the members inside a chunk (collectives over it decide for all members).
_MEMBER_AXIS = "members"


def _from_config(cls: type, config: TrainConfig, num_members: int) -> MemberHparams:
    """A config's traced values repeated over `num_members` members: every field
    (num_members,) float32."""
    return cls(**{name: jnp.full((num_members,), getattr(config, name), jnp.float32)
                  for name in TRACED})


def _broadcast(self: MemberHparams, num_members: int) -> MemberHparams:
    """Every field as a (num_members,) float32 array (scalars repeated)."""
    return jax.tree.map(
        lambda x: jnp.broadcast_to(jnp.asarray(x, jnp.float32), (num_members,)), self
    )


# Per-member traced scalar hyperparameters: one float32 field per traced setting of
# `scalelab.config` (`TRACED`, declared there once), a leading member axis when batched. A field
# left at its default (a Python scalar, the config's default) is broadcast over the members by
# `init_members` and the chunk function.
MemberHparams = type("MemberHparams", (struct.PyTreeNode,), {
    "__annotations__": {name: "jax.Array | float" for name in TRACED},
    **{name: default_of(name) for name in TRACED},
    "__doc__": "Per-member traced hyperparameters: the traced settings of scalelab.config.",
    "__module__": __name__,
    "from_config": classmethod(_from_config),
    "broadcast": _broadcast,
})


class MemberState(struct.PyTreeNode):
    """Everything one member carries between updates (leading member axis when batched).

    params / opt_state: network parameters and Adam moments. env_state / obs: the num_envs
    environments and their current observations (num_envs, *obs_shape). key: the member's root
    key (uint32 (2,)). update_count: updates done (int32). episode_return / episode_length:
    running sums of the unfinished episode in each environment (num_envs,). ewma: the
    proximal-policy average of the -EWMA algorithms (else None). aux_buffer: PPG's buffer of
    the phase's rollouts (else None). For PPG, opt_state is a dict of Adam states "policy",
    "value" and "aux" (`scalelab.algos.ppg.phasic_optimizers`).
    """

    params: Params
    opt_state: optax.OptState
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update_count: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array
    ewma: EwmaState | None = None
    aux_buffer: ppg_lib.AuxBuffer | None = None


class UpdateMetrics(NamedTuple):
    """Per-update diagnostics of one member (scalars; (members, K) out of a chunk).

    reward_sum: sum of the rollout's num_envs*rollout_length rewards. episodes: episodes that
    ended (terminated or truncated) in the rollout, with the sums of their returns and lengths.
    The rest are means over the update's epochs and minibatches; lr is the step size used.
    prox_kl: mean exact KL(π_prox‖π) of the policy steps (0 for plain clipped PPO/PPG, whose
    proximal policy is known only at the taken actions). aux_phase: 1 where a PPG auxiliary
    phase ran after this update, else 0; aux_kl (KL(π_pre‖π) after the phase, on its first
    minibatch of samples), aux_value_loss (mean ½(V_aux - R)²) are its diagnostics (0 elsewhere).
    noise_g2 / noise_trace: this update's unbiased estimates of |G|² and tr(Σ) of the PPO loss
    gradient (`scalelab.algos.noise_scale`; 0 unless ChunkStatic.noise_scale). These have
    defaults so that code building the PPO fields alone still works; the trainer fills all.
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
    prox_kl: jax.Array | float = 0.0
    aux_phase: jax.Array | float = 0.0
    aux_kl: jax.Array | float = 0.0
    aux_value_loss: jax.Array | float = 0.0
    noise_g2: jax.Array | float = 0.0
    noise_trace: jax.Array | float = 0.0


@dataclass(frozen=True)
class ChunkStatic:
    """Compile-time structure of a chunk function: shared by all members it is vmapped over.

    env: a gymnax-API environment; apply_fn(params, obs (n, *obs_shape)) -> (logits (n, A),
    values (n,)). total_updates is the lr-anneal horizon (used when anneal_lr).

    algo / objective pick the algorithm (see `scalelab.algos.decoupled`). PPG only:
    update_epochs policy epochs and value_epochs value epochs per iteration, an auxiliary phase
    of aux_epochs epochs in aux_num_minibatches minibatches (over the N_π·n buffered samples)
    after every ppg_n_pi-th update, using aux_apply_fn(params, obs) -> (logits, value,
    aux_value) (apply_fn must be its first two outputs). noise_scale: also estimate the
    gradient noise scale every update (num_minibatches gradients of the PPO loss at the
    update's starting parameters: one extra pass over the batch).

    member_env_params: env_params carry a leading member axis, i.e. every member owns its env
    params. For envs with a level pool (`refresh_levels`) each member then refreshes its own
    pool from its own key stream (`init_level_pools` fills it), so members of different seeds
    never share levels and a member's levels depend on its seed and `level_seed` alone.
    Default False: one copy shared by all members, refreshed from `level_seed` alone.
    """

    env: Environment
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
    algo: str = "ppo"
    objective: str = "clip"
    value_epochs: int = 1
    ppg_n_pi: int = 32
    aux_epochs: int = 6
    aux_num_minibatches: int = 32
    aux_apply_fn: ppg_lib.AuxApplyFn | None = None
    noise_scale: bool = False
    member_env_params: bool = False

    def __post_init__(self) -> None:
        if self.algo not in decoupled.ALGOS:
            raise ValueError(f"algo: {self.algo!r} is not one of {decoupled.ALGOS}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: {self.objective!r} is not one of {OBJECTIVES}")
        if self.noise_scale and self.num_minibatches < 2:
            raise ValueError("noise_scale: needs num_minibatches >= 2 (two batch sizes)")
        if decoupled.is_phasic(self.algo) and self.aux_apply_fn is None:
            raise ValueError(f"algo {self.algo!r} needs aux_apply_fn (an auxiliary value head)")

    @property
    def optimizers(self) -> dict[str, optax.GradientTransformation]:
        """The member's Adam transformations by name ({"all"} or PPG's three)."""
        if decoupled.is_phasic(self.algo):
            return ppg_lib.phasic_optimizers(self.adam_eps)
        return {"all": ppo.adam(self.adam_eps)}

    def with_updates_per_chunk(self, k: int) -> ChunkStatic:
        """The same structure advancing k updates per call."""
        return dataclasses.replace(self, updates_per_chunk=k)


def chunk_static(config: TrainConfig, env: Environment, network: networks.NetworkConfig,
                 num_envs: int, updates_per_chunk: int) -> ChunkStatic:
    """The chunk structure of a validated config's members on `network` (a member's own network
    or its group's padded one), with num_envs envs and updates_per_chunk updates per call."""
    module = networks.build(network, env.num_actions)
    phasic = decoupled.is_phasic(config.algo)
    return ChunkStatic(
        env=env,
        apply_fn=module.apply,
        num_envs=num_envs,
        rollout_length=config.rollout_length,
        update_epochs=config.update_epochs,
        num_minibatches=config.num_minibatches,
        updates_per_chunk=updates_per_chunk,
        total_updates=config.num_updates,
        anneal_lr=config.anneal_lr,
        adam_eps=config.adam_eps,
        level_seed=config.level_seed,
        algo=config.algo,
        objective=config.objective,
        value_epochs=config.value_epochs,
        ppg_n_pi=config.ppg_n_pi,
        aux_epochs=config.aux_epochs,
        aux_num_minibatches=config.aux_minibatches,
        aux_apply_fn=partial(module.apply, return_aux=True) if phasic else None,
        noise_scale=config.noise_scale or config.batch_schedule == "adaptive",
        member_env_params=has_level_pool(env),
    )


def member_root_keys(seeds: jax.Array | list[int]) -> jax.Array:
    """Root keys (M, 2) uint32 from integer seeds (M,): PRNGKey(seed), nothing else."""
    return jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))


def has_level_pool(env: Environment) -> bool:
    """Whether `env` draws resets from a level pool it refreshes (`refresh_levels(key,
    env_params)`, as `envs_jax.procgen`): such env params change during training, and trainers
    give every member its own pool (`init_level_pools`)."""
    return hasattr(env, "refresh_levels")


def init_key(root_key: jax.Array) -> jax.Array:
    """The parameter-initialization key of a member (its root key's init stream)."""
    return jax.random.fold_in(root_key, _STREAM_INIT)


def _stream_key(root_key: jax.Array, stream: int, update: jax.Array) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(root_key, stream), update)


def _level_key(root_key: jax.Array, level_seed: int, stream: int, index: jax.Array
               ) -> jax.Array:
    """Key of a member-owned level pool's refresh `index` (stream: per update, or the fill)."""
    return jax.random.fold_in(_stream_key(root_key, stream, level_seed), index)


def init_level_pools(static: ChunkStatic, keys: jax.Array, env_params: Any) -> Any:
    """Member-owned env params (leading axis M) for `static.member_env_params`.

    keys: the members' root keys (M, 2); env_params: unbatched. For an env with a ring level
    pool (`refresh_levels` and `pool_size`/`refresh_size` fields, as `envs_jax.procgen`), each
    member's pool is refilled completely: pool_size/refresh_size refreshes keyed by the member's
    root key, `level_seed` and the refresh index, so it depends on the member's seed alone.
    Other envs get M copies of `env_params`.
    """
    refresh = getattr(static.env, "refresh_levels", None)

    def one(key: jax.Array) -> Any:
        if refresh is None:
            return env_params
        fills = env_params.pool_size // env_params.refresh_size
        return lax.fori_loop(
            0, fills,
            lambda i, p: refresh(_level_key(key, static.level_seed, _STREAM_LEVEL_FILL, i), p),
            env_params,
        )

    return jax.vmap(one)(keys)


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
    if static.member_env_params and env_params is None:
        raise ValueError("env_params: member_env_params needs the members' own env params "
                         "(see init_level_pools)")
    if hparams.lr.shape != (num_members,):
        raise ValueError(
            f"hparams: expected a leading member axis of {num_members} (keys), "
            f"got lr of shape {hparams.lr.shape}"
        )
    optimizers = static.optimizers
    phasic = decoupled.is_phasic(static.algo)
    if phasic:
        ppg_lib.check_phasic_params(params)

    def one(key: jax.Array, p: Params, env_params: Any) -> MemberState:
        reset_keys = jax.random.split(_stream_key(key, _STREAM_ENV, 0), static.num_envs)
        obs, env_state = jax.vmap(static.env.reset, in_axes=(0, None))(reset_keys, env_params)
        opt_state = {name: opt.init(p) for name, opt in optimizers.items()}
        aux_buffer = None
        if phasic:
            aux_buffer = ppg_lib.aux_buffer_init(
                static.ppg_n_pi, static.num_envs * static.rollout_length, obs.shape[1:],
                obs.dtype,
            )
        return MemberState(
            params=p,
            opt_state=opt_state if phasic else opt_state["all"],
            env_state=env_state,
            obs=obs,
            key=key,
            update_count=jnp.zeros((), jnp.int32),
            episode_return=jnp.zeros((static.num_envs,), jnp.float32),
            episode_length=jnp.zeros((static.num_envs,), jnp.int32),
            # a copy: the chunk donates its state, and one buffer cannot be donated twice
            ewma=ewma_init(jax.tree.map(jnp.copy, p)) if decoupled.is_ewma(static.algo) else None,
            aux_buffer=aux_buffer,
        )

    if env_params is None:
        env_params = static.env.default_params
    env_axis = 0 if static.member_env_params else None
    # One compiled program rather than hundreds of eagerly dispatched small ops (faster, and
    # eager dispatch of this many ops has been seen to deadlock jax 0.10's CPU client).
    return jax.jit(jax.vmap(one, in_axes=(0, 0, env_axis)))(keys, params, env_params)


def grow_members(
    static: ChunkStatic, state: MemberState, num_envs: int, env_params: Any = None
) -> tuple[ChunkStatic, MemberState]:
    """Members with num_envs environments instead of static.num_envs (a batch-size change).

    The running environments keep going; the new ones are reset from each member's key (its
    grow stream at the current update), so the result still depends on the member alone. PPG's
    buffer is re-allocated for the new batch, so call this only at a phase boundary (no update
    buffered; checked unless traced). env_params: as the chunk gets them (with a member axis
    when static.member_env_params). Returns the new static structure and state; compile a new
    chunk for them.
    """
    extra = num_envs - static.num_envs
    if extra < 0:
        raise ValueError(f"num_envs: can only grow ({static.num_envs} -> {num_envs})")
    # (under jit the caller guarantees the boundary: the count is not known here)
    if (state.aux_buffer is not None and not isinstance(state.update_count, jax.core.Tracer)
            and int(jnp.max(state.update_count)) % static.ppg_n_pi):
        raise ValueError("grow_members: PPG's buffer holds rollouts; grow at a phase boundary")
    if env_params is None:
        env_params = static.env.default_params
    new_static = dataclasses.replace(static, num_envs=num_envs)

    def one(s: MemberState, env_params: Any) -> MemberState:
        keys = jax.random.split(_stream_key(s.key, _STREAM_GROW, s.update_count), extra)
        obs, env_state = jax.vmap(static.env.reset, in_axes=(0, None))(keys, env_params)
        cat = lambda a, b: jnp.concatenate([a, b.astype(a.dtype)])  # noqa: E731
        aux_buffer = s.aux_buffer
        if aux_buffer is not None:
            aux_buffer = ppg_lib.aux_buffer_init(
                static.ppg_n_pi, num_envs * static.rollout_length, obs.shape[1:], obs.dtype
            )
        return s.replace(
            env_state=jax.tree.map(cat, s.env_state, env_state),
            obs=cat(s.obs, obs),
            episode_return=cat(s.episode_return, jnp.zeros((extra,))),
            episode_length=cat(s.episode_length, jnp.zeros((extra,))),
            aux_buffer=aux_buffer,
        )

    if extra == 0:
        return new_static, state
    env_axis = 0 if static.member_env_params else None
    return new_static, jax.vmap(one, in_axes=(0, env_axis))(state, env_params)


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


class _Bootstraps(NamedTuple):
    """The pre-reset observations of a rollout's truncated steps, awaiting their values.

    obs (cap, *obs_shape): buffered observations; slot (cap,) int32: the flat index t*num_envs+i
    of the step each belongs to (T*num_envs: empty); count: () int32 buffered; value (T*n,)
    float32: V of the observations already flushed, at their flat index (0 elsewhere).
    """

    obs: jax.Array
    slot: jax.Array
    count: jax.Array
    value: jax.Array


def _rollout(
    static: ChunkStatic, state: MemberState, env_params: Any
) -> tuple[MemberState, _Transition, _EpisodeTotals]:
    """rollout_length steps of num_envs envs under the member's policy (time-major outputs).

    Must run under the chunk's member vmap (axis `_MEMBER_AXIS`): the truncation buffer's
    flush decision is taken jointly by all members (see below).
    """
    env_step = jax.vmap(static.env.step, in_axes=(0, 0, 0, None))
    n, length = static.num_envs, static.rollout_length
    shape = (length, n)
    empty = length * n  # the slot index of an unused buffer entry (dropped by the scatter)
    # All of the rollout's randomness is drawn up front in two vectorized calls (cheaper than
    # per-step draws inside the loop). Actions use the Gumbel-max trick: argmax(logits + G) is
    # a sample of softmax(logits).
    env_keys = jax.random.split(
        _stream_key(state.key, _STREAM_ENV, state.update_count + 1), shape
    )
    gumbels = jax.random.gumbel(
        _stream_key(state.key, _STREAM_POLICY, state.update_count), (*shape, static.env.num_actions)
    )

    def value_of(obs: jax.Array) -> jax.Array:
        return static.apply_fn(state.params, obs)[1]

    # V(s') of a truncated step's pre-reset state s' is the only value the rollout cannot read
    # off the next step's forward pass (elsewhere V(s'_t) = V(s_{t+1}), or s' is terminal).
    # Those observations are gathered into a buffer of num_envs entries whose values are
    # computed in one forward pass after the rollout (n rows, the batch shape of the per-step
    # pass, so the values are bit-equal to it). If a step would overflow the buffer, it is
    # flushed first (a forward pass on its entries). Under the member vmap a per-member
    # condition would become a select running the flush every step, so the members decide
    # together (pmax): a flush happens when any member needs one.
    def flush(b: _Bootstraps) -> _Bootstraps:
        value = b.value.at[b.slot].set(value_of(b.obs), mode="drop")
        return _Bootstraps(b.obs, jnp.full_like(b.slot, empty), jnp.zeros_like(b.count), value)

    def step(carry, xs):
        env_state, obs, ep_ret, ep_len, totals, boot = carry
        t, keys, gumbel = xs
        logits, value = static.apply_fn(state.params, obs)
        action = jnp.argmax(logits + gumbel, axis=-1)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], axis=-1)[:, 0]
        next_obs, env_state, reward, terminated, truncated, info = env_step(
            keys, env_state, action, env_params
        )
        needs = jnp.logical_and(truncated, jnp.logical_not(terminated))
        new = needs.sum(dtype=jnp.int32)
        boot = lax.cond(lax.pmax(boot.count + new, _MEMBER_AXIS) > n, flush, lambda b: b, boot)
        pos = jnp.where(needs, boot.count + jnp.cumsum(needs, dtype=jnp.int32) - 1, n)
        boot = _Bootstraps(
            boot.obs.at[pos].set(info["final_observation"].astype(boot.obs.dtype), mode="drop"),
            boot.slot.at[pos].set(t * n + jnp.arange(n, dtype=jnp.int32), mode="drop"),
            boot.count + new,
            boot.value,
        )
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
            obs, action, log_prob, value, reward, jnp.zeros_like(value), terminated, done
        )
        return (env_state, next_obs, ep_ret, ep_len, totals, boot), transition

    zero_totals = _EpisodeTotals(
        jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32),
    )
    boot = _Bootstraps(
        jnp.zeros_like(state.obs), jnp.full((n,), empty, jnp.int32), jnp.zeros((), jnp.int32),
        jnp.zeros((empty,), jnp.float32),
    )
    carry = (state.env_state, state.obs, state.episode_return, state.episode_length, zero_totals,
             boot)
    (env_state, obs, ep_ret, ep_len, totals, boot), traj = lax.scan(
        step, carry, (jnp.arange(length, dtype=jnp.int32), env_keys, gumbels)
    )
    truncated_value = flush(boot).value.reshape(shape)
    # V(s_{t+1}) from the next step's pass; after the last step, of the observation the
    # rollout ends on.
    following = jnp.concatenate([traj.value[1:], value_of(obs)[None]])
    bootstrap = jnp.logical_and(traj.done, jnp.logical_not(traj.terminated))
    traj = traj._replace(next_value=jnp.where(bootstrap, truncated_value, following))
    state = state.replace(
        env_state=env_state, obs=obs, episode_return=ep_ret, episode_length=ep_len
    )
    return state, traj, totals


def _member_update(
    static: ChunkStatic, state: MemberState, hp: MemberHparams, env_params: Any
) -> tuple[MemberState, UpdateMetrics]:
    """One update (iteration) of one member: rollout, GAE, epochs of minibatch steps; PPG
    also stores the rollout's obs and returns in its auxiliary buffer."""
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
    lr = _step_size(static, state, hp)
    minibatch_key = _stream_key(state.key, _STREAM_MINIBATCH, state.update_count)
    coefs = ppo.LossCoefs(hp.clip_eps, hp.vf_coef, hp.ent_coef)
    zero = jnp.zeros((), jnp.float32)
    noise = NoiseEstimate(zero, zero)
    if static.noise_scale:
        noise = minibatch_noise_estimate(
            lambda p, mb: jax.grad(lambda q: ppo.ppo_loss(q, static.apply_fn, mb, coefs)[0])(p),
            state.params,
            ppo.shuffle_minibatches(
                _stream_key(state.key, _STREAM_NOISE, state.update_count), batch,
                static.num_minibatches,
            ),
        )
    if not ALGORITHMS[static.algo].decoupled(static.objective):
        params, opt_state, info = ppo.ppo_update(
            state.params, state.opt_state, batch, minibatch_key, static.apply_fn,
            ppo.adam(static.adam_eps), coefs, lr, hp.max_grad_norm, static.update_epochs,
            static.num_minibatches,
        )
        ewma, prox_kl = None, jnp.zeros((), jnp.float32)
    else:
        phase = decoupled.PhaseConfig(
            static.algo, static.objective, static.update_epochs, static.value_epochs,
            static.num_minibatches,
        )
        params, opt_state, ewma, step_info = decoupled.policy_phase(
            phase, state.params, state.opt_state, state.ewma, batch, minibatch_key,
            static.apply_fn, static.optimizers, coefs,
            PolicyCoefs(hp.clip_eps, hp.kl_coef, hp.imp_samp_max), hp.ewma_decay, lr,
            hp.max_grad_norm,
        )
        info = ppo.UpdateInfo(step_info.loss, step_info.grad_norm)
        prox_kl = step_info.prox_kl
    aux_buffer = state.aux_buffer
    if aux_buffer is not None:
        aux_buffer = ppg_lib.aux_buffer_store(
            aux_buffer, state.update_count % static.ppg_n_pi, batch.obs, batch.returns
        )
    state = state.replace(
        params=params, opt_state=opt_state, update_count=state.update_count + 1, ewma=ewma,
        aux_buffer=aux_buffer,
    )
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
        prox_kl=prox_kl,
        aux_phase=zero,
        aux_kl=zero,
        aux_value_loss=zero,
        noise_g2=noise.g2,
        noise_trace=noise.trace,
    )
    return state, metrics


def _step_size(static: ChunkStatic, state: MemberState, hp: MemberHparams) -> jax.Array:
    """The member's lr, linearly annealed over total_updates when anneal_lr."""
    if static.anneal_lr:
        return hp.lr * (1.0 - state.update_count.astype(jnp.float32) / static.total_updates)
    return hp.lr


def _member_aux_phase(
    static: ChunkStatic, state: MemberState, hp: MemberHparams, metrics: UpdateMetrics
) -> tuple[MemberState, UpdateMetrics]:
    """PPG's auxiliary phase on the buffered N_π rollouts, then the EWMA reset (-EWMA)."""
    optimizers = static.optimizers
    params, aux_opt_state, info = ppg_lib.aux_phase(
        state.params, state.opt_state["aux"], state.aux_buffer,
        _stream_key(state.key, _STREAM_AUX, state.update_count), static.aux_apply_fn,
        optimizers["aux"], hp.beta_clone, _step_size(static, state, hp), hp.max_grad_norm,
        static.aux_epochs, static.aux_num_minibatches,
    )
    state = state.replace(
        params=params,
        opt_state={**state.opt_state, "aux": aux_opt_state},
        ewma=None if state.ewma is None else ewma_init(params),
    )
    metrics = metrics._replace(
        aux_phase=jnp.ones((), jnp.float32), aux_kl=info.kl_end,
        aux_value_loss=info.aux_value_loss,
    )
    return state, metrics


def make_chunk_fn(static: ChunkStatic, carry_env_params: bool = False) -> Callable[..., tuple]:
    """chunk(member_state, hparams, env_params) -> (member_state, metrics), K = updates_per_chunk.

    member_state and hparams carry a leading member axis M (hparams fields left as Python
    scalars are broadcast); env_params is shared (not batched). Every member advances K updates
    inside one `lax.scan`; metrics fields are (M, K). For PPG, the auxiliary phase runs after
    every ppg_n_pi-th update (counted from the start of training, across chunks).

    Level pools: if the env has `refresh_levels(key, env_params)`, it is called once per update
    before the members' rollouts (outside the member vmap, so the pool stays one shared copy),
    keyed by `level_seed` and the update index; with `static.member_env_params` the env_params
    carry a member axis and each member's pool is refreshed from its own key (root key,
    level_seed, its update index). The pool is state that must persist across
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
    member_update = jax.vmap(
        lambda s, h, e: _member_update(static, s, h, e),
        in_axes=(0, 0, 0 if static.member_env_params else None), axis_name=_MEMBER_AXIS,
    )
    aux_all = jax.vmap(lambda s, h, m: _member_aux_phase(static, s, h, m))
    phasic = decoupled.is_phasic(static.algo)
    level_key = jax.random.PRNGKey(static.level_seed)

    def update_all(
        state: MemberState, hparams: MemberHparams, env_params: Any
    ) -> tuple[MemberState, UpdateMetrics]:
        state, metrics = member_update(state, hparams, env_params)
        if phasic:
            # Members advance in lockstep, so one unbatched predicate decides for all of them:
            # under vmap a per-member predicate would run the phase at every update.
            due = jnp.max(state.update_count) % static.ppg_n_pi == 0
            state, metrics = lax.cond(
                due, aux_all, lambda s, h, m: (s, m), state, hparams, metrics
            )
        return state, metrics

    def run(state: MemberState, hparams: MemberHparams, env_params: Any) -> tuple:
        hparams = hparams.broadcast(state.update_count.shape[0])
        if refresh is None:
            def body(state, _):
                return update_all(state, hparams, env_params)

            state, metrics = lax.scan(body, state, None, length=static.updates_per_chunk)
        else:
            def body(carry, _):
                state, env_params = carry
                if static.member_env_params:
                    env_params = jax.vmap(lambda k, u, e: refresh(
                        _level_key(k, static.level_seed, _STREAM_LEVELS, u), e
                    ))(state.key, state.update_count, env_params)
                else:
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
