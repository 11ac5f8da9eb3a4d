"""Convolution input gradients per tap (``conv_tap_grad.input_grad``) against XLA's own (the
autodiff transpose of the lax convolution) on the networks' layer shapes, inside a ``lax.scan``
of minibatch steps as the trainer runs them. One JSON line per layer shape.

Layer shapes: (members, batch, H = W, kernel, C_in, C_out, padding), each method vmapped over
the members (as the fused sweep runs them), 4 steps per scan (each step's cotangent depends on
the previous step's result, so no step can be hoisted or dropped), compiled with scalelab's XLA
options; median per step of ``--calls`` scans after a warm-up, each blocked on. A line also gives
the largest difference between the two gradients relative to XLA's largest magnitude.

    PYTHONPATH=. python benchmarks/input_grad.py [--calls 5] [--smoke]
        [--out benchmarks/results/input_grad.jsonl | -]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks.backward_ab import lax_input_grad
from benchmarks.jsonl import emit
from benchmarks.kernel_grad import median_ms
from benchmarks.roofline import source_commit
from scalelab import conv_tap_grad

DEFAULT_OUT = Path(__file__).parent / "results" / "input_grad.jsonl"
STEPS = 4
# MNIST conv_1 at width 1/8 (minibatch 512), IMPALA's residual convs at widths 1/4, 1/2 and 1
# (roofline minibatch 16 per member, 8 members; and 128 for one member)
LAYERS = [
    (1, 512, 12, 3, 4, 8, "VALID"), (8, 64, 12, 3, 4, 8, "VALID"),
    (1, 128, 32, 3, 4, 4, "SAME"), (8, 16, 32, 3, 4, 4, "SAME"),
    (1, 128, 16, 3, 8, 8, "SAME"), (8, 16, 16, 3, 8, 8, "SAME"),
    (1, 128, 32, 3, 16, 16, "SAME"), (8, 16, 32, 3, 16, 16, "SAME"),
    (1, 64, 16, 3, 32, 32, "SAME"), (8, 8, 16, 3, 32, 32, "SAME"),
]
SMOKE_LAYERS = [(2, 4, 8, 3, 2, 3, "SAME")]
METHODS = {"per_tap": conv_tap_grad.input_grad, "xla": lax_input_grad}


def layer_line(layer: tuple, calls: int) -> dict[str, Any]:
    members, batch, size, k, c_in, c_out, padding = layer
    kk, kg = jax.random.split(jax.random.key(0))
    kernel = jax.random.normal(kk, (members, k, k, c_in, c_out))
    out = size if padding == "SAME" else size - k + 1
    g = jax.random.normal(kg, (members, batch, out, out, c_out))
    x_shape = (batch, size, size, c_in)
    ms, grads = {}, {}
    for name, fn in METHODS.items():
        grad = jax.vmap(lambda g, kernel, fn=fn: fn(g, kernel, x_shape, padding))

        def steps(g, kernel, grad=grad):
            def body(carry, _):
                dx = grad(g + carry, kernel)
                return carry + 1e-30 * dx.sum(), dx.sum()
            return lax.scan(body, jnp.zeros((), g.dtype), None, length=STEPS)

        ms[name] = round(median_ms(steps, (g, kernel), calls) / STEPS, 3)
        grads[name] = jax.jit(grad)(g, kernel)
    scale = float(jnp.abs(grads["xla"]).max())
    return dict(bench="input_grad", members=members, batch=batch, size=size, kernel=k,
                c_in=c_in, c_out=c_out, padding=padding, median_ms_per_step=ms,
                speedup_per_tap=round(ms["xla"] / ms["per_tap"], 2),
                max_rel_diff=float(jnp.abs(grads["per_tap"] - grads["xla"]).max()) / scale,
                loadavg_1m=round(os.getloadavg()[0], 2))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="one tiny layer")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="JSON-lines file ('-': print only)")
    args = ap.parse_args(argv)
    out = None if args.out == "-" else Path(args.out)
    common = dict(backend=jax.default_backend(), cpu_count=os.cpu_count(), commit=source_commit())
    for layer in SMOKE_LAYERS if args.smoke else LAYERS:
        emit({**layer_line(layer, 2 if args.smoke else args.calls), **common}, out)


if __name__ == "__main__":
    main()
