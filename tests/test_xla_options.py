"""scalelab's XLA compiler options: applied to the chunk programs, equal results up to rounding,
and a clear fallback where XLA does not know an option."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sweep_helpers import tiny_spec

from scalelab import networks, xla_options
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner
from scalelab.sweep.spec import parse_spec


def _runner(env: str, family: str, width: str) -> FusedRunner:
    text = tiny_spec("xla_options", axes=f"width = {width}\nseed = [0, 1]").replace(
        'name = "CartPole-v1"', f'name = "{env}"').replace('"mlp"', f'"{family}"')
    return FusedRunner(make_plan(parse_spec(text, "<test>")))


def test_options_follow_the_network_and_the_platform():
    assert _runner("CartPole-v1", "mlp", "0.25").compile_options == {}
    conv = _runner("MNIST-v0", "mnist_cnn", "0.015625")
    assert conv.compile_options == xla_options.options_for(conv.platform, convolutional=True)
    if conv.platform == "cpu":
        assert conv.compile_options == xla_options.CPU_CONV_OPTIONS


def test_conv_gradient_without_ynnpack_fusions_equals_the_default_up_to_rounding():
    """A conv net's loss gradient compiled with scalelab's options has no YNNPACK fusion where
    XLA's defaults have some, and equals the default program's up to float rounding. (The chunk
    program compiled ahead in tests/test_startup_init.py is checked for the same.)"""
    cfg = networks.NetworkConfig("mnist_cnn", 1 / 32)
    module = networks.build(cfg, 10)
    params = networks.init_params(cfg, jax.random.key(0), (28, 28, 1), 10)
    obs = jax.random.uniform(jax.random.key(1), (16, 28, 28, 1))

    def loss(p):
        logits, value = module.apply(p, obs)
        return jnp.sum(jax.nn.log_softmax(logits)[:, 0]) + jnp.sum(value ** 2)

    lowered = jax.jit(jax.grad(loss)).lower(params)
    default = lowered.compile()
    if jax.default_backend() != "cpu" or "ynn_fusion" not in default.as_text():
        pytest.skip("this XLA compiles the program without YNNPACK fusions by default")
    ours = xla_options.compile_lowered(lowered, xla_options.options_for("cpu", True))
    assert "ynn_fusion" not in ours.as_text()
    for a, b in zip(jax.tree.leaves(default(params)), jax.tree.leaves(ours(params)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_unknown_option_is_dropped_with_a_warning(monkeypatch):
    monkeypatch.setattr(xla_options, "CPU_CONV_OPTIONS",
                        {**xla_options.CPU_CONV_OPTIONS, "xla_cpu_no_such_option_here": "1"})
    monkeypatch.setattr(xla_options, "_unknown", set())
    options = xla_options.options_for("cpu", convolutional=True)
    assert "xla_cpu_no_such_option_here" in options
    lowered = jax.jit(lambda x: x * 2).lower(jnp.ones(3))
    with pytest.warns(UserWarning, match="xla_cpu_no_such_option_here"):
        compiled = xla_options.compile_lowered(lowered, options)
    np.testing.assert_array_equal(compiled(jnp.ones(3)), 2 * np.ones(3))
    assert "xla_cpu_no_such_option_here" not in xla_options.options_for("cpu", True)
    assert xla_options.options_for("gpu", True) == {}
    assert xla_options.options_for("cpu", False) == {}


def test_an_error_that_is_not_an_unknown_option_is_raised():
    lowered = jax.jit(lambda x: x * 2).lower(jnp.ones(3))
    with pytest.raises(Exception, match="not a valid int32"):
        xla_options.compile_lowered(lowered, {"xla_backend_optimization_level": "x"})
