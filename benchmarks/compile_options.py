"""The chunk program compiled with XLA's default options against scalelab's
(``scalelab.xla_options``), timed alternately in one run; one JSON line per case.

For each case (the quickstart spec, and the roofline's sizes) the runner's fused chunk program
(what ``scalelab.train`` and ``scalelab sweep`` run) is lowered once and compiled twice: plain
``compile()`` ("xla_default") and ``compile_lowered`` ("scalelab"). From the same initial state,
the two programs then alternate, one chunk each per round, each fed back its own state, every
output blocked on. A line gives both medians, their ratio (default / scalelab: > 1 means
scalelab's options are faster), the 1-minute load average before and after, and the largest
absolute difference between the two programs' outputs (state and metrics) after their first
chunk from the same state.

    PYTHONPATH=. python benchmarks/compile_options.py [--cases quickstart roofline] [--rounds 5]
        [--smoke] [--out benchmarks/results/compile_options.jsonl | -]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks.jsonl import emit
from benchmarks.roofline import SIZES, Size, source_commit
from scalelab import specs
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner
from scalelab.sweep.spec import parse_spec, spec_for_config
from scalelab.xla_options import compile_lowered

DEFAULT_OUT = Path(__file__).parent / "results" / "compile_options.jsonl"


def _max_diff(a: Any, b: Any) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max((float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
                for x, y in pairs if np.size(x)), default=0.0)


def alternate(runner: FusedRunner, programs: dict[str, Any], state: Any, rounds: int
              ) -> tuple[dict[str, float], dict[str, Any]]:
    """Run each of `programs` (compiled chunk programs of `runner`) from its own copy of
    `state`, one chunk each per round, each fed back its own state, every output blocked on;
    round 0 is the warm-up. Returns per program the median seconds of the other rounds and its
    host outputs (state, metrics) after round 0."""
    host = jax.tree.map(np.asarray, state)
    carries = {label: jax.tree.map(lambda h, s: jax.device_put(h, s.sharding), host, state)
               for label in programs}
    times: dict[str, list[float]] = {label: [] for label in programs}
    first: dict[str, Any] = {}
    for r in range(rounds + 1):
        for label, program in programs.items():
            t = time.perf_counter()
            carries[label], metrics = program(carries[label], runner.hparams, runner.env_params)
            jax.block_until_ready((carries[label], metrics))
            if r == 0:
                first[label] = jax.tree.map(np.asarray, (carries[label], metrics))
            else:
                times[label].append(time.perf_counter() - t)
    return {label: statistics.median(ts) for label, ts in times.items()}, first


def compare(name: str, runner: FusedRunner, rounds: int) -> dict[str, Any]:
    """Both compilations of `runner`'s chunk program, timed alternately (module docstring)."""
    load_before = os.getloadavg()[0]
    state = runner.init_state()
    updates = runner.plan.spec.updates_per_chunk
    lowered = runner.lower_chunk(state, updates)
    programs, compile_s = {}, {}
    for label, build in (("xla_default", lambda: lowered.compile()),
                         ("scalelab", lambda: compile_lowered(lowered, runner.compile_options))):
        t = time.perf_counter()
        programs[label] = build()
        compile_s[label] = round(time.perf_counter() - t, 2)
    med, first = alternate(runner, programs, state, rounds)
    return dict(
        bench="compile_options", case=name, members=len(runner.plan.members),
        groups=len(runner.plan.groups), updates_per_chunk=updates,
        options=runner.compile_options, rounds=rounds,
        median_s_xla_default=round(med["xla_default"], 4),
        median_s_scalelab=round(med["scalelab"], 4),
        speedup=round(med["xla_default"] / med["scalelab"], 3), compile_s=compile_s,
        max_abs_diff_first_chunk=_max_diff(first["xla_default"], first["scalelab"]),
        loadavg_1m_before=round(load_before, 2), loadavg_1m_after=round(os.getloadavg()[0], 2),
        backend=jax.default_backend(), device=jax.devices()[0].device_kind,
        cpu_count=os.cpu_count(),
    )


def _size_runner(size: Size) -> FusedRunner:
    return FusedRunner(make_plan(parse_spec(spec_for_config(size.config(), 1))))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", choices=["quickstart", "roofline"],
                    default=["quickstart", "roofline"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--smoke", action="store_true",
                    help="roofline's smoke size only, 1 round")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="JSON-lines file ('-': print only)")
    args = ap.parse_args(argv)
    out = None if args.out == "-" else Path(args.out)
    commit = source_commit()
    cases: list[tuple[str, Any]] = []
    if args.smoke:
        cases = [("smoke", lambda: _size_runner(SIZES["smoke"][0]))]
    else:
        if "quickstart" in args.cases:
            text = specs.path("quickstart").read_text()
            cases.append(("quickstart",
                          lambda: FusedRunner(make_plan(parse_spec(text, "quickstart")))))
        if "roofline" in args.cases:
            for size in SIZES["quick"]:
                label = f"{size.family} width {size.width:g}" + (
                    f" depth {size.depth}" if size.depth else "")
                cases.append((label, lambda size=size: _size_runner(size)))
    for name, make in cases:
        emit({**compare(name, make(), 1 if args.smoke else args.rounds), "commit": commit}, out)


if __name__ == "__main__":
    main()
