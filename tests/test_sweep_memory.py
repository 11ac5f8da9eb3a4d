"""The planner's memory estimate against XLA's own accounting of the compiled chunk program."""

import pytest

from scalelab import networks
from scalelab.sweep import plan as plan_mod
from scalelab.sweep.plan import make_plan
from scalelab.sweep.spec import parse_spec
from scalelab.sweep.xla_memory import FAST_COMPILE, xla_member_bytes

# The tolerance scalelab.sweep.plan states: estimate / XLA within a factor 1.5 on CPU.
TOLERANCE = 1.5


def _spec(env="MNIST-v0", family="mnist_cnn", width=0.015625, depth=None, num_envs=8,
          rollout_length=8, algo="ppo", extra="", kwargs=""):
    return parse_spec(f"""
name = "mem"
[env]
name = "{env}"
{kwargs}
[network]
family = "{family}"
[train]
num_envs = {num_envs}
rollout_length = {rollout_length}
num_minibatches = 2
update_epochs = 1
algo = "{algo}"
{extra}
[budget]
interactions = {2 * num_envs * rollout_length}
updates_per_chunk = 2
[lr]
base = 1e-3
[axes]
width = [{width}]
{"" if depth is None else f"depth = [{depth}]"}
""")


_PPG = 'ppg_n_pi = 2\naux_epochs = 1'
# Default run: one config (two compiles of the cheapest family); the rest are slow.
FAST = {
    "mnist_cnn-ppo-8envs": {},
}
SLOW = {
    "mnist_cnn-ppg-16envs": dict(num_envs=16, algo="ppg", extra=_PPG),
    "impala-ppg-16envs": dict(family="impala", width=0.03125, depth=1, num_envs=16, algo="ppg",
                              extra=_PPG),
    "impala-ppo-coinrun": dict(env="CoinRun-v0", family="impala", width=0.03125, depth=1,
                               num_envs=4, kwargs='[env.kwargs]\ndistribution_mode = "easy"'),
    "mnist_cnn-ppo_ewma-32envs": dict(width=0.03125, num_envs=32, algo="ppo_ewma"),
}


def _check(kw, monkeypatch):
    plan = make_plan(_spec(**kw))
    group = plan.groups[0]
    exact = xla_member_bytes(plan, group)
    ratio = group.memory_per_member / exact
    assert 1 / TOLERANCE <= ratio <= TOLERANCE, (group.memory_per_member, exact)
    # the check has teeth: the estimate without its minibatch-update term (about what the
    # planner printed before, 0.15-0.4x of XLA for these CNNs) is outside the tolerance
    monkeypatch.setattr(plan_mod, "_PER_LAYER_KIND", dict.fromkeys(plan_mod._PER_LAYER_KIND, 0.0))
    without_update = make_plan(_spec(**kw)).groups[0].memory_per_member
    assert without_update / exact < 1 / TOLERANCE


@pytest.mark.parametrize("name", FAST)
def test_estimate_is_within_tolerance_of_xla(name, monkeypatch):
    _check(FAST[name], monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_estimate_is_within_tolerance_of_xla_more_configs(name, monkeypatch):
    _check(SLOW[name], monkeypatch)


@pytest.mark.slow
def test_fast_compile_keeps_xlas_buffer_assignment():
    plan = make_plan(_spec(**FAST["mnist_cnn-ppo-8envs"]))
    group = plan.groups[0]
    assert xla_member_bytes(plan, group, FAST_COMPILE) == xla_member_bytes(plan, group, {})


def test_activation_floats_by_hand_mnist_cnn():
    """mnist_cnn at width 1/32: convs of 1 and 2 channels (28 -> 24 -> pool 12 -> 10 -> pool 5),
    dense 31 units, two towers."""
    cfg = networks.NetworkConfig("mnist_cnn", width=1 / 32)
    got = networks.activation_floats(cfg, (28, 28, 1))
    conv = 2 * (24 * 24 * 1 + 10 * 10 * 2)
    taps = 0
    if networks.resolve_conv_impl("auto") == "taps":
        # both layers have C_in*C_out <= 4; the first layer's slices (of the shared observation)
        # count once, the second's once per tower
        taps = 5 * 5 * 24 * 24 * 1 + 2 * (3 * 3 * 10 * 10 * 1)
    assert got == {"conv": conv, "pool": conv, "taps": taps, "dense": 2 * 31}


def test_activation_floats_by_hand_impala():
    """impala depth 1 at width 1/16 on 64x64x3: channels 1, 2, 2; only each stack's first conv
    is followed by a max-pool; dense 16 units; two towers."""
    cfg = networks.NetworkConfig("impala", width=1 / 16, depth=1)
    got = networks.activation_floats(cfg, (64, 64, 3))
    stack = [64 * 64 * 1, 32 * 32 * 2, 16 * 16 * 2]  # each stack's first conv (pre-pool)
    blocks = [2 * 32 * 32 * 1, 2 * 16 * 16 * 2, 2 * 8 * 8 * 2]  # two convs per residual block
    assert got["pool"] == 2 * sum(stack)
    assert got["conv"] == 2 * (sum(stack) + sum(blocks))
    assert got["dense"] == 2 * 16
    if networks.resolve_conv_impl("auto") == "taps":
        # every layer has C_in*C_out <= 4 (3x1, 1x1, 1x2, 2x2): k²·H_out·W_out·C_in slices each;
        # stack 0's (of the shared observation) once, the others once per tower
        per_tower = (2 * 9 * 32 * 32 * 1 + 9 * 32 * 32 * 1 + 2 * 9 * 16 * 16 * 2
                     + 9 * 16 * 16 * 2 + 2 * 9 * 8 * 8 * 2)
        assert got["taps"] == 9 * 64 * 64 * 3 + 2 * per_tower
    else:
        assert got["taps"] == 0

