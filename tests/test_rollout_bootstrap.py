"""Truncation bootstrapping from a buffer of the truncated steps equals a value pass per step.

The reference is the rollout as it was: V(info["final_observation"]) evaluated at every step.
It is rebuilt here by replaying the member's rollout (same keys, same Gumbel draws, same params)
and evaluating the value tower on every step's final observation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs_jax
from scalelab import members, networks
from scalelab.algos.gae import gae
from scalelab.members import ChunkStatic, MemberHparams, init_key, init_members, member_root_keys

NUM_ENVS, LENGTH = 4, 32


def per_step_next_values(static: ChunkStatic, state: members.MemberState,
                         env_params) -> jax.Array:
    """(T, n) V(final_observation) of every step of the member's next rollout."""
    shape = (static.rollout_length, static.num_envs)
    env_keys = jax.random.split(
        members._stream_key(state.key, members._STREAM_ENV, state.update_count + 1), shape)
    gumbels = jax.random.gumbel(
        members._stream_key(state.key, members._STREAM_POLICY, state.update_count),
        (*shape, static.env.num_actions))
    env_step = jax.vmap(static.env.step, in_axes=(0, 0, 0, None))

    def step(carry, xs):
        env_state, obs = carry
        logits, _ = static.apply_fn(state.params, obs)
        obs, env_state, _, _, _, info = env_step(
            xs[0], env_state, jnp.argmax(logits + xs[1], axis=-1), env_params)
        return (env_state, obs), static.apply_fn(state.params, info["final_observation"])[1]

    return jax.lax.scan(step, (state.env_state, state.obs), (env_keys, gumbels))[1]


def per_step_rollout(static, state, env_params):
    """The rollout with the old bootstrap values (a value pass per step)."""
    new_state, traj, totals = _new_rollout(static, state, env_params)
    return new_state, traj._replace(
        next_value=per_step_next_values(static, state, env_params)), totals


_new_rollout = members._rollout


def setup(max_steps: int, seeds=(0, 1), updates: int = 3):
    env, env_params = envs_jax.make("CartPole-v1", max_steps_in_episode=max_steps)
    net = networks.NetworkConfig("mlp", width=0.25)
    module = networks.build(net, env.num_actions)
    static = ChunkStatic(env=env, apply_fn=module.apply, num_envs=NUM_ENVS,
                         rollout_length=LENGTH, update_epochs=2, num_minibatches=2,
                         updates_per_chunk=updates, total_updates=10)
    keys = member_root_keys(list(seeds))
    params = jax.tree.map(lambda *x: jnp.stack(x), *[
        networks.init_params(net, init_key(k), (4,), env.num_actions) for k in keys])
    hp = MemberHparams(lr=1e-3, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01,
                       vf_coef=0.5, max_grad_norm=0.5).broadcast(len(seeds))
    return static, init_members(static, hp, keys, params, env_params), hp, env_params


def rollouts(static, state, env_params, rollout):
    fn = jax.vmap(lambda s: rollout(static, s, env_params), axis_name=members._MEMBER_AXIS)
    return jax.jit(fn)(state)


@pytest.mark.parametrize(("max_steps", "overflows"), [(10, True), (20, False)])
def test_advantages_equal_per_step_bootstrap(max_steps, overflows):
    """Time limit 10 over 32 steps: ~3 truncations per env, more than the buffer's 4 entries,
    so the in-rollout flush runs; limit 20: at most one per env, no flush."""
    static, state, hp, env_params = setup(max_steps)
    _, traj, _ = rollouts(static, state, env_params, members._rollout)
    _, ref, _ = rollouts(static, state, env_params, per_step_rollout)
    truncated = np.asarray(traj.done & ~traj.terminated)
    per_rollout = truncated.sum(axis=(1, 2))
    assert per_rollout.max() > 0
    assert (per_rollout.max() > NUM_ENVS) == overflows
    live = ~np.asarray(traj.terminated)
    np.testing.assert_array_equal(np.asarray(traj.next_value)[live],
                                  np.asarray(ref.next_value)[live])
    adv = jax.vmap(gae, in_axes=(0, 0, 0, 0, 0, 0, 0))
    args = (traj.reward, traj.value)
    tail = (traj.terminated, traj.done, hp.gamma, hp.gae_lambda)
    jax.tree.map(np.testing.assert_array_equal, adv(*args, traj.next_value, *tail),
                 adv(*args, ref.next_value, *tail))


def test_training_unchanged(monkeypatch):
    static, state, hp, env_params = setup(10)
    chunk = jax.jit(members.make_chunk_fn(static))
    new_state, new_metrics = chunk(state, hp, env_params)
    monkeypatch.setattr(members, "_rollout", per_step_rollout)
    old_state, old_metrics = jax.jit(members.make_chunk_fn(static))(state, hp, env_params)
    jax.tree.map(np.testing.assert_array_equal, (new_state, new_metrics), (old_state, old_metrics))
    assert np.asarray(new_metrics.episodes).min() > 0
