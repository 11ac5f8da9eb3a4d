"""Every algorithm inside the member-vmapped chunk function: a member trains the same alone as in
a group, EWMA decay 0 reduces to the plain algorithm, PPG's auxiliary phase runs on schedule."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_algos import TwoTower

import envs_jax
from scalelab.members import (
    ChunkStatic,
    MemberHparams,
    init_key,
    init_members,
    make_chunk_fn,
    member_root_keys,
)

NUM_ENVS, ROLLOUT = 4, 8


@pytest.fixture(scope="module")
def cartpole():
    return envs_jax.make("CartPole-v1")


@functools.cache
def make_static(env, algo, objective="clip", k=4, epochs=1, minibatches=1, n_pi=2,
                noise=False):
    """(static, net, jitted chunk), cached so that equal shapes reuse one compiled program."""
    net = TwoTower(num_actions=env.num_actions)
    static = ChunkStatic(
        env=env, apply_fn=net.apply, num_envs=NUM_ENVS, rollout_length=ROLLOUT,
        update_epochs=epochs, num_minibatches=minibatches, updates_per_chunk=k,
        total_updates=100, algo=algo, objective=objective, value_epochs=2, ppg_n_pi=n_pi,
        aux_epochs=2, aux_num_minibatches=4,
        aux_apply_fn=functools.partial(net.apply, return_aux=True), noise_scale=noise,
    )
    return static, net, jax.jit(make_chunk_fn(static))


def run(setup, env_params, seeds, lrs, decays=None):
    static, net, chunk = setup
    keys = member_root_keys(seeds)
    params = jax.vmap(lambda k: net.init(init_key(k), jnp.zeros((1, 4))))(keys)
    m = len(seeds)
    hp = MemberHparams(
        lr=jnp.asarray(lrs, jnp.float32), gamma=jnp.full(m, 0.99), gae_lambda=jnp.full(m, 0.95),
        clip_eps=jnp.full(m, 0.2), ent_coef=jnp.full(m, 0.01), vf_coef=jnp.full(m, 0.5),
        max_grad_norm=jnp.full(m, 0.5), kl_coef=0.5,
        ewma_decay=0.889 if decays is None else jnp.asarray(decays, jnp.float32))
    state = init_members(static, hp, keys, params, env_params)
    return chunk(state, hp, env_params)


# Plain clipped PPO's member tests are the trainer's (tests/test_members.py). Every program here
# has two members and one minibatch, so the decay-0 test below reuses these compilations.
@pytest.mark.parametrize("algo,objective", [
    ("ppo_ewma", "clip"), ("ppg", "clip"), ("ppg_ewma", "kl")])
def test_member_is_independent_of_its_neighbours(cartpole, algo, objective):
    # member (seed 1, lr 3e-3) next to two different neighbours, in one compiled program
    env, env_params = cartpole
    setup = make_static(env, algo, objective)
    group, gm = run(setup, env_params, [0, 1], [1e-3, 3e-3])
    other, om = run(setup, env_params, [1, 7], [3e-3, 1e-2])
    jax.tree.map(lambda g, a: np.testing.assert_allclose(g[1], a[0], rtol=2e-5, atol=1e-7),
                 group.params, other.params)
    np.testing.assert_array_equal(gm.reward_sum[1], om.reward_sum[0])
    # neighbours with other seeds and lrs trained differently
    assert not np.allclose(group.params["params"]["policy_head"]["kernel"][0],
                           group.params["params"]["policy_head"]["kernel"][1])
    if algo.startswith("ppg"):
        # N_π = 2: the auxiliary phase ran after updates 2 and 4, and only then
        np.testing.assert_array_equal(gm.aux_phase, [[0, 1, 0, 1]] * 2)
        assert np.all(np.asarray(gm.aux_value_loss)[:, 1::2] > 0)
        assert np.all(np.asarray(gm.aux_kl)[:, 1::2] > -1e-6)  # a KL, up to rounding
    if objective == "kl" or algo.endswith("ewma"):
        assert np.all(np.isfinite(gm.prox_kl))


@pytest.mark.parametrize("plain,ewma,objective", [
    ("ppo", "ppo_ewma", "clip"), pytest.param("ppg", "ppg_ewma", "kl", marks=pytest.mark.slow)])
def test_ewma_decay_zero_is_the_plain_algorithm(cartpole, plain, ewma, objective):
    # With one policy step per iteration, a decay-0 average is the weights after the previous
    # step, i.e. the behaviour policy: the -EWMA algorithm must then train exactly like the plain
    # one (plain clipped PPO goes through the trainer's own PPO update: an independent path).
    env, env_params = cartpole
    ref, ref_m = run(make_static(env, plain, objective), env_params, [5, 6], [3e-3, 3e-3])
    got, got_m = run(make_static(env, ewma, objective), env_params, [5, 5], [3e-3, 3e-3],
                     decays=[0.0, 0.9])
    jax.tree.map(lambda r, g: np.testing.assert_allclose(g[0], r[0], rtol=1e-4, atol=1e-6),
                 ref.params, got.params)
    np.testing.assert_allclose(got_m.policy_loss[0], ref_m.policy_loss[0], rtol=1e-4, atol=1e-6)
    if objective == "kl":
        # decay 0.9 (same seed, same program) keeps an older proximal policy: the KL term pulls
        assert float(got_m.prox_kl[1, -1]) > 0 and float(got_m.prox_kl[0, -1]) < 1e-9
        diff = jax.tree.leaves(jax.tree.map(lambda g: float(jnp.max(jnp.abs(g[1] - g[0]))),
                                            got.params["params"]["policy_head"]))
        assert max(diff) > 1e-6


def test_ewma_is_reset_after_each_aux_phase(cartpole):
    env, env_params = cartpole
    state, _ = run(make_static(env, "ppg_ewma", "kl"), env_params, [0, 1], [1e-3, 1e-3])
    # the chunk ended with an auxiliary phase: the average restarts at the current weights
    np.testing.assert_array_equal(state.ewma.weight, [1.0, 1.0])
    jax.tree.map(np.testing.assert_array_equal, state.ewma.params, state.params)



@pytest.mark.slow
def test_noise_scale_probe_measures_without_changing_training(cartpole):
    env, env_params = cartpole
    plain, pm = run(make_static(env, "ppo", minibatches=4), env_params, [3, 4], [1e-3, 1e-3])
    probed, qm = run(make_static(env, "ppo", minibatches=4, noise=True), env_params, [3, 4],
                     [1e-3, 1e-3])
    jax.tree.map(np.testing.assert_array_equal, probed.params, plain.params)
    np.testing.assert_array_equal(pm.noise_trace, 0.0)
    # tr(Σ) is a sum of variances: positive in expectation and, with 8-sample minibatches of
    # CartPole, in every update; |G|² is estimated too (either sign for a single update)
    assert np.all(np.asarray(qm.noise_trace) > 0) and np.all(np.isfinite(qm.noise_g2))
