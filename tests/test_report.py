"""Host-side reductions of chunk metrics and the curve output helpers, on synthetic numbers."""

import dataclasses

import numpy as np

from scalelab import report
from scalelab.config import TrainConfig
from scalelab.members import UpdateMetrics
from scalelab.sweep.run import window_means
from scalelab.train import RunResult


def testwindow_means_of_a_chunk():
    batch = 10  # K = 3 updates per chunk
    rewards = np.array([[1.0, 2.0, 3.0], [10.0, 0.0, 5.0]])
    episodes = np.array([[0, 2, 1], [0, 0, 0]])
    ret_sum = np.array([[0.0, 7.0, 5.0], [0.0, 0.0, 0.0]])
    len_sum = np.array([[0, 9, 4], [0, 0, 0]])
    losses = np.arange(6, dtype=float).reshape(2, 3)
    m = UpdateMetrics(rewards, episodes, ret_sum, len_sum, *([losses] * 7))
    w = window_means(m, batch)
    np.testing.assert_allclose(w["reward_per_step"], [6 / 30, 15 / 30])
    np.testing.assert_allclose(w["episode_return"][0], 12 / 3)
    np.testing.assert_allclose(w["episode_length"][0], 13 / 3)
    assert np.isnan(w["episode_return"][1]) and np.isnan(w["episode_length"][1])
    np.testing.assert_allclose(w["entropy"], [1.0, 4.0])
    np.testing.assert_array_equal(w["episodes"], [3, 0])


def fake_result(score):
    score = np.asarray(score, float)
    t = score.shape[1]
    return RunResult(
        config=TrainConfig(env="CartPole-v1"), seeds=tuple(range(score.shape[0])),
        interactions=np.arange(1, t + 1) * 100, score=score, score_kind="episode_return",
        network="mlp", obs_shape=(4,), params=123, flops_per_interaction=456,
        metrics={"entropy": np.ones_like(score)}, valid=np.ones(score.shape, bool),
        final_params=None, compile_seconds=1.0,
        train_seconds=2.0)


def test_mean_curve_skips_nan_and_finds_first_crossing():
    r = fake_result([[1.0, np.nan, 5.0, 9.0], [3.0, 4.0, np.nan, 7.0]])
    np.testing.assert_allclose(report.mean_curve(r), [2.0, 4.0, 5.0, 8.0])
    assert report.interactions_to_reach(r, 4.5) == 300
    assert report.interactions_to_reach(r, 9.0) is None
    assert "never" in report.summary(r, target=9.0)


def test_summary_says_when_the_network_was_chosen_by_observation_shape():
    r = fake_result([[1.0, 2.0]])
    assert "CartPole-v1 mlp (default for observation shape 4) width=1" in report.summary(r)
    chosen = dataclasses.replace(r, config=TrainConfig(env="CartPole-v1", network="mlp"))
    assert "CartPole-v1 mlp width=1" in report.summary(chosen)


def test_plot_writes_a_png(tmp_path):
    r = fake_result([[1.0, 2.0], [3.0, np.nan]])
    report.plot_curves([r], tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
