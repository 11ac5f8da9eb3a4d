"""The conv-layers benchmark: its layer list, its FLOP counts and its best_layers arithmetic."""

import json

import jax
import numpy as np
import pytest

from benchmarks import conv_layers
from scalelab import networks


def test_conv_layers_of_impala_quarter_width_merge_equal_shapes_and_count_both_towers():
    network = networks.NetworkConfig("impala", 0.25, 2)
    shapes = [(layer.kernel, layer.c_in, layer.c_out, size, layer.padding, count, first)
              for layer, size, count, first in conv_layers.conv_layers(network, (64, 64, 3))]
    # per tower: stack convs 3->4 (64x64), 4->8 (32x32), 8->8 (16x16); 2 residual blocks of 2
    # convs per stack at 4 (32x32), 8 (16x16) and 8 (8x8) channels; stack 2's conv has the shape
    # of stack 1's block convs
    assert shapes == [
        (3, 3, 4, 64, "SAME", 2, True),
        (3, 4, 4, 32, "SAME", 8, False),
        (3, 4, 8, 32, "SAME", 2, False),
        (3, 8, 8, 16, "SAME", 10, False),
        (3, 8, 8, 8, "SAME", 8, False),
    ]


def test_conv_layers_smoke_counts_flops_and_sums_the_fastest_formulation(tmp_path):
    out = tmp_path / "conv_layers.jsonl"
    conv_layers.main(["--smoke", "--out", str(out)])
    lines = [json.loads(text) for text in out.read_text().splitlines()]
    peak = lines[0]["peak_gflops"]
    assert lines[0]["program"] == "matmul_peak" and peak > 0
    layers, total = lines[1:-1], lines[-1]
    assert [(line["layer"], line["formulation"]) for line in layers] == [
        (name, f) for name in ("conv_0", "conv_1") for f in ("lax", "taps", "tap_grad")
    ]
    # MNIST width 1/64: conv_0 5x5 VALID 1->1 on 28x28 (24x24 outputs), conv_1 3x3 VALID 1->1 on
    # 12x12 (10x10); minibatch 8 (4 envs x 4 steps, 2 minibatches), one member; 2 FLOPs per
    # multiply-add for the forward pass, the kernel gradient and (not the first layer) the input
    # gradient
    flops = {"conv_0": 2 * 2 * 24 * 24 * 25 * 8, "conv_1": 2 * 3 * 10 * 10 * 9 * 8}
    for line in layers:
        assert line["flops_per_step"] == flops[line["layer"]]
        assert line["count"] == 2 and line["steps"] == 2 and line["median_step_s"] > 0
        assert line["fraction_of_peak"] == pytest.approx(line["gflops"] / peak, rel=1e-2, abs=1e-5)
        # every formulation ends the chained steps where XLA's convolution does
        assert line["max_rel_diff"] < 1e-5
    best = {}
    for line in layers:
        name = line["layer"]
        if name not in best or line["median_step_s"] < best[name]["median_step_s"]:
            best[name] = line
    assert total["program"] == "best_layers"
    assert total["fastest"] == [f"{name}:{line['formulation']}" for name, line in best.items()]
    # both towers: each layer occurs twice
    assert total["flops_per_step"] == 2 * sum(flops.values())
    seconds = 2 * sum(line["median_step_s"] for line in best.values())
    assert total["step_s"] == pytest.approx(seconds, rel=1e-3, abs=1e-6)
    assert total["gflops"] == pytest.approx(total["flops_per_step"] / seconds / 1e9, rel=1e-2)
    assert total["fraction_of_peak"] == pytest.approx(total["gflops"] / peak, rel=1e-2, abs=1e-5)
    # the networks compute these one-channel layers as tap sums on the CPU, lax elsewhere
    own = "taps" if networks.resolve_conv_impl("auto") == "taps" else "lax"
    assert total["chosen"] == [f"conv_0:{own}", f"conv_1:{own}"]
    chosen_s = 2 * sum(line["median_step_s"] for line in layers if line["formulation"] == own)
    assert total["chosen_step_s"] == pytest.approx(chosen_s, rel=1e-3, abs=1e-6)
    assert total["chosen_fraction_of_peak"] == pytest.approx(
        total["flops_per_step"] / chosen_s / 1e9 / peak, rel=1e-2, abs=1e-5)


@pytest.mark.parametrize("first", [True, False])
def test_layer_program_chains_every_result_into_the_next_step(first):
    # two steps by hand: kernel -= LR dk, x -= LR dx (not for the first layer), g += LR y
    keys = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(keys[0], (2, 3, 6, 6, 2))
    kernel = jax.random.normal(keys[1], (2, 3, 3, 2, 3))
    g = jax.random.normal(keys[2], (2, 3, 4, 4, 3))
    conv = conv_layers.FORMULATIONS["lax"]
    want = (x, kernel, g)
    for _ in range(2):
        xs, ks, gs = want
        steps = []
        for m in range(2):
            y, vjp = jax.vjp(lambda x, k: conv(x, k, "VALID"), xs[m], ks[m])
            dx, dk = vjp(gs[m])
            new_x = xs[m] if first else xs[m] - conv_layers.LR * dx
            steps.append((new_x, ks[m] - conv_layers.LR * dk, gs[m] + conv_layers.LR * y))
        want = tuple(np.stack(parts) for parts in zip(*steps, strict=True))
    got = conv_layers.layer_program(conv, "VALID", first, {}, 2, x, kernel, g)()
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # every result moved: nothing was dropped (x stays for the first layer, which takes no dx)
    assert not np.array_equal(got[1], kernel) and not np.array_equal(got[2], g)
    assert np.array_equal(got[0], x) == first
