"""CNN training-step speed by formulation ("lax" vs "taps", scalelab.networks); JSON lines.

For each case (family, width, batch, members) and each ``conv_impl`` it times two compiled
programs: "train", value_and_grad of the PPO loss (``scalelab.algos.ppo.ppo_loss``) w.r.t. the
parameters on one minibatch, vmapped over ``members`` stacked parameter sets (as the sweep runner
trains a group), and "act", the forward pass at the rollout batch (``--act-batch``, the envs of
one rollout step). Each program is compiled and run once (compile_s), then the implementations'
calls are interleaved ``--repeats`` times (so both see the same machine state) and every output is
fetched with ``block_until_ready``; median_ms and min_ms are per call. A final line per case gives
lax / taps ratios of the medians.

``--profile CASE`` instead prints the heaviest XLA ops (jax.profiler trace, mean ms per call) of
the train program of one case for each implementation, e.g. ``--profile mnist_cnn:0.0625:512``.

    PYTHONPATH=. python benchmarks/cnn_speed.py [--cases default|quick|FAMILY:WIDTH:BATCH ...]
        [--members 1] [--repeats 7] [--act-batch 32] [--impls lax taps] [--profile CASE]

On a machine shared with other jobs, pin it (``taskset -c 0``) for steadier per-op numbers.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from scalelab.algos import ppo
from scalelab.networks import NetworkConfig, build, init_params

OBS = {"mnist_cnn": ((28, 28, 1), 10), "impala": ((64, 64, 3), 15)}
CASES = {
    "default": [f"mnist_cnn:{w}:{b}" for w in (1 / 64, 1 / 16, 1 / 4) for b in (512, 1024)]
    + [f"impala:{w}:256" for w in (1 / 16, 1 / 4)],
    "quick": ["mnist_cnn:0.0625:512", "impala:0.0625:256"],
}


def _parse_case(text: str) -> tuple[str, float, int]:
    parts = text.split(":")
    try:
        family, width, batch = parts[0], float(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        family = None
    if family not in OBS or len(parts) != 3:
        raise SystemExit(f"case {text!r}: expected FAMILY:WIDTH:BATCH, FAMILY in {list(OBS)}")
    return family, width, batch


def _programs(
    family: str, width: float, batch: int, members: int, act_batch: int, impl: str
) -> dict[str, tuple[Callable, tuple]]:
    """The case's jitted train and act programs for one implementation, with their inputs."""
    shape, num_actions = OBS[family]
    cfg = NetworkConfig(family, width)
    module = build(cfg, num_actions, impl)
    params = init_params(cfg, jax.random.key(0), shape, num_actions)
    stacked = jax.tree.map(lambda x: jnp.stack([x] * members), params)
    keys = jax.random.split(jax.random.key(1), 5)
    n = (members, batch)
    minibatch = ppo.Batch(
        obs=jax.random.randint(keys[0], (*n, *shape), 0, 256).astype(jnp.uint8),
        actions=jax.random.randint(keys[1], n, 0, num_actions),
        old_log_probs=jnp.full(n, -np.log(num_actions), jnp.float32),
        old_values=jax.random.normal(keys[2], n),
        advantages=jax.random.normal(keys[3], n),
        returns=jax.random.normal(keys[4], n),
    )
    coefs = ppo.LossCoefs(0.2, 0.5, 0.01)

    def train(p, mb):
        return jax.value_and_grad(ppo.ppo_loss, has_aux=True)(p, module.apply, mb, coefs)

    act_obs = minibatch.obs[:, :act_batch]
    return {
        "train": (jax.jit(jax.vmap(train)), (stacked, minibatch)),
        "act": (jax.jit(jax.vmap(module.apply)), (stacked, act_obs)),
    }


def _call(fn: Callable, args: tuple) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def bench_case(case: str, impls: list[str], members: int, repeats: int, act_batch: int) -> None:
    family, width, batch = _parse_case(case)
    progs = {i: _programs(family, width, batch, members, act_batch, i) for i in impls}
    compile_s = {(i, k): _call(*progs[i][k]) for i in impls for k in progs[i]}
    times = collections.defaultdict(list)
    for _ in range(repeats):
        for i in impls:
            for k, prog in progs[i].items():
                times[i, k].append(_call(*prog))
    common = dict(family=family, width=width, members=members, backend=jax.default_backend(),
                  cpu_count=os.cpu_count(), loadavg_1m=round(os.getloadavg()[0], 2))
    medians = {}
    for (impl, kind), ts in times.items():
        medians[impl, kind] = float(np.median(ts))
        print(json.dumps(dict(bench="cnn_speed", program=kind, conv_impl=impl,
                              batch=batch if kind == "train" else act_batch,
                              median_ms=round(1e3 * medians[impl, kind], 3),
                              min_ms=round(1e3 * min(ts), 3), repeats=repeats,
                              compile_s=round(compile_s[impl, kind], 2), **common)), flush=True)
    if {"lax", "taps"} <= set(impls):
        ratios = {f"{k}_lax_over_taps": round(medians["lax", k] / medians["taps", k], 2)
                  for k in ("train", "act")}
        print(json.dumps(dict(bench="cnn_speed_ratio", batch=batch, act_batch=act_batch,
                              **ratios, **common)), flush=True)


def profile_case(case: str, impls: list[str], members: int, top: int = 12, calls: int = 3) -> None:
    """The heaviest XLA ops of the case's train program, from a jax.profiler trace."""
    family, width, batch = _parse_case(case)
    for impl in impls:
        fn, args = _programs(family, width, batch, members, 1, impl)["train"]
        _call(fn, args)
        hlo = fn.lower(*args).compile().as_text()
        with tempfile.TemporaryDirectory() as tmp:
            with jax.profiler.trace(tmp, create_perfetto_trace=True):
                for _ in range(calls):
                    _call(fn, args)
            path = glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)[0]
            with gzip.open(path) as f:
                events = json.load(f)
        events = events["traceEvents"] if isinstance(events, dict) else events
        per_op = collections.Counter()
        for e in events:
            # XLA ops are the names the compiled module defines; skip host-side annotations
            if e.get("ph") == "X" and f"%{e['name']} = " in hlo:
                per_op[e["name"]] += e.get("dur", 0.0)
        for name, us in per_op.most_common(top):
            line = next(ln for ln in hlo.splitlines() if f"%{name} = " in ln)
            source = line.split('op_name="')[1].split('"')[0] if 'op_name="' in line else ""
            print(json.dumps(dict(bench="cnn_profile", case=case, conv_impl=impl, op=name,
                                  ms_per_call=round(us / calls / 1e3, 3),
                                  shape=line.split("= ", 1)[1].split(" ", 1)[0],
                                  source=source[-80:])), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["default"])
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--act-batch", type=int, default=32)
    parser.add_argument("--impls", nargs="+", default=["lax", "taps"],
                        choices=["lax", "taps"])
    parser.add_argument("--profile", metavar="CASE")
    args = parser.parse_args()
    if args.profile:
        profile_case(args.profile, args.impls, args.members)
        return
    cases = [c for name in args.cases for c in CASES.get(name, [name])]
    for case in cases:
        bench_case(case, args.impls, args.members, args.repeats, args.act_batch)


if __name__ == "__main__":
    main()
