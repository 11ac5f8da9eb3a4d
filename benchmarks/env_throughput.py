"""Environment throughput: steps/s of each game under random actions, auto-reset included.

Prints one JSON line per (env, batch, final_obs, level_refresh). The loop is one jitted
`lax.scan` of `steps` vmapped steps (actions drawn inside), timed after a warm-up call (then
median and best of `--repeats` calls, with the load average), with every output consumed
(every observation byte XOR-ed into a checksum) and `block_until_ready`. An int32 sum of the
frames, used before, cost more than CoinRun's whole step (27.6 ms of CPU per 1024 frames on
its own, against 1.9 ms for the XOR), so numbers taken with it (benchmarks/results before
2026-12-05) are not comparable. With final_obs=false the
checksum leaves out `info["final_observation"]`, which XLA then never computes: that is the
cost for a trainer that does not bootstrap truncated episodes (the Procgen games render the
pre-reset frame separately). `--level-refresh` picks the Procgen games' form: "step" (the
default of `envs_jax.make`, refreshing levels inside step) and/or "caller" (the pool-managed
form that scalelab's trainer refreshes between rollouts; the refresh itself is not timed here).

    PYTHONPATH=. python benchmarks/env_throughput.py [--envs CoinRun-v0] [--batch 256 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp

import envs_jax

DEFAULT_ENVS = ("CoinRun-v0", "StarPilot-v0", "FruitBot-v0")


def frame_checksum(frames: jax.Array) -> jax.Array:
    """XOR of every byte of uint8 frames, as int32: depends on all of them, costs ~1 pass."""
    axes = tuple(range(frames.ndim))
    return jax.lax.reduce(frames, jnp.uint8(0), jax.lax.bitwise_xor, axes).astype(jnp.int32)


def measure(name: str, batch: int, steps: int, repeats: int, final_obs: bool = True,
            level_refresh: str = "step") -> dict:
    """Median (and best) steps/s over `repeats` calls of `steps` steps at `batch` parallel envs,
    with the 1-minute load average before and after the timed calls (a shared machine)."""
    env, params = envs_jax.make(name, level_refresh=level_refresh)
    num_actions = env.num_actions

    @jax.jit
    def run(key, state):
        def body(carry, k):
            state, acc = carry
            k_act, k_step = jax.random.split(k)
            actions = jax.random.randint(k_act, (batch,), 0, num_actions)
            obs, state, reward, term, trunc, info = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(jax.random.split(k_step, batch), state, actions, params)
            acc = acc + frame_checksum(obs) + jnp.sum(reward) + jnp.sum(term | trunc)
            if final_obs:
                acc = acc + frame_checksum(info["final_observation"])
            return (state, acc), None

        (state, acc), _ = jax.lax.scan(body, (state, jnp.float32(0)), jax.random.split(key, steps))
        return state, acc

    _, state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(jax.random.PRNGKey(0), batch), params
    )
    state, acc = run(jax.random.PRNGKey(1), state)  # warm-up: compile and first run
    jax.block_until_ready(acc)
    load_before = os.getloadavg()[0]
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        state, acc = run(jax.random.PRNGKey(2 + r), state)
        jax.block_until_ready((state, acc))
        times.append(time.perf_counter() - t0)
    median, best = statistics.median(times), min(times)
    return {
        "benchmark": "env_throughput",
        "env": name,
        "batch": batch,
        "steps": steps,
        "final_obs": final_obs,
        "level_refresh": level_refresh,
        "checksum": "xor_bytes",
        "steps_per_s": batch * steps / median,
        "best_steps_per_s": batch * steps / best,
        "seconds": median,
        "repeats": repeats,
        "loadavg_1m": [load_before, os.getloadavg()[0]],
        "device": jax.devices()[0].device_kind,
        "platform": jax.default_backend(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS))
    parser.add_argument("--batch", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--steps", type=int, default=64, help="steps per timed call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--final-obs", choices=("both", "yes", "no"), default="both",
        help="consume info['final_observation'] (yes), not (no), or measure both",
    )
    parser.add_argument("--level-refresh", nargs="+", choices=("step", "caller"),
                        default=["step", "caller"])
    args = parser.parse_args()
    modes = {"both": (True, False), "yes": (True,), "no": (False,)}[args.final_obs]
    for name in args.envs:
        for batch in args.batch:
            for final_obs in modes:
                for level_refresh in args.level_refresh:
                    result = measure(name, batch, args.steps, args.repeats, final_obs,
                                     level_refresh)
                    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
