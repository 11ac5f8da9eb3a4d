"""Slow learning checks: PPO solves CartPole-v1 and reaches 90% training accuracy on MNIST-v0."""

import numpy as np
import pytest

from scalelab import TrainConfig, train

pytestmark = pytest.mark.slow


def test_cartpole_learns_with_purejaxrl_defaults():
    result = train(TrainConfig.preset("CartPole-v1", updates_per_chunk=61), num_seeds=8,
                   progress=False)
    assert result.score.shape == (8, 16)
    assert np.nanmean(result.score[:, 0]) < 100  # it starts near random (~20)
    assert np.nanmean(result.score[:, -1]) >= 400


def test_mnist_reaches_90_percent_training_accuracy():
    result = train(TrainConfig.preset("MNIST-v0", width=0.125), num_seeds=2, progress=False)
    assert result.score[:, 0].mean() < 0.5  # chance is 0.1
    assert result.score[:, -1].min() >= 0.9
