"""The one-command accelerator suite (issue 12 item 5): games, PPO and roofline, fused sweep, PPG.

    PYTHONPATH=. python benchmarks/gpu_suite.py [--out benchmarks/results/gpu_suite.jsonl]
        [--parts peak,envs,mnist,impala,fused,ppg] [--budget-s 450] [--smoke]

Parts, each one JSON line per result (appended to --out and printed), in this order:

- peak: the device's fp32 matmul FLOP/s (N x N, best of a few calls) at the default matmul
  precision (on NVIDIA GPUs XLA may use TF32 for fp32 dots) and at precision HIGHEST (true
  fp32). The roofline fractions below divide by both.
- envs: steps/s of CoinRun, StarPilot and FruitBot at batch 4096 under random actions
  (auto-reset and final_observation included), one jitted `lax.scan`, timed after a warm-up.
- mnist / impala: PPO training through the sweep runner (`FusedRunner`: the real chunk
  program), one member per width (MNIST CNN widths 1/64 ... 8 on MNIST-v0, IMPALA widths
  1/16 ... 4 on CoinRun-v0): interactions/s of a chunk after its compile, and the achieved FLOP/s
  as a fraction of the peaks, counting per interaction one forward pass to act and, per epoch,
  a forward and a backward pass (backward = 2 x forward): F * (1 + 3 * update_epochs) with F =
  `scalelab.networks.forward_flops` (both towers).
- fused: >= 32 members (seeds) of a small MNIST CNN as one fused sweep against the same
  members one at a time (one member's compiled program run once per member: members of a seed
  sweep have the same shapes and cost); run seconds after compile.
- ppg: PPG-EWMA on CoinRun at IMPALA width 1, a chunk of ppg_n_pi updates (one auxiliary
  phase included).

Every line carries the device, the load average and the part's wall seconds; a part that fails
writes a line with its error and the suite goes on. Parts not started by --budget-s seconds are
written as skipped, so the whole run stays within the time given (8 minutes on one GPU by
default, compile included). `--smoke` runs every part at tiny sizes (one game, one width of each
network, IMPALA depth 1, PPG-EWMA at width 1/16) with no budget: a check that every part works.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import envs_jax
from scalelab import networks
from scalelab.config import TrainConfig
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner
from scalelab.sweep.spec import parse_spec, spec_for_config

PARTS = ("peak", "envs", "mnist", "impala", "fused", "ppg")
GAMES = ("CoinRun-v0", "StarPilot-v0", "FruitBot-v0")
MNIST_WIDTHS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0)
IMPALA_WIDTHS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0)
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gpu_suite.jsonl"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Problem sizes of one suite run (full or smoke)."""

    matmul_n: int
    env_batch: int
    env_steps: int
    mnist_widths: tuple[float, ...]
    impala_widths: tuple[float, ...]
    mnist_envs: int
    mnist_rollout: int
    impala_envs: int
    impala_rollout: int
    impala_minibatches: int
    chunk_updates: int
    fused_members: int
    ppg_n_pi: int
    ppg_aux_minibatches: int
    games: tuple[str, ...] = GAMES
    impala_depth: int | None = None
    ppg_width: float = 1.0


FULL = Sizes(matmul_n=8192, env_batch=4096, env_steps=64, mnist_widths=MNIST_WIDTHS,
             impala_widths=IMPALA_WIDTHS, mnist_envs=256, mnist_rollout=32, impala_envs=64,
             impala_rollout=256, impala_minibatches=8, chunk_updates=4, fused_members=32,
             ppg_n_pi=32, ppg_aux_minibatches=256)
SMOKE = Sizes(matmul_n=256, env_batch=8, env_steps=4, mnist_widths=(1 / 64,),
              impala_widths=(1 / 16,), mnist_envs=4, mnist_rollout=4, impala_envs=2,
              impala_rollout=4, impala_minibatches=2, chunk_updates=1, fused_members=4,
              ppg_n_pi=2, ppg_aux_minibatches=2, games=GAMES[:1], impala_depth=1,
              ppg_width=1 / 16)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The suite's command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON lines are appended here")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="results not started by then are skipped (default 450 s; none with "
                         "--smoke)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: a fast check of every part")
    args = ap.parse_args(argv)
    args.parts = tuple(p for p in args.parts.split(",") if p)
    if args.budget_s is None:
        args.budget_s = float("inf") if args.smoke else 450.0
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        ap.error(f"--parts: unknown {unknown}; choose from {','.join(PARTS)}")
    return args


def format_line(part: str, row: dict[str, Any], started: float) -> str:
    """One result as a JSON line: part, the row, device, load average, seconds into the suite."""
    return json.dumps({"suite": "gpu_suite", "part": part, **row,
                       "device": str(jax.devices()[0].device_kind),
                       "platform": jax.devices()[0].platform,
                       "load_avg": list(os.getloadavg()),
                       "suite_s": round(time.perf_counter() - started, 3)})


def _block(tree: Any) -> Any:
    return jax.tree.map(np.asarray, jax.block_until_ready(tree))


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        _block(fn())
        best = min(best, time.perf_counter() - t)
    return best


def part_peak(sizes: Sizes, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """fp32 matmul FLOP/s at the default precision and at HIGHEST."""
    n = sizes.matmul_n
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    for name, precision in (("default", None), ("highest", lax.Precision.HIGHEST)):
        mm = jax.jit(lambda x, y, p=precision: jnp.dot(x, y, precision=p))
        _block(mm(a, b))
        seconds = _best_seconds(lambda mm=mm: mm(a, b), 5)
        flops = 2.0 * n ** 3 / seconds
        state[f"peak_{name}"] = flops
        yield {"precision": name, "n": n, "seconds": seconds, "flops_per_s": flops}


def part_envs(sizes: Sizes, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Steps/s of each game at sizes.env_batch, random actions, final_observation consumed."""
    batch, steps = sizes.env_batch, sizes.env_steps
    for name in sizes.games:
        env, params = envs_jax.make(name)
        vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))

        def run(key: jax.Array, env_state: Any, env=env, params=params, vstep=vstep) -> tuple:
            def body(carry: tuple, k: jax.Array) -> tuple[tuple, None]:
                env_state, acc = carry
                k_act, k_step = jax.random.split(k)
                actions = jax.random.randint(k_act, (batch,), 0, env.num_actions)
                obs, env_state, reward, term, trunc, info = vstep(
                    jax.random.split(k_step, batch), env_state, actions, params)
                frames = jnp.sum(obs, dtype=jnp.int32) + jnp.sum(
                    info["final_observation"], dtype=jnp.int32)
                acc = acc + frames + jnp.sum(reward) + jnp.sum(term | trunc)
                return (env_state, acc), None

            return lax.scan(body, (env_state, jnp.float32(0)), jax.random.split(key, steps))[0]

        run = jax.jit(run)
        _, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(jax.random.PRNGKey(0), batch), params)
        env_state, _ = _block(run(jax.random.PRNGKey(1), env_state))
        seconds = _best_seconds(lambda run=run, s=env_state: run(jax.random.PRNGKey(2), s), 3)
        yield {"env": name, "batch": batch, "steps": steps, "seconds": seconds,
               "steps_per_s": batch * steps / seconds}


def _runner(config: TrainConfig, members: int) -> FusedRunner:
    return FusedRunner(make_plan(parse_spec(spec_for_config(config, members), "<gpu_suite>")))


def _train_chunk(config: TrainConfig, members: int, updates: int) -> dict[str, Any]:
    """Init, compile and run one chunk of `updates` updates of `members` seeds of `config`."""
    t0 = time.perf_counter()
    runner = _runner(config, members)
    state = jax.block_until_ready(runner.init_state())
    t1 = time.perf_counter()
    runner.compiled_chunk(state, updates)
    t2 = time.perf_counter()
    state, metrics = runner.step(state, updates)
    _block(metrics)
    t3 = time.perf_counter()
    interactions = members * updates * config.batch_size
    return {"members": members, "updates": updates, "batch_size": config.batch_size,
            "init_s": t1 - t0, "compile_s": t2 - t1, "run_s": t3 - t2,
            "interactions_per_s": interactions / (t3 - t2),
            "member": runner.plan.members[0]}


def _ppo_rows(config: TrainConfig, family: str, widths: tuple[float, ...], sizes: Sizes,
              state: dict[str, Any]) -> Iterator[dict[str, Any]]:
    env, _ = envs_jax.make(config.env, **config.env_kwargs)
    obs_shape = tuple(env.observation_space(env.default_params).shape)
    for width in widths:
        cfg = dataclasses.replace(config, width=width)
        forward = networks.forward_flops(
            networks.NetworkConfig(family, width=width, depth=cfg.depth), obs_shape,
            env.num_actions)
        out = _train_chunk(cfg, 1, sizes.chunk_updates)
        member = out.pop("member")
        per_interaction = forward * (1 + 3 * cfg.update_epochs)
        achieved = out["interactions_per_s"] * per_interaction
        yield {"env": cfg.env, "family": family, "width": width, "params": member.params,
               "forward_flops": forward, "flops_per_interaction": per_interaction,
               "flops_counted": "forward * (1 + 3 * update_epochs): act, then per epoch "
                                "forward + backward (2 x forward)",
               "update_epochs": cfg.update_epochs, **out, "achieved_flops_per_s": achieved,
               **{f"fraction_of_{k}": achieved / v for k, v in state.items()
                  if k.startswith("peak_")}}


def mnist_config(sizes: Sizes) -> TrainConfig:
    """MNIST-v0 with the preset's learning settings at the suite's batch."""
    return TrainConfig.preset("MNIST-v0", network="mnist_cnn", num_envs=sizes.mnist_envs,
                              rollout_length=sizes.mnist_rollout,
                              updates_per_chunk=sizes.chunk_updates)


def impala_config(sizes: Sizes, **overrides: Any) -> TrainConfig:
    """CoinRun-v0 with the IMPALA CNN, PPG-paper batch shape (64 envs x 256 steps, 8 mb)."""
    settings = dict(network="impala", depth=sizes.impala_depth, num_envs=sizes.impala_envs,
                    rollout_length=sizes.impala_rollout, update_epochs=3,
                    num_minibatches=sizes.impala_minibatches, lr=5e-4, gamma=0.999,
                    updates_per_chunk=sizes.chunk_updates)
    return TrainConfig(env="CoinRun-v0", **{**settings, **overrides})


def part_mnist(sizes: Sizes, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """PPO interactions/s and roofline fractions of the MNIST CNN over widths."""
    return _ppo_rows(mnist_config(sizes), "mnist_cnn", sizes.mnist_widths, sizes, state)


def part_impala(sizes: Sizes, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """PPO interactions/s and roofline fractions of the IMPALA CNN on CoinRun over widths."""
    return _ppo_rows(impala_config(sizes), "impala", sizes.impala_widths, sizes, state)


def part_fused(sizes: Sizes, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """sizes.fused_members small MNIST members fused vs one at a time (run seconds)."""
    config = dataclasses.replace(mnist_config(sizes), width=1 / 16)
    m, k = sizes.fused_members, sizes.chunk_updates
    fused = _train_chunk(config, m, k)
    fused.pop("member")
    runner = _runner(config, 1)
    program = runner.compiled_chunk(runner.init_state(), k)
    seq_run = 0.0
    for _ in range(m):
        one = jax.block_until_ready(runner.init_state())
        t = time.perf_counter()
        _block(program(one, runner.hparams, runner.env_params)[1])
        seq_run += time.perf_counter() - t
    yield {"env": config.env, "width": config.width, "members": m, "updates": k,
           "fused_run_s": fused["run_s"], "fused_compile_s": fused["compile_s"],
           "sequential_run_s": seq_run, "speedup_run": seq_run / fused["run_s"],
           "fused_interactions_per_s": fused["interactions_per_s"]}


def part_ppg(sizes: Sizes, state: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """PPG-EWMA on CoinRun at IMPALA width 1, one chunk of ppg_n_pi updates."""
    config = impala_config(sizes, width=sizes.ppg_width, algo="ppg_ewma",
                           ppg_n_pi=sizes.ppg_n_pi,
                           aux_num_minibatches=sizes.ppg_aux_minibatches,
                           updates_per_chunk=sizes.ppg_n_pi)
    out = _train_chunk(config, 1, sizes.ppg_n_pi)
    out.pop("member")
    yield {"env": config.env, "algo": config.algo, "width": config.width, **out}


PART_FNS: dict[str, Callable[[Sizes, dict[str, Any]], Iterator[dict[str, Any]]]] = {
    "peak": part_peak, "envs": part_envs, "mnist": part_mnist, "impala": part_impala,
    "fused": part_fused, "ppg": part_ppg,
}


def run_suite(args: argparse.Namespace) -> list[str]:
    """Run the chosen parts, appending each line to args.out; returns the lines."""
    sizes = SMOKE if args.smoke else FULL
    started = time.perf_counter()
    shared: dict[str, Any] = {}
    lines: list[str] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def emit(part: str, row: dict[str, Any]) -> None:
        line = format_line(part, {"smoke": args.smoke, **row}, started)
        print(line, flush=True)
        lines.append(line)
        with args.out.open("a") as f:
            f.write(line + "\n")

    for part in args.parts:
        if time.perf_counter() - started > args.budget_s:
            emit(part, {"skipped": f"over the {args.budget_s:g} s budget"})
            continue
        t = time.perf_counter()
        try:
            for row in PART_FNS[part](sizes, shared):
                emit(part, {**row, "part_s": time.perf_counter() - t})
                if time.perf_counter() - started > args.budget_s:
                    emit(part, {"skipped": f"the rest: over the {args.budget_s:g} s budget"})
                    break
        except Exception as exc:  # noqa: BLE001 -- one broken part must not lose the others
            emit(part, {"error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc(limit=3)})
    return lines


def main(argv: list[str] | None = None) -> None:
    run_suite(parse_args(argv))


if __name__ == "__main__":
    main()
