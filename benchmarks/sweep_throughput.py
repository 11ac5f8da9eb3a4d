"""Benchmark of the fused sweep runner: fused vs sequential, padded vs unpadded, memory, quickstart.

Prints one JSON line per result. Targets (issue 4): the quickstart sweep + fit in <= 5 minutes on
2 CPU cores with a size exponent and its interval; fused / sequential wall-time ratio >= 1 on
CPU (>= 5x on a GPU with many small members); the planner's per-member memory against XLA's.

    PYTHONPATH=. python benchmarks/sweep_throughput.py [--spec SPEC] [--chunks 3]
        [--skip fused,padding,memory,quickstart]

Timings: "compile_s" is the first call of each compiled program (compile + run), "run_s" the
following `--chunks` calls, after which every output is fetched (block_until_ready + np.asarray).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from fitting.report import fit_run
from scalelab import specs
from scalelab.sweep.plan import Plan, make_plan
from scalelab.sweep.run import FusedRunner, run_sweep
from scalelab.sweep.spec import SweepSpec, load_spec


def _emit(**row) -> None:
    print(json.dumps(row), flush=True)


def _time_runner(plan: Plan, chunks: int) -> dict[str, float]:
    """Seconds to build+init, compile (first chunk), and run `chunks` more chunks of a plan."""
    t0 = time.perf_counter()
    runner = FusedRunner(plan)
    state = runner.init_state()
    jax.block_until_ready(state)
    t1 = time.perf_counter()
    state, metrics = runner.step(state)
    jax.tree.map(np.asarray, metrics)
    t2 = time.perf_counter()
    for _ in range(chunks):
        state, metrics = runner.step(state)
    jax.block_until_ready(state)
    jax.tree.map(np.asarray, metrics)
    t3 = time.perf_counter()
    return {"init_s": t1 - t0, "compile_s": t2 - t1, "run_s": t3 - t2}


def _with(spec: SweepSpec, **changes) -> SweepSpec:
    return dataclasses.replace(spec, **changes)


def _only(spec: SweepSpec, member, seeds: tuple[int, ...] | None = None) -> SweepSpec:
    """The spec narrowed to one member's axis values (optionally with other seeds)."""
    value = {"width": member.width, "param_ratio": member.param_ratio, "depth": member.depth,
             "seed": member.seed, "lr_scale": member.lr_scale, **member.hparams}
    axes = {k: (value[k],) for k in spec.axes}
    if seeds is not None:
        axes["seed"] = seeds
    return _with(spec, axes=axes)


def fused_vs_sequential(spec: SweepSpec, chunks: int) -> None:
    """The same members as one fused sweep, then one member at a time."""
    plan = make_plan(spec)
    fused = _time_runner(plan, chunks)
    seq = {"init_s": 0.0, "compile_s": 0.0, "run_s": 0.0}
    for m in plan.members:
        for key, v in _time_runner(make_plan(_only(spec, m)), chunks).items():
            seq[key] += v
    interactions = chunks * spec.updates_per_chunk * plan.interactions_per_update
    _emit(bench="fused_vs_sequential", device=jax.devices()[0].platform, members=len(plan.members),
          groups=len(plan.groups), chunks_timed=chunks, fused=fused, sequential=seq,
          ratio_run=seq["run_s"] / fused["run_s"],
          ratio_total=sum(seq.values()) / sum(fused.values()),
          fused_interactions_per_s=interactions * len(plan.members) / fused["run_s"])


def padded_vs_unpadded(spec: SweepSpec, chunks: int) -> None:
    """Grouping with zero-padding allowed (spec's budget, at least 1.0) vs equal shapes only."""
    for label, overhead in (("unpadded", 0.0), ("padded", max(spec.max_padding_overhead, 1.0))):
        plan = make_plan(_with(spec, max_padding_overhead=overhead))
        t = _time_runner(plan, chunks)
        _emit(bench="padding", grouping=label, groups=len(plan.groups),
              padded_flop_overhead=plan.padding_overhead, **t)


def memory(spec: SweepSpec) -> None:
    """Per group: the planner's analytic bytes per member vs XLA's (`xla_member_bytes`: the
    group's chunk program compiled for 2 members minus 1 member, arguments + outputs +
    temporaries - donated bytes, on abstract shapes)."""
    from scalelab.sweep.xla_memory import xla_member_bytes

    plan = make_plan(spec)
    for g in plan.groups:
        t0 = time.perf_counter()
        measured = xla_member_bytes(plan, g)
        _emit(bench="memory_per_member", device=jax.devices()[0].platform,
              group_width=g.network.width, predicted_bytes=g.memory_per_member,
              measured_bytes=measured, predicted_over_measured=g.memory_per_member / measured,
              compile_s=time.perf_counter() - t0)


def quickstart() -> None:
    """`scalelab quickstart` end to end: sweep + fit, wall time and the fitted exponent."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_sweep(specs.path("quickstart"), Path(tmp) / "qs", progress=False)
        t1 = time.perf_counter()
        report = fit_run(Path(tmp) / "qs", bootstrap=100, make_plots=True)
        t2 = time.perf_counter()
    for experiment in report.experiments:
        fit = experiment.fit
        _emit(bench="quickstart", label=experiment.label, sweep_s=t1 - t0, fit_s=t2 - t1,
              total_s=t2 - t0, size_exponent=fit.size_exponent,
              size_exponent_interval=(fit.intervals or {}).get("size_exponent"),
              alpha_N=fit.alpha_N, alpha_E=fit.alpha_E, status=fit.status,
              status_reason=fit.status_reason)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default="quickstart",
                        help="a spec file or a shipped spec's name (scalelab.specs)")
    parser.add_argument("--chunks", type=int, default=3, help="timed chunks after the first")
    parser.add_argument("--skip", default="", help="comma-separated: fused,padding,memory,"
                                                   "quickstart")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    spec = load_spec(specs.resolve(args.spec))
    if "fused" not in skip:
        fused_vs_sequential(spec, args.chunks)
    if "padding" not in skip:
        padded_vs_unpadded(spec, args.chunks)
    if "memory" not in skip:
        memory(spec)
    if "quickstart" not in skip:
        quickstart()


if __name__ == "__main__":
    main()
