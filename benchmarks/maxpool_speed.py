"""Max-pool gradient, old vs new, timed alternately in one process; one JSON line per result.

old: autodiff of ``flax.linen.max_pool`` (``reduce_window``; XLA's select-and-scatter);
new: ``scalelab.maxpool.max_pool`` (dense compare-and-pad custom VJP, bit-equal gradients).

- ``pool``: the VJP of the pool alone (values and input gradient), for the IMPALA pool
  (3x3 stride 2 SAME) on ``--pool-shape`` (default 128x64x64x16, issue 12's case) and the MNIST
  pool (2x2 stride 2 VALID) on 512x24x24x32 (MNIST width 1's first conv at batch 512).
- ``update``: one IMPALA PPO minibatch step (loss gradient, clip, Adam; ``roofline``'s
  ``minibatch_update``) at ``--batch`` CoinRun-shaped observations for each of ``--widths``,
  conv_impl "lax" (old pool) vs "taps" (new pool). At widths >= 1/2 every IMPALA layer has
  C_in * C_out > TAPS_MAX_CHANNELS (16; it was 4, and width 1/4 qualified, until 2026-12-06), so
  both programs compute the same library convolutions (checked); up to commit f2e5de5 they
  differed only in the pools, since then "taps" also takes those layers' kernel gradients, and
  since 2026-12-06 their input gradients and the dense layer's relu, its own way
  (``scalelab.conv_tap_grad``, ``networks.relu``).

Each program is compiled and run once, then old and new alternate ``--repeats`` times, every
output fetched with ``block_until_ready``; lines give median and min ms per call, the 1-minute
load average, and a ratio line old / new of the medians.

    PYTHONPATH=. python benchmarks/maxpool_speed.py [--repeats 7] [--widths 0.5]
        [--batch 256] [--pool-shape 128 64 64 16] [--out benchmarks/results/maxpool_speed.jsonl]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks.roofline import emit, minibatch_update, source_commit
from scalelab import networks
from scalelab.config import TrainConfig
from scalelab.maxpool import max_pool

DEFAULT_OUT = Path(__file__).parent / "results" / "maxpool_speed.jsonl"
IMPALA_OBS, IMPALA_ACTIONS = (64, 64, 3), 15
MNIST_POOL_SHAPE = (512, 24, 24, 32)

Programs = dict[str, Callable[[], Any]]


def pool_programs(shape: Sequence[int], window: tuple[int, int], padding: str) -> Programs:
    """old and new: the pool's values and its input gradient for a random cotangent."""
    kx, kg = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, tuple(shape))
    g = jax.random.normal(kg, nn.max_pool(x, window, (2, 2), padding).shape)

    def vjp(pool: Callable) -> Callable[[], Any]:
        fn = jax.jit(lambda x, g: (lambda y, back: (y, back(g)))(*jax.vjp(pool, x)))
        return lambda: fn(x, g)

    return {
        "old": vjp(lambda x: nn.max_pool(x, window, (2, 2), padding)),
        "new": vjp(lambda x: max_pool(x, window, (2, 2), padding)),
    }


def _conv_count(module: nn.Module, params: Any, obs: jax.Array) -> int:
    return str(jax.make_jaxpr(module.apply)(params, obs)).count("conv_general_dilated")


def update_programs(width: float, batch: int) -> Programs:
    """old ("lax") and new ("taps") IMPALA PPO minibatch steps, same params and minibatch."""
    cfg = networks.NetworkConfig("impala", width)
    config = TrainConfig(env="CoinRun-v0", network="impala", width=width, lr=5e-4)
    params = networks.init_params(cfg, jax.random.key(0), IMPALA_OBS, IMPALA_ACTIONS)
    obs = jax.random.randint(jax.random.key(2), (1, batch, *IMPALA_OBS), 0, 256).astype(jnp.uint8)
    modules = {
        "old": networks.build(cfg, IMPALA_ACTIONS, "lax"),
        "new": networks.build(cfg, IMPALA_ACTIONS, "taps"),
    }
    convs = {k: _conv_count(m, params, obs[0, :2]) for k, m in modules.items()}
    if convs["old"] != convs["new"]:
        raise SystemExit(f"width {width}: conv_impl taps changes the convolutions too ({convs})")
    stacked = jax.tree.map(lambda p: p[None], params)
    return {
        k: minibatch_update(m.apply, config, IMPALA_ACTIONS, stacked, obs)
        for k, m in modules.items()
    }


def _call(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def compare(programs: Programs, repeats: int, case: dict) -> list[dict]:
    """Compile both, alternate them ``repeats`` times; a line per program and a ratio line."""
    compile_s = {k: _call(fn) for k, fn in programs.items()}
    times: dict[str, list[float]] = {k: [] for k in programs}
    for _ in range(repeats):
        for k, fn in programs.items():
            times[k].append(_call(fn))
    common = dict(backend=jax.default_backend(), cpu_count=os.cpu_count(),
                  loadavg_1m=round(os.getloadavg()[0], 2), **case)
    medians = {k: statistics.median(ts) for k, ts in times.items()}
    lines = [
        dict(bench="maxpool_speed", impl=k, median_ms=round(1e3 * medians[k], 2),
             min_ms=round(1e3 * min(ts), 2), repeats=repeats,
             compile_s=round(compile_s[k], 2), **common)
        for k, ts in times.items()
    ]
    lines.append(dict(bench="maxpool_speed_ratio",
                      old_over_new=round(medians["old"] / medians["new"], 2), **common))
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--widths", type=float, nargs="*", default=[0.5])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--pool-shape", type=int, nargs=4, default=[128, 64, 64, 16])
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="JSON-lines file to append to ('-': print only)")
    args = parser.parse_args(argv)
    commit = source_commit()
    cases = [
        (dict(program="pool", pool="3x3/2 SAME", shape=args.pool_shape),
         lambda: pool_programs(args.pool_shape, (3, 3), "SAME")),
        (dict(program="pool", pool="2x2/2 VALID", shape=list(MNIST_POOL_SHAPE)),
         lambda: pool_programs(MNIST_POOL_SHAPE, (2, 2), "VALID")),
    ] + [
        (dict(program="update", family="impala", width=w, depth=2, batch=args.batch),
         lambda w=w: update_programs(w, args.batch))
        for w in args.widths
    ]
    for case, make in cases:
        for line in compare(make(), args.repeats, case):
            emit(line, args.out, commit)


if __name__ == "__main__":
    main()
