"""Tests for the MNIST-v0 environment: gymnax API, sampling, rewards, truncation, registry."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mnist_helpers import canonical_mnist_path
from scipy import stats

import envs_jax
from envs_jax.data import CustomMnistWarning, MnistDataError, load_mnist
from envs_jax.mnist import MNISTEnv, params_from_arrays

N_IMAGES = 40
# Reject uniformity only at p < 1e-4: a correct sampler fails this with probability 1e-4.
P_MIN = 1e-4


def coded_params(max_steps: int = 512, seed: int = 0):
    """Image i has every pixel equal to i, so an observation names its own index."""
    images = np.broadcast_to(np.arange(N_IMAGES, dtype=np.uint8)[:, None, None], (N_IMAGES, 28, 28))
    labels = np.random.default_rng(seed).integers(0, 10, N_IMAGES)
    return params_from_arrays(images, labels, max_steps), labels


def index_of(obs):
    return np.asarray(obs)[..., 0, 0, 0].astype(np.int64)


def rollout(env, params, key, actions):
    """Reset, then step with `actions` (T,); returns obs before each step and step outputs."""
    keys = jax.random.split(key, len(actions) + 1)
    obs0, state0 = env.reset(keys[0], params)

    def body(carry, inputs):
        obs, state = carry
        k, a = inputs
        next_obs, next_state, reward, terminated, truncated, info = env.step(k, state, a, params)
        out = (obs, next_obs, next_state, reward, terminated, truncated, info)
        return (next_obs, next_state), out

    _, outs = jax.lax.scan(body, (obs0, state0), (keys[1:], jnp.asarray(actions)))
    return jax.device_get(outs)


@pytest.fixture
def synthetic_npz(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 30),
        x_test=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 5),
    )
    return path


@pytest.fixture(scope="module")
def real_mnist():
    return canonical_mnist_path()


def test_api_shapes_dtypes_and_spaces():
    env, (params, _) = MNISTEnv(), coded_params()
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == (28, 28, 1) and obs.dtype == jnp.uint8
    assert env.observation_space(params).shape == (28, 28, 1)
    assert env.observation_space(params).contains(obs)
    assert env.num_actions == 10 and env.action_space(params).n == 10
    obs2, state2, reward, terminated, truncated, info = env.step(
        jax.random.key(1), state, 3, params
    )
    assert obs2.shape == (28, 28, 1) and obs2.dtype == jnp.uint8
    assert reward.dtype == jnp.float32 and reward.shape == ()
    assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    assert info["final_observation"].shape == (28, 28, 1)
    assert int(state2.time) == 1


def test_jit_vmap_match_single_calls_and_keys_determine_results():
    env, (params, _) = MNISTEnv(), coded_params(max_steps=2)
    keys = jax.random.split(jax.random.key(1), 16)
    obs, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    actions = jnp.arange(16) % 10
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    batched = step(keys, states, actions, params)
    for i in range(16):
        o, s = env.reset(keys[i], params)
        np.testing.assert_array_equal(o, obs[i])
        single = env.step(keys[i], s, actions[i], params)
        for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_array_equal(got[i], want)
    again = step(keys, states, actions, params)
    jax.tree.map(np.testing.assert_array_equal, batched, again)
    # Different keys show different digits (16 equal draws from 40 would be p ~ 1e-24).
    assert len(set(index_of(batched[0]).tolist())) > 1


def test_digits_uniform_and_labels_match_images():
    env, (params, labels) = MNISTEnv(), coded_params()
    draws = 400 * N_IMAGES
    keys = jax.random.split(jax.random.key(2), draws)
    _, state = env.reset(keys[0], params)
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (draws, *x.shape)), state)
    obs, new_states, *_ = jax.jit(jax.vmap(env.step, in_axes=(0, 0, None, None)))(
        keys, states, 0, params
    )
    shown = index_of(obs)
    np.testing.assert_array_equal(np.asarray(new_states.index), shown)
    np.testing.assert_array_equal(np.asarray(new_states.label), labels[shown])
    counts = np.bincount(shown, minlength=N_IMAGES)
    assert stats.chisquare(counts).pvalue > P_MIN
    reset_obs, _ = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    assert stats.chisquare(np.bincount(index_of(reset_obs), minlength=N_IMAGES)).pvalue > P_MIN


def test_consecutive_digits_independent():
    env, (params, _) = MNISTEnv(), coded_params(max_steps=7)
    out = rollout(env, params, jax.random.key(3), np.zeros(6000, np.int32))
    before, after = index_of(out[0]) % 10, index_of(out[1]) % 10
    table = np.zeros((10, 10))
    np.add.at(table, (before, after), 1)
    assert stats.chi2_contingency(table).pvalue > P_MIN


def test_reward_is_action_equals_label_against_numpy():
    env, (params, labels) = MNISTEnv(), coded_params(max_steps=5)
    actions = np.random.default_rng(4).integers(0, 10, 3000).astype(np.int32)
    shown_obs, _, _, reward, *_ = rollout(env, params, jax.random.key(5), actions)
    expected = (actions == labels[index_of(shown_obs)]).astype(np.float32)
    np.testing.assert_array_equal(reward, expected)
    assert 0 < expected.sum() < len(expected)


def test_truncation_every_max_steps_and_final_observation():
    max_steps, steps = 5, 23
    env, (params, labels) = MNISTEnv(), coded_params(max_steps=max_steps)
    obs, next_obs, state, _, terminated, truncated, info = rollout(
        env, params, jax.random.key(6), np.zeros(steps, np.int32)
    )
    step_number = np.arange(1, steps + 1)
    np.testing.assert_array_equal(truncated, step_number % max_steps == 0)
    assert not terminated.any()
    np.testing.assert_array_equal(state.time, step_number % max_steps)
    np.testing.assert_array_equal(info["truncated"], truncated)
    np.testing.assert_array_equal(info["terminated"], terminated)
    # The pre-reset observation is a fresh i.i.d. digit that also opens the next episode, so it
    # is the observation returned, and the next step is scored against its label.
    np.testing.assert_array_equal(info["final_observation"], next_obs)
    np.testing.assert_array_equal(labels[index_of(info["final_observation"])], state.label)


def test_step_without_params_is_a_clear_error():
    env, (params, _) = MNISTEnv(), coded_params()
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(ValueError, match="need env_params"):
        env.step(jax.random.key(0), state, 0)
    with pytest.raises(ValueError, match="need env_params"):
        env.reset(jax.random.key(0))


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((4, 28, 28), np.float32), np.zeros(4, int), "images must be uint8"),
        (np.zeros((4, 28, 28, 3), np.uint8), np.zeros(4, int), "images must be uint8"),
        (np.zeros((0, 28, 28), np.uint8), np.zeros(0, int), "images is empty"),
        (np.zeros((4, 28, 28), np.uint8), np.zeros(3, int), r"labels must be integers of shape"),
        (np.zeros((4, 28, 28), np.uint8), np.full(4, 10), r"labels must lie in \[0, 10\)"),
    ],
)
def test_params_from_arrays_rejects_bad_data(images, labels, message):
    with pytest.raises(ValueError, match=message):
        params_from_arrays(images, labels)


@pytest.mark.filterwarnings("ignore::envs_jax.data.CustomMnistWarning")
def test_make_loads_data_once_and_applies_overrides(synthetic_npz):
    assert "MNIST-v0" in envs_jax.registered_names()
    env, params = envs_jax.make(
        "MNIST-v0", path=synthetic_npz, allow_custom=True, max_steps_in_episode=7
    )
    assert isinstance(env, MNISTEnv) and params.max_steps_in_episode == 7
    saved = np.load(synthetic_npz)
    np.testing.assert_array_equal(params.images[..., 0], saved["x_train"])
    np.testing.assert_array_equal(params.labels, saved["y_train"])
    assert params.labels.dtype == jnp.int32
    _, again = envs_jax.make("MNIST-v0", path=synthetic_npz, allow_custom=True)
    assert again.images is params.images and again.max_steps_in_episode == 512
    assert env.default_params.images is params.images
    assert env == envs_jax.make("MNIST-v0", path=synthetic_npz, allow_custom=True)[0]
    assert env != MNISTEnv(None) and env != MNISTEnv(synthetic_npz)
    with pytest.raises(ValueError, match=r"unknown env params \['max_steps'\]"):
        envs_jax.make("MNIST-v0", path=synthetic_npz, allow_custom=True, max_steps=3)
    with pytest.raises(ValueError, match="max_steps_in_episode must be a positive integer"):
        envs_jax.make("MNIST-v0", path=synthetic_npz, allow_custom=True, max_steps_in_episode=0)


def test_make_verifies_the_data_unless_custom_is_allowed(synthetic_npz, monkeypatch):
    monkeypatch.delenv("SCALELAB_MNIST_ALLOW_CUSTOM", raising=False)
    with pytest.raises(MnistDataError, match=f"{synthetic_npz} .*differs from canonical MNIST"):
        envs_jax.make("MNIST-v0", path=synthetic_npz)
    with pytest.raises(MnistDataError, match="differs from canonical MNIST"):
        _ = MNISTEnv(synthetic_npz).default_params
    with pytest.raises(ValueError, match="allow_custom must be true or false, got 'yes'"):
        envs_jax.make("MNIST-v0", path=synthetic_npz, allow_custom="yes")
    with pytest.warns(CustomMnistWarning, match=str(synthetic_npz)):
        _, params = envs_jax.make("MNIST-v0", path=synthetic_npz, allow_custom=True)
    assert params.images.shape == (30, 28, 28, 1)
    with pytest.warns(CustomMnistWarning, match=str(synthetic_npz)):
        custom = MNISTEnv(synthetic_npz, allow_custom=True).default_params
    assert custom.images is params.images


def test_score_kind():
    assert envs_jax.score_kind("MNIST-v0") == "reward_per_step"
    assert envs_jax.score_kind("CartPole-v1") == "episode_return"
    with pytest.raises(ValueError, match="unknown environment 'Nope-v0'"):
        envs_jax.score_kind("Nope-v0")
    with pytest.raises(ValueError, match="score_kind must be one of"):
        envs_jax.register("Other-v0", lambda: None, score_kind="accuracy")
    assert "Other-v0" not in envs_jax.registered_names()


def test_real_mnist_sampling_and_rewards(real_mnist):
    data = load_mnist(real_mnist)
    assert data["x_train"].shape == (60000, 28, 28) and data["x_test"].shape == (10000, 28, 28)
    x, y = data["x_train"], data["y_train"]
    env, params = envs_jax.make("MNIST-v0")
    actions = np.random.default_rng(8).integers(0, 10, 4000).astype(np.int32)
    _, next_obs, state, reward, *_ = rollout(env, params, jax.random.key(9), actions)
    np.testing.assert_array_equal(next_obs, x[state.index][..., None])
    np.testing.assert_array_equal(state.label, y[state.index])
    # Step t > 0 is scored against the digit that step t - 1 put on show.
    np.testing.assert_array_equal(reward[1:], actions[1:] == y[state.index[:-1]])
    expected = len(actions) * np.bincount(y, minlength=10) / len(y)
    assert stats.chisquare(np.bincount(state.label, minlength=10), expected).pvalue > P_MIN
