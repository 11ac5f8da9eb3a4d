"""TrainConfig validation: every bad field is named before anything compiles."""

import dataclasses

import pytest

from scalelab.config import PRESETS, TrainConfig, default_family


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("env", "NoSuchEnv-v9", "env: unknown environment"),
        ("network", "transformer", "network:"),
        ("num_envs", 0, "num_envs:"),
        ("rollout_length", -3, "rollout_length:"),
        ("rollout_length", 2.5, "rollout_length:"),
        ("total_interactions", 10, "total_interactions: 10 is less than one update"),
        ("update_epochs", 0, "update_epochs:"),
        ("num_minibatches", 3, "num_minibatches: num_envs\\*rollout_length = 1024"),
        ("updates_per_chunk", 0, "updates_per_chunk:"),
        ("lr", 0.0, "lr:"),
        ("lr", float("nan"), "lr:"),
        ("gamma", 1.5, "gamma:"),
        ("gae_lambda", -0.1, "gae_lambda:"),
        ("clip_eps", -0.2, "clip_eps:"),
        ("ent_coef", -1.0, "ent_coef:"),
        ("max_grad_norm", 0, "max_grad_norm:"),
        ("width", 0.0, "width:"),
        ("depth", 0, "depth:"),
        ("seed", -1, "seed:"),
        ("anneal_lr", "yes", "anneal_lr:"),
        ("env_kwargs", ["x"], "env_kwargs:"),
    ],
)
def test_bad_field_is_named(field, value, match):
    cfg = dataclasses.replace(TrainConfig(env="CartPole-v1"), **{field: value})
    with pytest.raises(ValueError, match=match):
        cfg.validate()


def test_unknown_field_is_named():
    with pytest.raises(TypeError, match="learning_rate"):
        TrainConfig(env="CartPole-v1", learning_rate=1e-3)


def test_presets_are_valid_and_overridable():
    for env in PRESETS:
        assert TrainConfig.preset(env).validate().env == env
    cfg = TrainConfig.preset("CartPole-v1", lr=1e-3)
    assert cfg.lr == 1e-3 and cfg.num_envs == 4 and cfg.anneal_lr
    assert cfg.batch_size == 512 and cfg.num_updates == 976


def test_train_rejects_bad_config_and_seed_count_before_compiling():
    from scalelab import train

    with pytest.raises(ValueError, match="num_envs"):
        train(TrainConfig(env="CartPole-v1", num_envs=0))
    with pytest.raises(ValueError, match="num_seeds"):
        train(TrainConfig(env="CartPole-v1"), num_seeds=0)


def test_mnist_preset_scales_lr_as_inverse_sqrt_width():
    base = PRESETS["MNIST-v0"]
    for width in (0.0625, 0.125, 1.0, 4.0):
        lr = TrainConfig.preset("MNIST-v0", width=width).lr
        assert lr == pytest.approx(base["lr"] * (base["lr_ref_width"] / width) ** 0.5, rel=1e-12)
    assert TrainConfig.preset("MNIST-v0", width=4.0, lr=0.1).lr == 0.1
    assert TrainConfig.preset("MNIST-v0").lr == pytest.approx(base["lr"] * 0.125**0.5)


def test_network_mismatch_fails_before_compiling():
    from scalelab import train

    with pytest.raises(ValueError, match="obs_shape"):
        train(TrainConfig(env="CartPole-v1", network="mnist_cnn"), progress=False)
    with pytest.raises(ValueError, match="depth"):
        train(TrainConfig(env="CartPole-v1", network="mlp", activation="tanh", depth=0))


@pytest.mark.parametrize("shape,family", [
    ((4,), "mlp"), ((5, 3), "mlp"),                      # not an image: flattened
    ((10, 10, 4), "small_cnn"), ((16, 16, 3), "small_cnn"), ((1, 1, 1), "small_cnn"),
    ((28, 28, 1), "mnist_cnn"),
    ((17, 16, 3), "impala"), ((28, 28, 3), "impala"), ((64, 64, 3), "impala"),
])
def test_default_family_by_observation_shape(shape, family):
    """The documented rule for network=None (scalelab.config.default_family)."""
    assert default_family(shape) == family
