"""PPO epochs inside ``lax.scan`` (as the trainer runs them) vs the same minibatch steps as
separate top-level calls; one JSON line per program, plus the scan's heaviest XLA ops.

On XLA:CPU the convolutions of a scan body, forward and both gradients, compile to plain loop
emitters (``convolution`` with ``outer_dimension_partitions``) while the same convolutions in a
top-level program become library fusions; this measures what that costs a PPO update. Programs,
for the IMPALA CNN at ``--width`` (conv_impl "auto") on ``--batch`` random CoinRun-shaped samples:

- ``scan``: ``scalelab.algos.ppo.ppo_update``, ``--epochs`` x ``--minibatches`` steps in scans;
- ``steps``: ``roofline.minibatch_update`` called epochs x minibatches times (same step sizes).

Each is compiled and run once, then called ``--repeats`` times (median, to block_until_ready).
``--profile`` adds the scan's ``--top`` heaviest ops from a jax.profiler trace of one call.

    PYTHONPATH=. python benchmarks/scan_vs_steps.py [--width 0.25] [--batch 128] [--epochs 1]
        [--minibatches 8] [--repeats 2] [--profile] [--out benchmarks/results/scan_vs_steps.jsonl]
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks.roofline import emit, minibatch_update, source_commit
from scalelab import networks
from scalelab.algos import ppo
from scalelab.config import TrainConfig

DEFAULT_OUT = Path(__file__).parent / "results" / "scan_vs_steps.jsonl"
OBS, ACTIONS = (64, 64, 3), 15


def _batch(n: int) -> ppo.Batch:
    k = jax.random.split(jax.random.key(3), 5)
    return ppo.Batch(
        obs=jax.random.randint(k[0], (n, *OBS), 0, 256).astype(jnp.uint8),
        actions=jax.random.randint(k[1], (n,), 0, ACTIONS),
        old_log_probs=jnp.full((n,), -jnp.log(ACTIONS), jnp.float32),
        old_values=jax.random.normal(k[2], (n,)),
        advantages=jax.random.normal(k[3], (n,)),
        returns=jax.random.normal(k[4], (n,)),
    )


def programs(args: argparse.Namespace) -> tuple[dict[str, Callable[[], Any]], str]:
    """The two programs as calls, and the scan's compiled HLO text."""
    cfg = networks.NetworkConfig("impala", args.width)
    module = networks.build(cfg, ACTIONS)
    config = TrainConfig(env="CoinRun-v0", network="impala", width=args.width, lr=5e-4)
    params = networks.init_params(cfg, jax.random.key(0), OBS, ACTIONS)
    batch = _batch(args.batch)
    optimizer = ppo.adam(config.adam_eps)
    coefs = ppo.LossCoefs(config.clip_eps, config.vf_coef, config.ent_coef)
    update = jax.jit(lambda p, s, b, key: ppo.ppo_update(
        p, s, b, key, module.apply, optimizer, coefs, config.lr, config.max_grad_norm,
        args.epochs, args.minibatches,
    ))
    opt_state = optimizer.init(params)
    size = args.batch // args.minibatches
    step = minibatch_update(module.apply, config, ACTIONS, jax.tree.map(lambda p: p[None], params),
                            batch.obs[None, :size])
    scan_args = (params, opt_state, batch, jax.random.key(5))
    calls = {
        "scan": lambda: update(*scan_args),
        "steps": lambda: [step() for _ in range(args.epochs * args.minibatches)],
    }
    return calls, update.lower(*scan_args).compile().as_text()


def heaviest_ops(fn: Callable[[], Any], hlo: str, top: int) -> list[dict]:
    """Name, ms, calls and HLO (result shape, op, dims) of the ``top`` heaviest XLA ops of one
    call of ``fn`` whose compiled HLO text is ``hlo``."""
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            jax.block_until_ready(fn())
        path = glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)[0]
        with gzip.open(path) as f:
            events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    lines = {ln.split(" = ")[0].strip().lstrip("%"): ln.split(" = ", 1)[1]
             for ln in hlo.splitlines() if " = " in ln}
    total, calls = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in lines:
            total[e["name"]] += e.get("dur", 0.0)
            calls[e["name"]] += 1
    return [
        dict(op=name, ms=round(us / 1e3, 1), calls=calls[name],
             hlo=lines[name].split(", metadata")[0][:160])
        for name, us in total.most_common(top)
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--minibatches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="JSON-lines file to append to ('-': print only)")
    args = parser.parse_args(argv)
    commit = source_commit()
    case = dict(family="impala", width=args.width, batch=args.batch, epochs=args.epochs,
                minibatches=args.minibatches, conv_impl=networks.resolve_conv_impl("auto"),
                backend=jax.default_backend(), cpu_count=os.cpu_count())
    calls, hlo = programs(args)
    for name, fn in calls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        compile_s = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - t0)
        emit(dict(bench="scan_vs_steps", program=name, median_s=round(statistics.median(times), 3),
                  min_s=round(min(times), 3), repeats=args.repeats,
                  compile_s=round(compile_s, 1), loadavg_1m=round(os.getloadavg()[0], 2),
                  **case), args.out, commit)
        if args.profile and name == "scan":
            for op in heaviest_ops(fn, hlo, args.top):
                emit(dict(bench="scan_vs_steps_op", program=name, **op, **case), args.out, commit)


if __name__ == "__main__":
    main()
