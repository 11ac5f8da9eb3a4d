"""`train` on a level-pool env: every member owns its pool, so seeds share no level stream and a
member trained among others equals the same member trained alone."""

import dataclasses

import jax
import numpy as np
import pytest

from scalelab import TrainConfig, train
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner
from scalelab.sweep.spec import parse_spec, spec_for_config

# A tiny MLP on CoinRun's pixels keeps the compile short; 2 updates refresh the whole pool.
CONFIG = TrainConfig(env="CoinRun-v0", env_kwargs=dict(pool_size=16, refresh_size=8),
                     network="mlp", width=1 / 16, num_envs=2, rollout_length=8,
                     total_interactions=32, update_epochs=1, num_minibatches=2,
                     updates_per_chunk=2)


def _initial_pool_ids(config, num_seeds):
    runner = FusedRunner(make_plan(parse_spec(spec_for_config(config, num_seeds))))
    return np.asarray(runner.init_state().env_params[0].pool_ids)


def test_members_own_level_pools_that_depend_on_their_seed_alone():
    ids = _initial_pool_ids(CONFIG, 2)
    assert ids.shape == (2, 16)
    assert not set(ids[0]) & set(ids[1])  # seeds share no level
    alone = _initial_pool_ids(dataclasses.replace(CONFIG, seed=1), 1)
    np.testing.assert_array_equal(alone[0], ids[1])


@pytest.mark.slow
def test_member_among_seeds_equals_it_alone():
    both = train(CONFIG, num_seeds=2, progress=False)
    alone = train(dataclasses.replace(CONFIG, seed=1), num_seeds=1, progress=False)
    for k in ("policy_loss", "value_loss", "entropy", "episodes"):
        np.testing.assert_allclose(both.metrics[k][1], alone.metrics[k][0], rtol=2e-5,
                                   atol=1e-6, err_msg=k)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b[0], rtol=2e-5, atol=1e-6),
                 both.final_params, alone.final_params)
    assert not np.allclose(both.metrics["policy_loss"][0], both.metrics["policy_loss"][1])
