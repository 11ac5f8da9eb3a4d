"""Batch-size schedules: the power law and greedy rules, their fit, growing members, and
TrainConfig's validation of the algorithm and schedule fields."""

import functools
import json

import jax
import numpy as np
import pytest
from test_algo_members import make_static, run

import envs_jax
from scalelab import TrainConfig, train
from scalelab.algos.batch_schedule import BatchSchedule, fit_power_schedule
from scalelab.members import grow_members
from scalelab.sweep.run import run_spec
from scalelab.sweep.spec import spec_for_config


def test_power_schedule_doubles_from_the_floor_and_respects_the_cap():
    s = BatchSchedule("power", min_envs=4, max_envs=40, power=0.5, e0=1000.0)
    assert s.power_envs(500) == 4 and s.power_envs(1000) == 4
    # B/B_min = sqrt(E/E0): 2 at 4000, 4 at 16000, 9.5 at 90000 -> rounded down to a doubling
    assert [s.power_envs(e) for e in (3999, 4000, 16000, 90000)] == [4, 8, 16, 32]
    assert s.power_envs(1e12) == 32  # 64 would pass max_envs = 40
    assert s.next_envs(16, 4000, np.nan, 8) == 16  # never shrinks


def test_adaptive_schedule_grows_when_noise_scale_exceeds_the_minibatch():
    s = BatchSchedule("adaptive", min_envs=2, max_envs=8)
    assert s.next_envs(2, 0, noise_scale=100.0, minibatch_size=64) == 4
    assert s.next_envs(4, 0, noise_scale=50.0, minibatch_size=64) == 4
    assert s.next_envs(4, 0, noise_scale=np.nan, minibatch_size=64) == 4
    assert s.next_envs(8, 0, noise_scale=1e9, minibatch_size=64) == 8
    assert BatchSchedule("fixed", 2, 8).next_envs(2, 1e9, 1e9, 1) == 2
    with pytest.raises(ValueError, match="batch_schedule"):
        BatchSchedule("cosine", 2, 8)


def test_fit_power_schedule_recovers_a_known_law():
    e0, p, b_min = 5e4, 0.6, 256.0
    e = np.geomspace(6e4, 1e8, 40)
    b = b_min * (e / e0) ** p
    got_e0, got_p = fit_power_schedule(e, b, b_min)
    assert got_p == pytest.approx(p, rel=1e-9) and got_e0 == pytest.approx(e0, rel=1e-6)
    with pytest.raises(ValueError, match="fewer than 2"):
        fit_power_schedule(e, np.full_like(e, b_min), b_min)


def test_grow_members_keeps_running_envs_and_adds_fresh_ones():
    env, env_params = envs_jax.make("CartPole-v1")
    setup = make_static(env, "ppo_ewma")
    state, _ = run(setup, env_params, [0, 1], [1e-3, 1e-3])
    static, grown = grow_members(setup[0], state, 8, env_params)
    assert static.num_envs == 8 and grown.obs.shape[:2] == (2, 8)
    np.testing.assert_array_equal(grown.obs[:, :4], state.obs)
    np.testing.assert_array_equal(grown.episode_length[:, 4:], 0)
    assert not np.allclose(grown.obs[0, 4:], grown.obs[1, 4:])  # each member's own resets
    jax.tree.map(np.testing.assert_array_equal, grown.params, state.params)
    with pytest.raises(ValueError, match="only grow"):
        grow_members(static, grown, 4, env_params)


@functools.cache
def scheduled_run():
    cfg = TrainConfig(env="CartPole-v1", network="mlp", width=0.25, num_envs=2, rollout_length=8,
                      total_interactions=256, update_epochs=1, num_minibatches=2,
                      updates_per_chunk=2, batch_schedule="power",
                      batch_power=1.0, batch_e0=32, batch_max_envs=8)
    return train(cfg, progress=False)


def test_train_follows_the_power_schedule_between_chunks():
    r = scheduled_run()
    b = r.metrics["batch_size"][0]
    # chunks of 2 updates; after each, B = 16·E/32 rounded down to a doubling, capped at 64:
    # E = 32 -> 16, E = 64 -> 32, E = 128 -> 64 (8 envs), E = 256: the budget
    np.testing.assert_array_equal(b, [16, 16, 32, 64])
    np.testing.assert_array_equal(r.interactions, [32, 64, 128, 256])


@pytest.mark.parametrize("field,value,match", [
    ("algo", "a2c", "algo"), ("objective", "tv", "objective"), ("ewma_decay", 1.0, "ewma_decay"),
    ("imp_samp_max", 0.5, "imp_samp_max"), ("ppg_n_pi", 0, "ppg_n_pi"),
    ("batch_schedule", "x", "batch_schedule"),
    ("batch_max_envs", 1, "batch_max_envs"), ("beta_clone", -1.0, "beta_clone")])
def test_train_config_names_bad_algorithm_fields(field, value, match):
    cfg = TrainConfig(env="CartPole-v1", num_envs=2, rollout_length=8, **{field: value})
    with pytest.raises(ValueError, match=match):
        cfg.validate()


def test_train_config_rejects_schedules_that_cannot_work():
    base = dict(env="CartPole-v1", num_envs=2, rollout_length=8)
    with pytest.raises(ValueError, match="anneal_lr"):
        TrainConfig(**base, batch_schedule="power", anneal_lr=True).validate()
    with pytest.raises(ValueError, match="updates_per_chunk"):
        TrainConfig(**base, algo="ppg", batch_schedule="adaptive", ppg_n_pi=4,
                    updates_per_chunk=6).validate()
    with pytest.raises(ValueError, match="num_minibatches"):
        TrainConfig(**base, batch_schedule="adaptive", num_minibatches=1).validate()
    with pytest.raises(ValueError, match="aux_num_minibatches"):
        TrainConfig(**base, algo="ppg", aux_num_minibatches=7).validate()
    # a setting the algorithm ignores is an error, naming what would read it
    with pytest.raises(ValueError, match='aux_num_minibatches: has no effect.*"ppg"'):
        TrainConfig(**base, algo="ppo", aux_num_minibatches=7).validate()
    for field, value in (("kl_coef", 2.0), ("ewma_decay", 0.5), ("imp_samp_max", 3.0)):
        with pytest.raises(ValueError, match=f"{field}: has no effect"):
            TrainConfig(**base, **{field: value}).validate()
    TrainConfig(**base, objective="kl", kl_coef=2.0, imp_samp_max=3.0).validate()


# MNIST's gradient noise scale (~10-100) exceeds a 4-sample minibatch: the batch grows
ADAPTIVE = TrainConfig.preset("MNIST-v0", network="mlp", width=1 / 16, num_envs=2,
                              rollout_length=4, num_minibatches=2, update_epochs=1,
                              total_interactions=256, updates_per_chunk=2,
                              batch_schedule="adaptive", batch_max_envs=8)


def test_adaptive_train_grows_records_its_chunks_and_resumes_exactly(tmp_path):
    full = train(ADAPTIVE, num_seeds=2, out=tmp_path / "full")
    manifest = full.run_dir.joinpath("manifest.json").read_text()
    chunks = json.loads(manifest)["chunks"]
    envs = [e for e, _ in chunks]
    assert envs[0] == 2 and max(envs) > 2 and envs == sorted(envs)
    assert sum(e * n * 4 for e, n in chunks) == full.interactions[-1] <= 256
    np.testing.assert_array_equal(full.metrics["batch_size"][0], [e * 4 for e, _ in chunks])
    # two chunks, then a fresh process-like resume from the run directory
    text = spec_for_config(ADAPTIVE, 2)
    run_spec(text, "adaptive", tmp_path / "part", max_chunks=2)
    resumed = train(ADAPTIVE, num_seeds=2, out=tmp_path / "part")
    np.testing.assert_array_equal(resumed.interactions, full.interactions)
    np.testing.assert_array_equal(resumed.score, full.score)
    for k in ("policy_loss", "value_loss", "batch_size", "noise_scale"):
        np.testing.assert_array_equal(resumed.metrics[k], full.metrics[k], err_msg=k)
