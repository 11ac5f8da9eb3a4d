"""Env step breakdown: milliseconds of each part of one batched auto-reset step, compiled alone.

Parts of `ProcgenGame.step` under `vmap` at one batch size: `game_step` (physics), `render`
(one frame), `sample_start` (the pool gather of a reset), `select` (choosing the reset or the
continuing state), and the whole `step` with and without `info["final_observation"]`. Each part
is its own jitted function on states taken from a random rollout (so objects are on screen),
timed over `--repeats` calls after a warm-up, every output consumed (`block_until_ready` on
all of it): median and best wall-clock ms, and best process CPU ms (the steadier number on a
shared machine). One JSON line per (env, part).

    PYTHONPATH=. python benchmarks/env_step_parts.py [--envs CoinRun-v0] [--batch 1024]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

import envs_jax

DEFAULT_ENVS = ("CoinRun-v0", "StarPilot-v0", "FruitBot-v0")


def _times_ms(fn: Callable, args: tuple, repeats: int) -> dict[str, float]:
    """Median and best wall-clock ms, and best process CPU ms (all threads), per call."""
    jax.block_until_ready(fn(*args))  # compile and warm up
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"ms": 1e3 * statistics.median(wall), "min_ms": 1e3 * min(wall),
            "cpu_ms": 1e3 * min(cpu)}


def parts(name: str, batch: int, warm_steps: int) -> dict[str, tuple[Callable, tuple]]:
    """Jitted part functions of env `name` and their arguments, keyed by part name."""
    env, params = envs_jax.make(name)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    actions = jax.random.randint(jax.random.PRNGKey(1), (batch,), 0, env.num_actions)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

    @jax.jit
    def warm(state):
        def body(state, k):
            a = jax.random.randint(k, (batch,), 0, env.num_actions)
            return step(jax.random.split(k, batch), state, a, params)[1], None

        return jax.lax.scan(body, state, jax.random.split(jax.random.PRNGKey(2), warm_steps))[0]

    state = warm(state)
    fresh = jax.vmap(env.sample_start, in_axes=(0, None))(keys, params)
    done = jax.random.bernoulli(jax.random.PRNGKey(3), 0.01, (batch,))

    def select(done, a, b):
        return jax.tree.map(lambda x, y: jnp.where(done.reshape((-1,) + (1,) * (x.ndim - 1)), x, y),
                            a, b)

    def full(final_obs: bool) -> Callable:
        def run(keys, state, actions):
            obs, state, reward, term, trunc, info = step(keys, state, actions, params)
            out = (obs, state, reward, term, trunc)
            return out + (info["final_observation"],) if final_obs else out

        return jax.jit(run)

    return {
        "game_step": (jax.jit(jax.vmap(lambda k, s, a: env.game_step(k, s, a, params))),
                      (keys, state, actions)),
        "render": (jax.jit(jax.vmap(lambda s: env.render(s, params))), (state,)),
        "sample_start": (jax.jit(jax.vmap(lambda k: env.sample_start(k, params))), (keys,)),
        "select": (jax.jit(select), (done, fresh, state)),
        "step_final_obs": (full(True), (keys, state, actions)),
        "step": (full(False), (keys, state, actions)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS))
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warm-steps", type=int, default=50, help="random steps before timing")
    parser.add_argument("--parts", nargs="+", default=None, help="only these parts")
    args = parser.parse_args()
    for name in args.envs:
        for part, (fn, fn_args) in parts(name, args.batch, args.warm_steps).items():
            if args.parts and part not in args.parts:
                continue
            times = _times_ms(fn, fn_args, args.repeats)
            print(json.dumps({
                "benchmark": "env_step_parts", "env": name, "batch": args.batch, "part": part,
                **times, "ns_per_env": 1e6 * times["ms"] / args.batch,
                "platform": jax.default_backend(),
            }), flush=True)


if __name__ == "__main__":
    main()
