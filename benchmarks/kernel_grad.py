"""Convolution kernel gradients per tap, by rows, and XLA's own, on the networks' layer shapes;
then the quickstart's chunk program with the kernel gradients per tap against by rows
(``scalelab.conv_tap_grad``), alternately in one run. One JSON line per result.

Layer shapes: (members, batch, H = W of the padded input, kernel, C_in, C_out), each method
vmapped over the members (as the fused sweep runs them) and compiled with scalelab's XLA options;
median of ``--calls`` calls after a warm-up, each blocked on.

    PYTHONPATH=. python benchmarks/kernel_grad.py [--no-chunk] [--rounds 3] [--smoke]
        [--out benchmarks/results/kernel_grad.jsonl | -]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.compile_options import alternate
from benchmarks.jsonl import emit
from benchmarks.roofline import source_commit
from scalelab import conv_tap_grad, specs
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner
from scalelab.sweep.spec import parse_spec
from scalelab.xla_options import compile_lowered, options_for

DEFAULT_OUT = Path(__file__).parent / "results" / "kernel_grad.jsonl"
# (members, batch, padded H = W, kernel, C_in, C_out): MNIST conv_0 / conv_1 at the quickstart's
# and roofline's widths (minibatch 512), IMPALA's first and residual convs at width 1/4 and 1
LAYERS = [
    (9, 512, 28, 5, 1, 1), (3, 512, 28, 5, 1, 2), (1, 512, 28, 5, 1, 4), (1, 512, 28, 5, 1, 32),
    (9, 512, 12, 3, 1, 1), (3, 512, 12, 3, 2, 4), (1, 512, 12, 3, 4, 8), (1, 512, 12, 3, 32, 64),
    (3, 16, 66, 3, 3, 4), (3, 16, 34, 3, 4, 4), (3, 16, 18, 3, 8, 8), (3, 16, 66, 3, 3, 16),
    (3, 16, 34, 3, 16, 16),
]
SMOKE_LAYERS = [(2, 8, 12, 3, 1, 2)]


def _lax_kernel_grad(x_pad: jax.Array, g: jax.Array, kh: int, kw: int) -> jax.Array:
    kernel = jnp.zeros((kh, kw, x_pad.shape[-1], g.shape[-1]), x_pad.dtype)
    return jax.vjp(lambda k: conv_tap_grad.lax_conv(x_pad, k, "VALID"), kernel)[1](g)[0]


METHODS = {"taps": conv_tap_grad.kernel_grad_taps, "rows": conv_tap_grad.kernel_grad_rows,
           "xla": _lax_kernel_grad}


def median_ms(fn: Any, args: tuple, calls: int) -> float:
    """Median ms of ``calls`` calls of ``fn(*args)`` compiled with scalelab's conv-net XLA
    options, after one warm-up call; every call blocked on."""
    compiled = compile_lowered(jax.jit(fn).lower(*args),
                               options_for(jax.devices()[0].platform, convolutional=True))
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def layer_line(layer: tuple[int, ...], calls: int) -> dict[str, Any]:
    members, batch, size, k, c_in, c_out = layer
    kx, kg = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (members, batch, size, size, c_in))
    g = jax.random.normal(kg, (members, batch, size - k + 1, size - k + 1, c_out))
    ms = {name: round(median_ms(jax.vmap(lambda x, g, f=f: f(x, g, k, k)), (x, g), calls), 3)
          for name, f in METHODS.items()}
    return dict(bench="kernel_grad", members=members, batch=batch, padded_size=size, kernel=k,
                c_in=c_in, c_out=c_out, median_ms=ms,
                chosen="rows" if c_in * c_out <= conv_tap_grad.ROWS_MAX_CHANNELS else "taps",
                loadavg_1m=round(os.getloadavg()[0], 2))


def chunk_line(rounds: int) -> dict[str, Any]:
    """The quickstart's chunk program traced with every kernel gradient per tap, and by rows
    where ``kernel_grad`` chooses rows; alternately timed from the same initial state."""
    load = os.getloadavg()[0]
    runner = FusedRunner(make_plan(parse_spec(specs.path("quickstart").read_text(), "qs")))
    state = runner.init_state()
    updates = runner.plan.spec.updates_per_chunk
    programs, saved = {}, conv_tap_grad.ROWS_MAX_CHANNELS
    for label, cut in (("taps", 0), ("rows", saved)):
        conv_tap_grad.ROWS_MAX_CHANNELS = cut
        try:
            programs[label] = compile_lowered(runner.lower_chunk(state, updates),
                                             runner.compile_options)
        finally:
            conv_tap_grad.ROWS_MAX_CHANNELS = saved
    med, _ = alternate(runner, programs, state, rounds)
    return dict(bench="kernel_grad", program="quickstart_chunk", rounds=rounds,
                median_s={k: round(v, 3) for k, v in med.items()},
                speedup_rows=round(med["taps"] / med["rows"], 3),
                loadavg_1m_before=round(load, 2), loadavg_1m_after=round(os.getloadavg()[0], 2))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-chunk", action="store_true", help="layer shapes only")
    ap.add_argument("--smoke", action="store_true", help="one tiny layer, no chunk")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="JSON-lines file ('-': print only)")
    args = ap.parse_args(argv)
    out = None if args.out == "-" else Path(args.out)
    common = dict(backend=jax.default_backend(), cpu_count=os.cpu_count(), commit=source_commit())
    for layer in SMOKE_LAYERS if args.smoke else LAYERS:
        emit({**layer_line(layer, 2 if args.smoke else args.calls), **common}, out)
    if not (args.smoke or args.no_chunk):
        emit({**chunk_line(args.rounds), **common}, out)


if __name__ == "__main__":
    main()
