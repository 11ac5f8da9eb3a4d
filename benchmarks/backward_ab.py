"""The chunk program with one of scalelab's formulations against the plain one, timed
alternately in one run; one JSON line per case.

Variants (``--variant``):

- ``relu``: ``scalelab.networks.relu`` (backward masked by its output) for the activations of
  layer outputs, against ``jax.nn.relu`` (masked by its input);
- ``input_grad``: ``conv_tap_grad.input_grad`` (per-tap matmuls) for the input gradient of the
  convolutions computed by ``conv_tap_grad``, against the autodiff transpose of the lax
  convolution;
- ``taps_cutoff``: ``networks.TAPS_MAX_CHANNELS`` (the most channel pairs a layer computed as a
  tap sum has) as it is, against 4 (its value before the two changes above).

For each case (the quickstart spec and the roofline's sizes) the runner's chunk program is
traced once with each formulation ("baseline", "scalelab") and compiled with the runner's XLA
options. From the same initial state the two programs alternate, one chunk each per round, each
fed back its own state, every output blocked on. A line gives both medians, their ratio
(baseline / scalelab: > 1 means scalelab's formulation is faster), the 1-minute load average
before and after, whether the two programs' outputs (state and metrics) after their first chunk
are bit-identical, and the largest absolute difference between them.

    PYTHONPATH=. python benchmarks/backward_ab.py --variant relu|input_grad|taps_cutoff
        [--cases quickstart roofline] [--rounds 3] [--smoke]
        [--out benchmarks/results/backward_ab.jsonl | -]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import jax
import numpy as np

from benchmarks.compile_options import _max_diff, alternate
from benchmarks.jsonl import emit
from benchmarks.roofline import SIZES, source_commit
from scalelab import conv_tap_grad, networks, specs
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner
from scalelab.sweep.spec import parse_spec, spec_for_config
from scalelab.xla_options import compile_lowered

DEFAULT_OUT = Path(__file__).parent / "results" / "backward_ab.jsonl"


def lax_input_grad(g: jax.Array, kernel: jax.Array, x_shape: tuple[int, ...],
                   padding: str) -> jax.Array:
    """The lax convolution's autodiff input gradient (what ``conv_tap_grad`` used before)."""
    conv = functools.partial(conv_tap_grad.lax_conv, kernel=kernel, padding=padding)
    return jax.linear_transpose(conv, jax.ShapeDtypeStruct(x_shape, g.dtype))(g)[0]


# per variant: the baseline's patch (the scalelab formulation is what the code does)
BASELINES: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "relu": lambda: mock.patch.dict(networks.OUTPUT_ACTIVATIONS, {"relu": jax.nn.relu}),
    "input_grad": lambda: mock.patch.object(conv_tap_grad, "input_grad", lax_input_grad),
    "taps_cutoff": lambda: mock.patch.object(networks, "TAPS_MAX_CHANNELS", 4),
}


def compare(variant: str, name: str, runner: FusedRunner, rounds: int) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    state = runner.init_state()
    updates = runner.plan.spec.updates_per_chunk
    programs = {}
    for label, context in (("baseline", BASELINES[variant]), ("scalelab", contextlib.nullcontext)):
        with context():
            programs[label] = compile_lowered(runner.lower_chunk(state, updates),
                                             runner.compile_options)
    med, first = alternate(runner, programs, state, rounds)
    same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(
        jax.tree.leaves(first["baseline"]), jax.tree.leaves(first["scalelab"]), strict=True))
    return dict(
        bench="backward_ab", variant=variant, case=name, members=len(runner.plan.members),
        updates_per_chunk=updates, rounds=rounds,
        median_s={k: round(v, 4) for k, v in med.items()},
        speedup=round(med["baseline"] / med["scalelab"], 3), bit_identical=same,
        max_abs_diff=_max_diff(first["baseline"], first["scalelab"]),
        loadavg_1m_before=round(load_before, 2), loadavg_1m_after=round(os.getloadavg()[0], 2),
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", required=True, choices=sorted(BASELINES))
    ap.add_argument("--cases", nargs="+", default=["quickstart", "roofline"],
                    choices=["quickstart", "roofline"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="the roofline's smoke size, 1 round")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="JSON-lines file ('-': print only)")
    args = ap.parse_args(argv)
    out = None if args.out == "-" else Path(args.out)
    common = dict(backend=jax.default_backend(), cpu_count=os.cpu_count(), commit=source_commit())
    sizes = SIZES["smoke"] if args.smoke else SIZES["quick"]
    cases: list[tuple[str, str]] = []
    if "quickstart" in args.cases and not args.smoke:
        cases.append(("quickstart", specs.path("quickstart").read_text()))
    if "roofline" in args.cases or args.smoke:
        cases += [(f"{s.family}_w{s.width:g}" + (f"_d{s.depth}" if s.depth else ""),
                   spec_for_config(s.config(), 1)) for s in sizes]
    for name, text in cases:
        runner = FusedRunner(make_plan(parse_spec(text, name)))
        emit({**compare(args.variant, name, runner, 1 if args.smoke else args.rounds), **common},
             out)


if __name__ == "__main__":
    main()
