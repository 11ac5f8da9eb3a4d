"""The runner's parameter init (one program per group, `lax.map` over members) gives each member
exactly the params of initializing it alone at its own width, zero-padded to its group's."""

import jax
import numpy as np
import pytest

from scalelab import members
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner, _init_padded
from scalelab.sweep.spec import parse_spec

SPEC = """
name = "init"
[env]
name = "{env}"
[network]
family = "{family}"
[train]
num_envs = 4
rollout_length = 8
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


@pytest.mark.parametrize(("env", "family", "widths"), [
    ("CartPole-v1", "mlp", "[0.25, 0.5]"),
    ("MNIST-v0", "mnist_cnn", "[0.03125, 0.0625]"),
])
def test_group_params_equal_members_initialized_alone(env, family, widths):
    runner = FusedRunner(make_plan(parse_spec(
        SPEC.format(env=env, family=family, widths=widths), "init.toml")))
    plan = runner.plan
    assert len(plan.groups) == 1 and len(plan.members) == 4
    group = plan.groups[0]
    got = runner._group_params(0)
    for s, i in enumerate(runner.slots[0]):
        key = members.member_root_keys([plan.members[i].seed])[0]
        alone = jax.jit(lambda k, i=i: _init_padded(runner.networks[i], group.network,
                                                    plan.obs_shape, plan.num_actions, k))(key)
        jax.tree.map(lambda a, b, s=s: np.testing.assert_array_equal(a[s], b), got, alone)
