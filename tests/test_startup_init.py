"""The runner's initial state (one compiled program for all groups, `lax.map` over the members of
each network config) gives each member exactly the state of initializing it alone: its params
at its own width, zero-padded to its group's network, its level pool and its member state
(optimizer, env resets, counters), every leaf bit-identical; and a second init_state compiles
nothing."""

from functools import partial

import jax
import numpy as np
import pytest
from sweep_helpers import tiny_spec

from scalelab import members
from scalelab.members import MemberHparams
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner, _init_padded
from scalelab.sweep.spec import parse_spec

SPEC = """
name = "init"
[env]
name = "{env}"
{env_kwargs}
[network]
family = "{family}"
[train]
num_envs = 4
rollout_length = 8
{train}
[budget]
interactions = 64
[lr]
base = 1e-3
[plan]
max_padding_overhead = 100.0
[axes]
width = {widths}
seed = [0, 3]
"""
# ppg_ewma: phasic optimizers, an aux buffer and EWMA params; on CoinRun (small level pools)
# also per-member level pools
POOLS = "[env.kwargs]\npool_size = 16\nrefresh_size = 8"
PPG = 'level_seed = 5\nalgo = "ppg_ewma"\nobjective = "kl"\nppg_n_pi = 2\naux_epochs = 1'


def _alone(runner, i):
    """Member i's initial state (and level pool, or ()) computed for it alone: its params by
    `_init_padded` under its own jit, then `members.init_members` of one member."""
    plan = runner.plan
    m = plan.members[i]
    static = runner.statics[m.group]
    keys = members.member_root_keys([m.seed])
    env_params = runner._env_params_host
    params = jax.jit(partial(_init_padded, runner.networks[i], plan.groups[m.group].network,
                             plan.obs_shape, plan.num_actions))(keys[0])
    pool = (jax.jit(partial(members.init_level_pools, static))(keys, env_params)
            if runner.member_pools else ())
    state = members.init_members(
        static, MemberHparams.from_config(runner.configs[i], 1), keys,
        jax.tree.map(lambda x: x[None], params), pool if runner.member_pools else env_params)
    return state, pool


def _assert_equal_at(got, alone, slot, what):
    leaves, tree = jax.tree.flatten(got)
    ref, ref_tree = jax.tree.flatten(alone)
    assert tree == ref_tree, what
    for k, (a, b) in enumerate(zip(leaves, ref, strict=True)):
        a, b = np.asarray(a)[slot], np.asarray(b)[0]
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{what}: leaf {k}"


@pytest.mark.parametrize(("env", "env_kwargs", "family", "widths", "train"), [
    pytest.param("CartPole-v1", "", "mlp", "[0.25, 0.5]", "", id="cartpole"),
    pytest.param("CartPole-v1", "", "mlp", "[0.25, 0.5]", PPG, id="cartpole_ppg_ewma",
                 marks=pytest.mark.slow),
    pytest.param("MNIST-v0", "", "mnist_cnn", "[0.03125, 0.0625]", "", id="mnist"),
    # the level pools' generation compiles for ~half a minute per program here
    pytest.param("CoinRun-v0", POOLS, "mlp", "[0.0625, 0.125]", PPG, id="coinrun_ppg_ewma",
                 marks=pytest.mark.slow),
])
def test_initial_state_equals_members_initialized_alone(env, env_kwargs, family, widths, train):
    runner = FusedRunner(make_plan(parse_spec(SPEC.format(
        env=env, env_kwargs=env_kwargs, family=family, widths=widths, train=train), "init.toml")))
    plan = runner.plan
    assert len(plan.groups) == 1 and len(plan.members) == 4
    state = runner.init_state()
    for i, m in enumerate(plan.members):
        alone, pool = _alone(runner, i)
        _assert_equal_at(state.groups[m.group], alone, m.slot, f"member {i}")
        if runner.member_pools:
            _assert_equal_at(state.env_params[m.group], pool, m.slot, f"member {i} pool")
    assert runner.member_pools == (env == "CoinRun-v0")
    for frozen, fault in zip(state.frozen, state.fault_update, strict=True):
        assert not np.asarray(frozen).any() and (np.asarray(fault) == -1).all()
    assert int(state.chunk) == 0 and int(state.updates) == 0
    target = runner.abstract_state()
    assert jax.tree.structure(state) == jax.tree.structure(target)
    for x, t in zip(jax.tree.leaves(state), jax.tree.leaves(target), strict=True):
        assert (x.shape, x.dtype, x.sharding) == (t.shape, t.dtype, t.sharding)

    # a second init_state runs the same compiled program again: the same state, no new compile
    cached = dict(runner._jitted)
    again = runner.init_state()
    assert runner._jitted == cached and all(f._cache_size() == 1 for f in cached.values())
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again), strict=True):
        assert np.array_equal(a, b)


def test_compile_ahead_compiles_the_program_compiled_chunk_would():
    """The chunk program compiled in the background from the abstract state is the one compiled
    from the initial state (the same lowered text, scalelab's XLA options), and it runs to
    bit-identical results."""
    text = tiny_spec("ahead", num_minibatches=2, axes="width = 0.015625\nseed = [0, 1]")
    text = text.replace('name = "CartPole-v1"', 'name = "MNIST-v0"').replace('"mlp"', '"mnist_cnn"')
    plan = make_plan(parse_spec(text, "<test>"))
    envs, updates = plan.chunks[0]
    ahead = FusedRunner(plan)
    ahead.compile_ahead()
    assert list(ahead._ahead) == [(envs, updates)]
    state = ahead.init_state()
    assert (ahead.lower_chunk(ahead.abstract_state(), updates).as_text()
            == ahead.lower_chunk(state, updates).as_text())
    plain = FusedRunner(plan)
    plain_state = plain.init_state()
    outs = [jax.tree.map(np.asarray, runner.step(s, updates))
            for runner, s in ((ahead, state), (plain, plain_state))]
    assert not ahead._ahead and ahead.compile_seconds > 0
    if ahead.platform == "cpu":  # compiled with scalelab's options for conv nets
        assert "ynn_fusion" not in ahead.compiled_chunk(state, updates).as_text()
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
        np.testing.assert_array_equal(a, b)
