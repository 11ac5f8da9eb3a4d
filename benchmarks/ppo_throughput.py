"""PPO training throughput (interactions/s): CartPole, MNIST, CoinRun; one JSON line per result.

(a) gymnax CartPole-v1 with PureJaxRL's defaults (4 envs x 128 steps, 4 epochs x 4 minibatches,
lr 2.5e-4 annealed, γ .99, λ .95, clip .2, ent .01, vf .5, grad-norm .5, MLP 64-64 tanh, Adam eps
1e-5, 5e5 steps) for 1 and 8 vmapped seeds, with the final mean return (last logging window,
averaged over seeds). (b) MNIST-v0 (preset: γ = 0, λ = 1) at widths 1/8, 1/4, 1/2, 1 with the
interactions needed to reach 90% training accuracy (seed mean). (c) CoinRun-v0 (easy, unlimited
levels) with the IMPALA CNN at widths 1/16, 1/4, 1: CleanRL's Procgen PPO settings (3 epochs x 8
minibatches, lr 5e-4, γ .999, λ .95) at a CPU-sized batch of 8 envs x 16 steps for 1 update
(256-level pool, 32 levels regenerated per rollout inside the program); `--gpu-scale` uses the
paper-scale batch of 64 envs x 256 steps (the default 1024-level pool) for 8 updates. Each line
has the network's forward FLOPs per observation (policy + value towers); one training
interaction costs about (1 + 3 x epochs) of those (rollout forward, then forward + backward).

Each result: compile time separately; then one warm-up chunk on a throwaway state; then the whole
run from a fresh state, timed to `block_until_ready` of the final state with every chunk's
metrics consumed on the host. interactions_per_s counts all members' env steps (incl. updates).

    PYTHONPATH=. python benchmarks/ppo_throughput.py [--only cartpole|mnist|coinrun]
        [--seeds 1 8] [--widths 0.125 0.25 0.5 1] [--mnist-interactions N]
        [--impala-widths 0.0625 0.25 1] [--gpu-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import jax
import numpy as np

from scalelab import report
from scalelab.config import TrainConfig
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner, execute
from scalelab.sweep.spec import parse_spec, spec_for_config
from scalelab.train import RunResult

MNIST_TARGET = 0.9


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(config: TrainConfig, num_seeds: int) -> tuple[dict, RunResult]:
    """Compile, warm up, then time one full training run of `config` with num_seeds members
    through the runner `scalelab.train` uses (every chunk program compiled and run once first)."""
    runner = FusedRunner(make_plan(parse_spec(spec_for_config(config, num_seeds))))
    t0 = time.perf_counter()
    execute(runner, runner.init_state())  # warm-up: compiles every chunk shape, runs them once
    compile_s = time.perf_counter() - t0
    state = runner.init_state()
    jax.block_until_ready(state)
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    state, rows = execute(runner, state)
    jax.block_until_ready(state)
    train_s = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    result = RunResult.from_rows(config, runner, rows, state.groups[0].params, compile_s,
                                 train_s)
    interactions = int(result.interactions[-1]) * num_seeds
    line = {
        "bench": "ppo_throughput",
        "env": config.env,
        "network": result.network,
        "width": config.width,
        "params": result.params,
        "forward_flops_per_interaction": result.flops_per_interaction,
        "seeds": num_seeds,
        "interactions_per_seed": int(result.interactions[-1]),
        "batch": f"{config.num_envs}x{config.rollout_length}",
        "updates_per_chunk": config.updates_per_chunk,
        "warmup_s": round(compile_s, 2),  # compile + one untimed run of every chunk
        "train_s": round(result.train_seconds, 3),
        "interactions_per_s": float(f"{interactions / result.train_seconds:.3g}"),
        "interactions_per_cpu_s": float(f"{interactions / cpu:.3g}"),
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    return line, result


def cartpole(seeds: list[int]) -> None:
    # 976 updates = 16 chunks of 61: a final logging window of 61 x 512 = 31k steps.
    config = TrainConfig.preset("CartPole-v1", updates_per_chunk=61)
    for n in seeds:
        line, result = measure(config, n)
        line["final_return"] = round(float(np.nanmean(result.score[:, -1])), 1)
        line["final_return_per_seed"] = [round(float(x), 1) for x in result.score[:, -1]]
        print(json.dumps(line), flush=True)


def mnist(widths: list[float], interactions: int | None, seeds: int) -> None:
    extra = {} if interactions is None else {"total_interactions": interactions}
    for width in widths:
        line, result = measure(TrainConfig.preset("MNIST-v0", width=width, **extra), seeds)
        line["final_accuracy"] = round(float(np.mean(result.score[:, -1])), 4)
        line["interactions_to_90pct"] = report.interactions_to_reach(result, MNIST_TARGET)
        print(json.dumps(line), flush=True)


def coinrun_config(width: float, gpu_scale: bool) -> TrainConfig:
    """PPO on CoinRun-v0 with the IMPALA CNN at `width` (CPU-sized unless `gpu_scale`)."""
    if gpu_scale:
        size = dict(num_envs=64, rollout_length=256, total_interactions=8 * 64 * 256,
                    updates_per_chunk=4)
    else:
        size = dict(num_envs=8, rollout_length=16, total_interactions=8 * 16,
                    updates_per_chunk=1, env_kwargs=dict(pool_size=256, refresh_size=32))
    return TrainConfig(
        env="CoinRun-v0", network="impala", width=width, update_epochs=3, num_minibatches=8,
        lr=5e-4, gamma=0.999, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01, **size,
    )


def coinrun(widths: list[float], gpu_scale: bool) -> None:
    for width in widths:
        line, _ = measure(coinrun_config(width, gpu_scale), 1)
        line["gpu_scale"] = gpu_scale
        print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["cartpole", "mnist", "coinrun"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8],
                        help="CartPole member counts")
    parser.add_argument("--widths", type=float, nargs="+", default=[0.125, 0.25, 0.5, 1.0])
    parser.add_argument("--mnist-seeds", type=int, default=1)
    parser.add_argument("--mnist-interactions", type=int, default=None)
    parser.add_argument("--impala-widths", type=float, nargs="+", default=[0.0625, 0.25, 1.0])
    parser.add_argument("--gpu-scale", action="store_true",
                        help="CoinRun at the paper's batch (64 envs x 256 steps)")
    args = parser.parse_args()
    if args.only in (None, "cartpole"):
        cartpole(args.seeds)
    if args.only in (None, "mnist"):
        mnist(args.widths, args.mnist_interactions, args.mnist_seeds)
    if args.only in (None, "coinrun"):
        coinrun(args.impala_widths, args.gpu_scale)


if __name__ == "__main__":
    main()
