"""scalelab's XLA compiler options: applied to the chunk programs, equal results up to rounding,
and a clear fallback where XLA does not know an option."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sweep_helpers import tiny_spec

from scalelab import xla_options
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner
from scalelab.sweep.spec import parse_spec


def _runner(env: str, family: str, width: str) -> FusedRunner:
    text = tiny_spec("xla_options", axes=f"width = {width}\nseed = [0, 1]").replace(
        'name = "CartPole-v1"', f'name = "{env}"').replace('"mlp"', f'"{family}"')
    return FusedRunner(make_plan(parse_spec(text, "<test>")))


def test_mlp_chunk_program_keeps_xla_defaults():
    assert _runner("CartPole-v1", "mlp", "0.25").compile_options == {}


def test_conv_chunk_program_compiled_without_ynnpack_fusions_and_equal_up_to_rounding():
    runner = _runner("MNIST-v0", "mnist_cnn", "0.015625")
    state = runner.init_state()
    host = jax.tree.map(np.asarray, state)
    lowered = runner.lower_chunk(state, 1)
    default = lowered.compile()
    ours = runner.compiled_chunk(state, 1)
    if runner.platform != "cpu" or "ynn_fusion" not in default.as_text():
        pytest.skip("this XLA compiles the chunk without YNNPACK fusions by default")
    assert "ynn_fusion" not in ours.as_text()
    outs = []
    for program in (default, ours):
        start = jax.tree.map(lambda h, s: jax.device_put(h, s.sharding), host, state)
        outs.append(jax.tree.map(np.asarray, program(start, runner.hparams, runner.env_params)))
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


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
