"""The member-vmapped chunk function: alone == in a batch, determinism, episode accounting,
the shared level-pool refresh hook."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

import envs_jax
from scalelab.members import (
    ChunkStatic,
    MemberHparams,
    init_key,
    init_members,
    make_chunk_fn,
    member_root_keys,
)


class TinyMLP(nn.Module):
    """Throwaway separate-tower actor-critic for these tests."""

    num_actions: int

    @nn.compact
    def __call__(self, obs):
        x = obs.astype(jnp.float32)
        logits = nn.Dense(self.num_actions)(nn.tanh(nn.Dense(16)(x)))
        value = nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))[..., 0]
        return logits, value


@struct.dataclass
class PoolParams(environment.EnvParams):
    pool: jax.Array = struct.field(default_factory=lambda: jnp.zeros(4))
    cursor: int = 0
    terminal_time: int = 3
    max_steps_in_episode: int = 5


@struct.dataclass
class PoolState(environment.EnvState):
    pass


class PoolEnv(environment.Environment):
    """Reward sum(pool) every step; terminates at terminal_time, truncates at max_steps; each
    `refresh_levels` call redraws one pool slot, a ring (so the pool is state)."""

    def refresh_levels(self, key, params):
        pool = params.pool.at[params.cursor].set(jax.random.uniform(key))
        return params.replace(pool=pool, cursor=(params.cursor + 1) % pool.shape[0])

    @property
    def default_params(self):
        return PoolParams()

    def step_env(self, key, state, action, params):
        state = PoolState(time=state.time + 1)
        terminated = state.time >= params.terminal_time
        return self.get_obs(state), state, params.pool.sum(), terminated, {}

    def reset_env(self, key, params):
        state = PoolState(time=0)
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.array([state.time], jnp.float32)

    @property
    def num_actions(self):
        return 2

    def observation_space(self, params):
        return spaces.Box(0, 100, (1,), jnp.float32)


def make_static(env, num_envs=2, rollout_length=8, k=3, epochs=2, minibatches=2, anneal=False):
    net = TinyMLP(env.num_actions)
    return ChunkStatic(env=env, apply_fn=net.apply, num_envs=num_envs,
                       rollout_length=rollout_length, update_epochs=epochs,
                       num_minibatches=minibatches, updates_per_chunk=k, total_updates=10,
                       anneal_lr=anneal), net


def start(static, net, seeds, lrs, env_params, obs_dim):
    keys = member_root_keys(seeds)
    params = jax.vmap(lambda k: net.init(init_key(k), jnp.zeros((1, obs_dim))))(keys)
    hp = MemberHparams(
        lr=jnp.asarray(lrs, jnp.float32), gamma=jnp.full(len(seeds), 0.99),
        gae_lambda=jnp.full(len(seeds), 0.95), clip_eps=jnp.full(len(seeds), 0.2),
        ent_coef=jnp.full(len(seeds), 0.01), vf_coef=jnp.full(len(seeds), 0.5),
        max_grad_norm=jnp.full(len(seeds), 0.5))
    return init_members(static, hp, keys, params, env_params), hp


@pytest.fixture(scope="module")
def cartpole_runs():
    env, env_params = envs_jax.make("CartPole-v1")
    static, net = make_static(env, num_envs=4, rollout_length=16, anneal=True)
    # the group through the env-params-carrying form, the lone member through the plain one
    group_chunk = jax.jit(make_chunk_fn(static, carry_env_params=True))
    alone_chunk = jax.jit(make_chunk_fn(static))
    group = start(static, net, [0, 1, 2], [1e-3, 3e-3, 5e-4], env_params, 4)
    alone = start(static, net, [1], [3e-3], env_params, 4)
    return {
        "env_params": env_params,
        "group": group_chunk(*group, env_params),
        "group_again": group_chunk(*group, env_params),
        "alone": alone_chunk(*alone, env_params),
    }


def test_member_in_batch_equals_member_alone(cartpole_runs):
    (g_state, _, g_metrics), (a_state, a_metrics) = cartpole_runs["group"], cartpole_runs["alone"]
    close = lambda g, a: np.testing.assert_allclose(g[1], a[0], rtol=1e-5, atol=1e-6)  # noqa: E731
    jax.tree.map(close, g_state.params, a_state.params)
    jax.tree.map(close, g_metrics, a_metrics)
    np.testing.assert_array_equal(g_state.obs[1], a_state.obs[0])
    assert int(g_state.update_count[1]) == 3


def test_same_seed_same_result_different_seeds_differ(cartpole_runs):
    (s1, _, m1), (s2, _, m2) = cartpole_runs["group"], cartpole_runs["group_again"]
    jax.tree.map(np.testing.assert_array_equal, (s1, m1), (s2, m2))
    for leaf in jax.tree.leaves(s1.params):
        assert not np.allclose(leaf[0], leaf[1])
    assert not np.array_equal(s1.obs[0], s1.obs[1])
    assert m1.reward_sum.shape == (3, 3)
    # lr annealing: update u of T=10 uses lr * (1 - u/10)
    np.testing.assert_allclose(m1.lr[0], 1e-3 * (1 - np.arange(3) / 10), rtol=1e-6)


@pytest.fixture(scope="module")
def pool_chunk():
    env = PoolEnv()
    static, net = make_static(env, num_envs=2, rollout_length=8, k=3)
    static = dataclasses.replace(static, level_seed=7)
    return static, net, jax.jit(make_chunk_fn(static, carry_env_params=True))


def simulate_pool_env(rewards_per_update, terminal_time, max_steps, rollout_length):
    """NumPy reference of one PoolEnv: per update (episodes, return sum, length sum)."""
    time = ret = 0.0
    out = []
    for r in rewards_per_update:
        eps = ret_sum = len_sum = 0
        for _ in range(rollout_length):
            time, ret = time + 1, ret + r
            if time >= terminal_time or time >= max_steps:
                eps, ret_sum, len_sum = eps + 1, ret_sum + ret, len_sum + time
                time = ret = 0.0
        out.append((eps, ret_sum, len_sum))
    return np.array(out)


@pytest.mark.parametrize("terminal_time,max_steps", [(3, 5), (7, 4)])
def test_episode_accounting_and_shared_level_refresh(pool_chunk, terminal_time, max_steps):
    static, net, chunk = pool_chunk
    params = PoolParams(terminal_time=terminal_time, max_steps_in_episode=max_steps)
    state, hp = start(static, net, [0, 5], [1e-3, 1e-3], params, 1)
    chunks = []
    for _ in range(2):
        state, params, metrics = chunk(state, hp, params)
        chunks.append(metrics)
    m = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *chunks)  # (2 members, 6 updates)
    # Before update u, refresh_levels keyed by fold_in(PRNGKey(level_seed), u) redraws slot
    # u mod 4, once for all members; the pool persists across chunks through env_params.
    pool, paid = np.zeros(4), []
    for u in range(6):
        pool[u % 4] = jax.random.uniform(jax.random.fold_in(jax.random.PRNGKey(7), u))
        paid.append(pool.sum())
    ref = simulate_pool_env(paid, terminal_time, max_steps, 8)
    for member in range(2):  # both members, and both of each member's envs, see the same pool
        np.testing.assert_allclose(m.reward_sum[member], 2 * 8 * np.array(paid), rtol=1e-5)
        np.testing.assert_array_equal(m.episodes[member], 2 * ref[:, 0])
        np.testing.assert_allclose(m.episode_return_sum[member], 2 * ref[:, 1], rtol=1e-5)
        np.testing.assert_array_equal(m.episode_length_sum[member], 2 * ref[:, 2])
    assert int(params.cursor) == 6 % 4
    length = min(terminal_time, max_steps)
    np.testing.assert_array_equal(state.episode_length, np.full((2, 2), 48 % length))


def test_refreshing_env_requires_carried_env_params():
    static, _ = make_static(PoolEnv())
    with pytest.raises(ValueError, match="carry_env_params"):
        make_chunk_fn(static)


def test_carried_env_params_pass_through_unchanged_without_refresh(cartpole_runs):
    same = lambda out, given: np.testing.assert_array_equal(  # noqa: E731
        out, np.asarray(given, np.asarray(out).dtype))
    jax.tree.map(same, cartpole_runs["group"][1], cartpole_runs["env_params"])
