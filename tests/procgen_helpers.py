"""Test helpers shared by the StarPilot and FruitBot tests: fixtures, scripted play, resets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs_jax

NOOP = 4


def game_fixtures(name: str, pool_size: int = 16, refresh_size: int = 8) -> tuple[Any, ...]:
    """Module-scoped fixtures (game, hard, step_fn, vstep, gen) of the registered game `name`.

    game / hard: (env, params) in easy / hard mode with a small pool; step_fn: jitted
    `env.game_step`; vstep: jitted `env.step` vmapped over (key, state, action); gen: the
    env's batch level generator (compiled once per mode, shared with the pool). Bind them at
    module level under these names: `game, hard, step_fn, vstep, gen = game_fixtures(...)`.
    """

    @pytest.fixture(scope="module")
    def game():
        return envs_jax.make(name, pool_size=pool_size, refresh_size=refresh_size)

    @pytest.fixture(scope="module")
    def hard():
        return envs_jax.make(name, pool_size=pool_size, refresh_size=refresh_size,
                             distribution_mode="hard")

    @pytest.fixture(scope="module")
    def step_fn(game):
        return jax.jit(game[0].game_step)

    @pytest.fixture(scope="module")
    def vstep(game):
        return jax.jit(jax.vmap(game[0].step, in_axes=(0, 0, 0, None)))

    @pytest.fixture(scope="module")
    def gen(game):
        return game[0].generate_levels

    return game, hard, step_fn, vstep, gen


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b| (exact on ties)."""
    grid = np.union1d(a, b)
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def check_gymnax_api(env: Any, params: Any, vstep: Callable, name: str) -> Any:
    """Check a game's gymnax API under vmap over 4 keys: name, 15 actions, uint8 (64, 64, 3)
    observations from reset and step, float32 rewards, bool terminations, final observations.
    Returns the 4 environments' state after one step."""
    assert env.name == name and env.num_actions == 15
    assert env.observation_space(params).shape == (64, 64, 3)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    assert obs.shape == (4, 64, 64, 3) and obs.dtype == jnp.uint8
    obs, state, reward, term, trunc, info = vstep(keys, state, jnp.array([0, 4, 9, 14]), params)
    assert obs.shape == (4, 64, 64, 3) and obs.dtype == jnp.uint8
    assert reward.dtype == jnp.float32 and term.dtype == jnp.bool_ and trunc.shape == (4,)
    assert info["final_observation"].shape == (4, 64, 64, 3)
    return state


def play(step_fn: Callable, params: Any, state: Any, actions: list[int]) -> tuple[
    list[Any], list[float], list[bool]
]:
    """Run `step_fn` (a game_step, no auto-reset) over `actions`, counting time as the env does.

    Returns the states after each step, the rewards and the terminated flags, as lists.
    """
    states, rewards, dones = [], [], []
    for a in actions:
        state, r, d = step_fn(jax.random.PRNGKey(0), state, jnp.int32(a), params)
        state = state.replace(time=state.time + 1)
        states.append(state)
        rewards.append(float(r))
        dones.append(bool(d))
    return states, rewards, dones


def first_episode_returns(
    env: Any, params: Any, policy: Callable, n: int = 8, steps: int = 400
) -> tuple[jax.Array, jax.Array, Any]:
    """First episode of the first n pool levels under `policy(state, key) -> action`.

    Uses game_step only (no time limit, no reset); each env freezes once its episode ends.
    Returns (returns (n,), ended (n,) bool, final states (leading axis n)).
    """
    levels = jax.tree.map(lambda a: a[:n], params.pool_levels)
    states = jax.vmap(env.start_state, in_axes=(0, 0, None))(levels, params.pool_ids[:n],
                                                            params)

    def one(state, key):
        def body(carry, k):
            state, ret, done = carry
            nxt, r, d = env.game_step(k, state, policy(state, k), params)
            nxt = nxt.replace(time=state.time + 1)
            state = jax.tree.map(lambda a, b: jnp.where(done, a, b), state, nxt)
            return (state, ret + jnp.where(done, 0.0, r), done | d), None

        (state, ret, done), _ = jax.lax.scan(body, (state, 0.0, False),
                                             jax.random.split(key, steps))
        return ret, done, state

    return jax.jit(jax.vmap(one))(states, jax.random.split(jax.random.PRNGKey(0), n))


def check_time_limit_truncates(env: Any, params: Any, vstep: Callable, start: Any) -> None:
    """With a 5-step limit, NOOP play from `start` (4 copies) truncates exactly at step 5,
    reports the pre-reset frame as final_observation and the fresh start's frame as obs."""
    params = params.replace(max_steps_in_episode=5)
    state = jax.tree.map(lambda a: jnp.stack([a] * 4), start)
    for k in range(5):
        obs, state, _, term, trunc, info = vstep(
            jax.random.split(jax.random.PRNGKey(k), 4), state, jnp.full((4,), NOOP), params)
        assert np.all(np.asarray(trunc) == (k == 4)) and not np.any(np.asarray(term))
    assert np.all(np.asarray(state.time) == 0)
    assert not np.array_equal(obs[0], info["final_observation"][0])
    frames = jax.jit(jax.vmap(env.render, in_axes=(0, None)))(state, params)
    np.testing.assert_array_equal(obs, frames)


def pool_and_fresh_starts(env: Any, gen: Callable, params: Any, n: int = 256) -> tuple[
    Any, Any, jax.Array
]:
    """Start states drawn by n pool resets from a pool of n random levels, next to n freshly
    generated levels of other random ids: (pool starts, fresh levels, fresh ids)."""
    ids = jax.random.randint(jax.random.PRNGKey(1), (n,), 0, 2**31 - 1)
    pool = type(params)(pool_size=n, refresh_size=n // 8).replace(
        pool_levels=gen(ids, params), pool_ids=ids, pool_cursor=jnp.int32(0))
    starts = jax.jit(jax.vmap(env.sample_start, in_axes=(0, None)))(
        jax.random.split(jax.random.PRNGKey(1), n), pool)
    fresh_ids = jax.random.randint(jax.random.PRNGKey(2), (n,), 0, 2**31 - 1)
    return starts, gen(fresh_ids, params), fresh_ids
