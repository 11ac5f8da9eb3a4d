"""The conv layers alone: each conv layer of a roofline size trained on its own (forward pass,
input gradient, kernel gradient) under every convolution formulation scalelab has, as a fraction
of this device's fp32 matmul peak measured in the same run; then the whole network's conv layers,
each at its fastest formulation and at the one the networks choose. One JSON line per result.

``roofline.py`` measures whole programs. This measures how fast the convolutions themselves go,
without the pools, activations, dense layers, loss, optimizer and environment around them. That
tells how far a better choice among the existing formulations could take a network, and how much
faster its convolutions would have to become to meet a target. The formulations:

- ``taps``: ``networks.conv_taps``, a sum over kernel taps of a shifted slice times a
  (C_in x C_out) matrix, its input gradient the tap sum's autodiff, its kernel gradient
  ``conv_tap_grad.kernel_grad``;
- ``tap_grad``: ``conv_tap_grad.conv_tap_grad``, XLA's convolution forward with per-tap input
  gradients and the same kernel gradients;
- ``lax``: ``lax.conv_general_dilated`` and its autodiff (XLA's own convolution gradients).

Every formulation of every layer shape runs as the trainer runs it:
- vmapped over ``--members`` parameter sets, as the fused sweep trains a group;
- inside a ``lax.scan`` of ``--steps`` chained passes (``layer_program``);
- at the size's minibatch (``batch_size // num_minibatches`` observations per member);
- on random inputs, kernels and output cotangents;
- compiled with the trainer's XLA options.

Lines:
- ``layer``: FLOPs are 2 per multiply-add of in-bound taps (``Layer.macs``, the convention of
  ``networks.forward_flops``), once each for the forward pass, the input gradient and the kernel
  gradient. The network's first layer takes no input gradient (the trainer never differentiates
  the observation), so it is neither computed nor counted. ``max_rel_diff`` is the largest
  difference between a formulation's results after the scan and ``lax``'s, relative to the
  largest magnitude of ``lax``'s.
- ``best_layers``: the median step time of each layer's fastest formulation, weighted by how
  often the layer occurs (both towers, every residual block). The layers' FLOPs divided by it.
  ``chosen`` and ``chosen_fraction_of_peak`` are the same for the formulation each layer has in
  the networks (``conv_impl="auto"`` on this backend: ``lax`` off the CPU; on the CPU ``taps``
  up to ``networks.TAPS_MAX_CHANNELS`` channel pairs, ``tap_grad`` above). This is an estimate,
  not a bound. The update (``roofline.py``'s ``update`` program) does these same convolutions
  plus everything left out here. XLA may run a layer faster or slower inside the whole program
  than alone, for example by fusing an activation into it.

Timing is ``roofline.py``'s: compile and one call (``compile_s``), then the median of the calls,
divided by the steps.

    PYTHONPATH=. python benchmarks/conv_layers.py [--sizes quick|smallest|batch|full|smoke]
        [--smoke] [--members 1] [--steps 8] [--out benchmarks/results/conv_layers.jsonl | -]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks import roofline
from benchmarks.compile_options import _max_diff
from scalelab import conv_tap_grad, networks
from scalelab.sweep.plan import make_plan
from scalelab.sweep.spec import parse_spec, spec_for_config
from scalelab.xla_options import options_for

DEFAULT_OUT = Path(__file__).parent / "results" / "conv_layers.jsonl"
LR = 1e-3  # the step that chains one pass's results into the next (``layer_program``)
FORMULATIONS: dict[str, Callable[[jax.Array, jax.Array, str], jax.Array]] = {
    "taps": networks.conv_taps,
    "tap_grad": conv_tap_grad.conv_tap_grad,
    "lax": conv_tap_grad.lax_conv,
}


def conv_layers(network: networks.NetworkConfig, obs_shape: Sequence[int]
                ) -> list[tuple[networks.Layer, int, int, bool]]:
    """The distinct conv layer shapes of both towers, in order of first occurrence:
    (first such layer, input height = width, occurrences in both towers, is the first layer)."""
    shapes: dict[tuple, list] = {}
    for i, layer in enumerate(networks.encoder_layers(network, obs_shape)):
        if layer.kind != "conv":
            continue
        size = round(layer.positions ** 0.5)
        if layer.padding == "VALID":
            size += layer.kernel - 1
        key = (layer.kernel, layer.c_in, layer.c_out, size, layer.padding, i == 0)
        entry = shapes.setdefault(key, [layer, size, 0, i == 0])
        entry[2] += 2  # policy and value towers
    return [tuple(entry) for entry in shapes.values()]


def layer_flops(layer: networks.Layer, first: bool) -> int:
    """FLOPs of one observation through the layer's forward pass and gradients (module
    docstring): 2 per multiply-add, for the forward pass, the kernel gradient and (unless it is
    the network's first layer) the input gradient."""
    return 2 * layer.macs * (2 if first else 3)


def layer_program(conv: Callable, padding: str, first: bool, options: dict, steps: int,
                  x: jax.Array, kernel: jax.Array, g: jax.Array) -> Callable[[], tuple]:
    """``steps`` chained passes of the layer (forward pass and gradients) in one ``lax.scan``,
    vmapped over the members and compiled with ``options``; a call returns the final (x, kernel,
    g). Each step feeds every result into the next: kernel -= LR * dk, x -= LR * dx (not for the
    first layer, which takes no dx) and g += LR * y, so XLA can neither drop nor hoist any of
    them."""

    def step(carry, _):
        x, kernel, g = carry
        if first:
            y, vjp = jax.vjp(lambda k: conv(x, k, padding), kernel)
            (dk,) = vjp(g)
        else:
            y, vjp = jax.vjp(lambda x, k: conv(x, k, padding), x, kernel)
            dx, dk = vjp(g)
            x = x - LR * dx
        return (x, kernel - LR * dk, g + LR * y), None

    def run(x, kernel, g):
        return lax.scan(step, (x, kernel, g), length=steps)[0]

    fn = roofline.compiled(options, jax.vmap(run), x, kernel, g)
    return lambda: fn(x, kernel, g)


def chosen_formulation(layer: networks.Layer) -> str:
    """The formulation the networks give ``layer`` on the default backend (module docstring)."""
    if networks.resolve_conv_impl("auto") == "lax":
        return "lax"
    return "taps" if networks.computed_as_taps(layer.c_in, layer.c_out) else "tap_grad"


def max_rel_diff(results: tuple, reference: tuple) -> float:
    """Largest |a - b| over all results, relative to the largest |b|."""
    scale = max(float(jnp.max(jnp.abs(b))) for b in reference)
    diff = _max_diff(results, reference)
    return diff / scale if scale else diff


def measure_size(size: roofline.Size, members: int, timing: roofline.Timing, peak_repeats: int,
                 formulations: Sequence[str], steps: int) -> list[dict]:
    """The peak line, one line per (layer shape, formulation), and the size's best_layers line."""
    peak, common, line = roofline.peak_line("conv_layers", peak_repeats)
    lines = [line]
    config = size.config()
    plan = make_plan(parse_spec(spec_for_config(config, members)))
    network = plan.groups[0].network
    options = options_for(jax.default_backend(), convolutional=True)
    batch = config.batch_size // config.num_minibatches
    ident = dict(family=size.family, width=size.width, depth=network.depth, members=members,
                 batch=batch, steps=steps)
    total_flops, total_s, chosen_s, fastest, chosen = 0, 0.0, 0.0, [], []
    keys = jax.random.split(jax.random.key(0), 3)
    for layer, hw, count, first in conv_layers(network, plan.obs_shape):
        k = layer.kernel
        out_hw = hw if layer.padding == "SAME" else hw - k + 1
        x = jax.random.normal(keys[0], (members, batch, hw, hw, layer.c_in))
        kernel = 0.3 * jax.random.normal(keys[1], (members, k, k, layer.c_in, layer.c_out))
        g = jax.random.normal(keys[2], (members, batch, out_hw, out_hw, layer.c_out))
        flops = layer_flops(layer, first) * batch * members
        reference, step_s = None, {}
        # lax first (the reference), the networks' own choice always; lines for formulations
        for name in dict.fromkeys(("lax", chosen_formulation(layer), *formulations)):
            t0 = time.perf_counter()
            call = layer_program(FORMULATIONS[name], layer.padding, first, options, steps,
                                 x, kernel, g)
            compile_s = time.perf_counter() - t0
            first_s, times = roofline.time_calls(call, timing)
            results = call()
            if reference is None:
                reference = results
            step_s[name] = statistics.median(times) / steps
            if name not in formulations:
                continue
            gflops = flops / step_s[name] / 1e9
            lines.append(dict(
                bench="conv_layers", program="layer", **ident, layer=layer.name, count=count,
                kernel=k, c_in=layer.c_in, c_out=layer.c_out, input_size=hw,
                padding=layer.padding, input_grad=not first, formulation=name,
                flops_per_step=flops, compile_s=round(compile_s + first_s, 2), calls=len(times),
                median_step_s=round(step_s[name], 7), gflops=round(gflops, 3),
                peak_gflops=round(peak, 2), fraction_of_peak=round(gflops / peak, 5),
                max_rel_diff=float(f"{max_rel_diff(results, reference):.3g}"),
                loadavg_1m=round(os.getloadavg()[0], 2), **common,
            ))
        best, own = min(formulations, key=step_s.__getitem__), chosen_formulation(layer)
        total_flops += count * flops
        total_s += count * step_s[best]
        chosen_s += count * step_s[own]
        fastest.append(f"{layer.name}:{best}")
        chosen.append(f"{layer.name}:{own}")
    gflops = total_flops / total_s / 1e9
    lines.append(dict(
        bench="conv_layers", program="best_layers", **ident, fastest=fastest,
        flops_per_step=total_flops, step_s=round(total_s, 7), gflops=round(gflops, 3),
        peak_gflops=round(peak, 2), fraction_of_peak=round(gflops / peak, 5), chosen=chosen,
        chosen_step_s=round(chosen_s, 7),
        chosen_fraction_of_peak=round(total_flops / chosen_s / 1e9 / peak, 5),
        loadavg_1m=round(os.getloadavg()[0], 2), **common,
    ))
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    roofline.add_run_arguments(parser, "quick", roofline.Timing(5, 30, 1.0), DEFAULT_OUT)
    parser.add_argument("--formulations", nargs="+", choices=list(FORMULATIONS),
                        default=list(FORMULATIONS))
    parser.add_argument("--steps", type=int, default=8, help="chained passes per call")
    args = parser.parse_args(argv)
    sizes, timing, peak_repeats = roofline.run_settings(args)
    steps, commit = 2 if args.smoke else args.steps, roofline.source_commit()
    for size in sizes:
        for line in measure_size(size, args.members, timing, peak_repeats, args.formulations,
                                 steps):
            roofline.emit(line, args.out, commit)


if __name__ == "__main__":
    main()
