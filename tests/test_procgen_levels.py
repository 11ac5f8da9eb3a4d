"""The games keep their promise of unlimited levels under any gymnax loop: a third-party-style
loop driven only through `reset`/`step` keeps meeting new levels, distributed as the trainer's
pool-managed form distributes them."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from procgen_helpers import ks_statistic

import envs_jax
from envs_jax.procgen.common import LEVEL_ID_MAX

GAMES = ("CoinRun-v0", "StarPilot-v0", "FruitBot-v0")
NUM_ENVS = 8
EPISODE_LIMIT = 8  # short episodes: many resets per compiled step


class LogEnvState(NamedTuple):
    """gymnax's LogWrapper state, written out here: running and last finished episode stats."""

    env_state: Any
    episode_returns: jax.Array
    episode_lengths: jax.Array
    returned_episode_returns: jax.Array
    returned_episode_lengths: jax.Array


def log_reset(env: Any, key: jax.Array, params: Any) -> tuple[jax.Array, LogEnvState]:
    obs, state = env.reset(key, params)
    zero = jnp.float32(0)
    return obs, LogEnvState(state, zero, jnp.int32(0), zero, jnp.int32(0))


def log_step(env: Any, key: jax.Array, state: LogEnvState, action: jax.Array, params: Any):
    obs, env_state, reward, terminated, truncated, info = env.step(
        key, state.env_state, action, params)
    done = terminated | truncated
    returns = state.episode_returns + reward
    lengths = state.episode_lengths + 1
    state = LogEnvState(
        env_state=env_state,
        episode_returns=jnp.where(done, 0.0, returns),
        episode_lengths=jnp.where(done, 0, lengths),
        returned_episode_returns=jnp.where(done, returns, state.returned_episode_returns),
        returned_episode_lengths=jnp.where(done, lengths, state.returned_episode_lengths),
    )
    info = {**info, "returned_episode": done,
            "returned_episode_lengths": state.returned_episode_lengths}
    return obs, state, reward, done, info


def plain_loop(env: Any, params: Any, num_envs: int, num_updates: int, num_steps: int):
    """A PureJaxRL-shaped loop with random actions: `num_updates` rollouts of `num_steps`
    vmapped `log_step`s (a scan of scans). The returned function run(key, refresh) refreshes
    params' pool before each rollout where `refresh` (a traced bool), as scalelab's trainer
    does for the "caller" form.

    run returns per step (num_updates * num_steps, num_envs): the level id of each env's state
    after the step, whether the step ended an episode, and the returned episode lengths.
    """
    reset = jax.vmap(lambda k: log_reset(env, k, params))
    step = jax.vmap(lambda k, s, a, p: log_step(env, k, s, a, p), in_axes=(0, 0, 0, None))

    @jax.jit
    def run(key: jax.Array, refresh: jax.Array):
        k_reset, k_run = jax.random.split(key)
        _, state = reset(jax.random.split(k_reset, num_envs))

        def update(carry, k_update):
            state, env_params = carry
            k_refresh, k_steps = jax.random.split(k_update)
            env_params = jax.lax.cond(refresh, env.refresh_levels, lambda k, p: p,
                                      k_refresh, env_params)

            def env_step(state, k):
                k_act, k_step = jax.random.split(k)
                action = jax.random.randint(k_act, (num_envs,), 0, env.num_actions)
                _, state, _, done, info = step(jax.random.split(k_step, num_envs), state,
                                               action, env_params)
                return state, (state.env_state.level_id, done,
                               info["returned_episode_lengths"])

            state, out = jax.lax.scan(env_step, state, jax.random.split(k_steps, num_steps))
            return (state, env_params), out

        _, out = jax.lax.scan(update, (state, params), jax.random.split(k_run, num_updates))
        return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), out)

    return lambda key, refresh=False: jax.tree.map(np.asarray, run(key, refresh))


def reset_ids(ids: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Level ids that resets started, in time order."""
    return ids[done]


def first_meetings(ids: np.ndarray, known: set[int]) -> np.ndarray:
    """Per id in order, whether it is met for the first time (not in `known` nor earlier)."""
    seen = set(known)
    out = []
    for i in ids.tolist():
        out.append(i not in seen)
        seen.add(i)
    return np.asarray(out)


@pytest.mark.parametrize("name", GAMES)
def test_third_party_loop_keeps_meeting_new_levels(name):
    env, params = envs_jax.make(name, pool_size=16, refresh_size=8,
                                max_steps_in_episode=EPISODE_LIMIT)
    run = plain_loop(env, params, NUM_ENVS, num_updates=4, num_steps=16)
    ids, done, lengths = run(jax.random.PRNGKey(0))
    assert done.sum() >= NUM_ENVS * 4 * 16 // EPISODE_LIMIT  # at least the truncations
    assert lengths.max() <= EPISODE_LIMIT and lengths[done].min() >= 1
    met = reset_ids(ids, done)
    new = first_meetings(met, set(np.asarray(params.pool_ids).tolist()))
    # every quarter of the run starts episodes on levels never met before (not made by make)
    for quarter in np.array_split(new, 4):
        assert quarter.sum() >= len(quarter) // 4, (name, new.astype(int))


@pytest.fixture(scope="module")
def coinrun_met():
    """Reset level ids met by the same loop under the default form, under the trainer's
    "caller" form refreshed every rollout, and under the "caller" form never refreshed."""
    kw = dict(pool_size=32, refresh_size=8, max_steps_in_episode=EPISODE_LIMIT)
    env, plain = envs_jax.make("CoinRun-v0", **kw)
    caller = env.make_params(level_refresh="caller", **kw)
    runs = {"step": plain_loop(env, plain, 16, num_updates=50, num_steps=8),
            "caller": plain_loop(env, caller, 16, num_updates=50, num_steps=8)}
    out = {}
    for form, run, refresh in (("plain", runs["step"], False), ("trainer", runs["caller"], True),
                               ("held", runs["caller"], False)):
        ids, done, _ = run(jax.random.PRNGKey(0), refresh)
        out[form] = reset_ids(ids, done)
    return env, plain, out


def test_plain_loop_levels_are_distributed_as_under_the_trainer(coinrun_met):
    """Levels that resets start are distributed as freshly drawn ones under both forms (KS on
    the level id and on the level length, chi-square on difficulty), and both forms meet new
    levels at a steady rate; a never-refreshed pool is caught by the same checks."""
    env, params, met = coinrun_met
    n = 800
    fresh_ids = np.asarray(jax.random.randint(jax.random.PRNGKey(6), (n,), 0, LEVEL_ID_MAX))
    fresh = env.generate_levels(fresh_ids, params)
    critical = 1.3 * 1.95 * np.sqrt(2 / n)  # KS at alpha = 0.001, widened for pool repeats
    known = set(np.asarray(params.pool_ids).tolist())
    rates = {}
    for form in ("plain", "trainer"):
        ids = met[form][-n:]
        assert len(ids) == n
        levels = env.generate_levels(ids, params)
        assert ks_statistic(ids / LEVEL_ID_MAX, fresh_ids / LEVEL_ID_MAX) < critical, form
        a, b = np.asarray(levels.goal_x), np.asarray(fresh.goal_x)
        assert ks_statistic(a, b) < critical, form
        ca = np.bincount(np.asarray(levels.difficulty), minlength=4)[1:]
        cb = np.bincount(np.asarray(fresh.difficulty), minlength=4)[1:]
        expected = (ca + cb) / 2
        chi2 = float((((ca - expected) ** 2 + (cb - expected) ** 2) / expected).sum())
        assert chi2 < 2 * 13.8, (form, ca, cb)  # chi2(2) 0.999 quantile, doubled for repeats
        new = first_meetings(met[form], known)
        rates[form] = [q.mean() for q in np.array_split(new[len(new) // 4:], 3)]
        assert min(rates[form]) > 0.2, (form, rates[form])
    # the two forms renew levels at comparable rates (within a factor of 3 of each other)
    assert 1 / 3 < np.mean(rates["plain"]) / np.mean(rates["trainer"]) < 3, rates
    # power: the "caller" form driven without refresh plays make's pool forever
    held = first_meetings(met["held"], known)
    assert not held.any() and set(met["held"].tolist()) <= known


def test_env_stepped_alone_starts_each_episode_on_a_fresh_level():
    """No vmap: the state's slot is the next episode's level, regenerated at each reset."""
    env, params = envs_jax.make("CoinRun-v0", pool_size=16, refresh_size=8,
                                max_steps_in_episode=4)

    @jax.jit
    def run(key):
        _, state = env.reset(key, params)

        def body(state, k):
            _, state, _, term, trunc, _ = env.step(k, state, jnp.int32(4), params)
            return state, (state.level_id, term | trunc)

        return jax.lax.scan(body, state, jax.random.split(key, 40))[1]

    ids, done = (np.asarray(a) for a in run(jax.random.PRNGKey(0)))
    met = ids[done]
    assert len(met) == 10 and len(set(met.tolist())) == 10
    assert not set(met[1:].tolist()) & set(np.asarray(params.pool_ids).tolist())
