"""Time to first update against the number of members (issue 16 item 3): start-up must be flat.

For CartPole's MLP (TrainConfig.preset("CartPole-v1")) and the MNIST CNN at width 1/16
(TrainConfig.preset("MNIST-v0", width=1/16)), with 1, 8 and 64 members (seeds), the path of
`scalelab.train`: spec -> plan -> FusedRunner, `init_state`, then one chunk of one update
(compile + run, outputs fetched). Each measurement runs in a fresh Python process (nothing
cached by an earlier one); the member counts alternate within each repetition. One JSON line
per measurement (wall and CPU seconds of each phase, load average), then one summary line per
network with the medians and the ratio 64 members / 1 member.

    PYTHONPATH=. python benchmarks/startup.py [--members 1 8 64] [--reps 2]
        [--networks cartpole_mlp mnist_cnn] [--out benchmarks/results/startup_cpu.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks.jsonl import emit
from scalelab.config import TrainConfig
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner
from scalelab.sweep.spec import parse_spec, spec_for_config

NETWORKS: dict[str, Callable[[], TrainConfig]] = {
    "cartpole_mlp": lambda: TrainConfig.preset("CartPole-v1"),
    "mnist_cnn": lambda: TrainConfig.preset("MNIST-v0", width=1 / 16),
}


def _timed(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}


def measure(network: str, num_members: int) -> dict[str, Any]:
    """Phases to the first update of `num_members` seeds of `network` (this process)."""
    config = NETWORKS[network]()
    load = list(os.getloadavg())
    runner, plan_t = _timed(lambda: FusedRunner(make_plan(parse_spec(
        spec_for_config(config, num_members), "<startup>"))))
    state, init_t = _timed(lambda: jax.block_until_ready(runner.init_state()))
    _, compile_t = _timed(lambda: runner.compiled_chunk(state, 1))
    _, run_t = _timed(lambda: jax.tree.map(np.asarray, runner.step(state, 1)[1]))
    phases = {"plan": plan_t, "init_state": init_t, "compile": compile_t, "first_update": run_t}
    return {"bench": "startup", "network": network, "members": num_members,
            "env": config.env, "width": config.width, "num_envs": config.num_envs,
            "phases": phases,
            "total_wall_s": sum(p["wall_s"] for p in phases.values()),
            "total_cpu_s": sum(p["cpu_s"] for p in phases.values()),
            "load_before": load, "load_after": list(os.getloadavg()),
            "device": jax.devices()[0].platform}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--label", default="", help="free text stored with every line")
    ap.add_argument("--out", type=Path, default=None, help="also append the lines here")
    ap.add_argument("--one", nargs=2, metavar=("NETWORK", "MEMBERS"),
                    help="measure one case in this process and print its line (internal)")
    args = ap.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.one[0], int(args.one[1]))), flush=True)
        return
    for network in args.networks:
        rows: dict[int, list[dict[str, Any]]] = {m: [] for m in args.members}
        for rep in range(args.reps):
            for m in args.members:
                proc = subprocess.run(
                    [sys.executable, __file__, "--one", network, str(m)], check=True,
                    capture_output=True, text=True)
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                row.update(rep=rep, label=args.label)
                rows[m].append(row)
                emit(row, args.out)
        med = {m: {k: statistics.median(r[k] for r in rs) for k in ("total_wall_s", "total_cpu_s")}
               for m, rs in rows.items()}
        lo, hi = min(args.members), max(args.members)
        emit({"bench": "startup_summary", "network": network, "reps": args.reps,
               "label": args.label, "median": {str(m): v for m, v in med.items()},
               f"wall_ratio_{hi}_vs_{lo}": med[hi]["total_wall_s"] / med[lo]["total_wall_s"],
               f"cpu_ratio_{hi}_vs_{lo}": med[hi]["total_cpu_s"] / med[lo]["total_cpu_s"],
               "load_avg_1m": [r["load_before"][0] for rs in rows.values() for r in rs]},
              args.out)


if __name__ == "__main__":
    main()
