"""MNIST-v0 raw environment throughput: vmapped steps per second inside one jitted scan.

Prints one JSON line per (variant, batch): `fast` is MNISTEnv.step (one digit draw per step),
`gymnax_generic` is gymnax's base Environment.step on the same env (a step draw plus a reset
draw, selected). Random actions; compile time reported separately from the timed runs.

    PYTHONPATH=. python benchmarks/mnist_env_throughput.py [--steps 1000] [--batches 64 1024]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
from gymnax.environments import environment

import envs_jax


def build(env, batch: int, steps: int, generic: bool):
    """A jitted fn(key, params) -> a sum over all outputs of `steps` steps of `batch` envs."""
    step = environment.Environment.step if generic else type(env).step
    vstep = jax.vmap(lambda k, s, a, p: step(env, k, s, a, p), in_axes=(0, 0, 0, None))

    @jax.jit
    def run(key, params):
        keys = jax.random.split(key, batch)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

        def body(carry, k):
            state, total = carry
            k_act, k_env = jax.random.split(k)
            actions = jax.random.randint(k_act, (batch,), 0, env.num_actions)
            obs, state, reward, _, truncated, info = vstep(
                jax.random.split(k_env, batch), state, actions, params
            )
            # Consume every output so none is dead-code eliminated.
            total = total + reward.sum() + obs[:, 0, 0, 0].sum() + truncated.sum()
            total = total + info["final_observation"][:, 14, 14, 0].sum()
            return (state, total), None

        (_, total), _ = jax.lax.scan(body, (state, jnp.float32(0)), jax.random.split(key, steps))
        return total

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env, params = envs_jax.make("MNIST-v0")
    for generic in (False, True):
        for batch in args.batches:
            run = build(env, batch, args.steps, generic)
            t0 = time.perf_counter()
            run(jax.random.key(0), params).block_until_ready()
            compile_s = time.perf_counter() - t0
            best = float("inf")
            for r in range(args.repeats):
                t0 = time.perf_counter()
                run(jax.random.key(r + 1), params).block_until_ready()
                best = min(best, time.perf_counter() - t0)
            print(json.dumps({
                "benchmark": "mnist_env_steps_per_s",
                "variant": "gymnax_generic" if generic else "fast",
                "batch": batch,
                "steps": args.steps,
                "steps_per_s": batch * args.steps / best,
                "compile_s": compile_s,
                "device": str(jax.devices()[0]),
            }), flush=True)


if __name__ == "__main__":
    main()
