"""Roofline of the conv nets: achieved FLOP/s of acting, one update and one PPO iteration as a
fraction of this device's fp32 matmul peak; one JSON line per result.

For each size (family, width, depth) the run first measures the peak (``peak_gflops``: a
2048x2048 float32 ``jnp.dot``, median of ``--peak-repeats`` calls after a warm-up), then three
compiled programs of the network the trainer builds for that size, each vmapped over ``--members``
parameter sets and compiled with the trainer's XLA options (``scalelab.xla_options``):

- ``act``: the forward pass at the rollout's batch (num_envs observations, the env's own);
- ``update``: one minibatch step as the trainer takes it: value_and_grad of the clipped PPO loss,
  global-norm clip and Adam (``scalelab.algos.ppo``), at the minibatch size, its outputs fed back;
- ``iteration``: the real chunk function (``scalelab.sweep.run.FusedRunner``, as ``train`` runs
  it) advancing every member by ``updates_per_chunk`` PPO iterations: rollout with the env
  inside, GAE, epochs of minibatch updates.

FLOPs come from ``scalelab.networks.forward_flops`` (F per observation, both towers and heads).
The backward pass counts as 2F (gradients of activations and of weights, each one forward's
multiply-adds), Adam and the loss count as 0. So act = F per observation, update = 3F per sample,
and iteration = F x (1 + 3 x update_epochs) per interaction: the rollout's forward plus the epochs'
forward + backward. The rollout's value pass over the final observations of its truncated steps
(a buffer of them, evaluated once per rollout and when it fills) is work the iteration does that
is not counted. ``fraction_of_peak`` divides by the peak measured just before that size, so load
from other jobs shows in both; every line also records the 1-minute load average when it was
written.

Every program is compiled and run once (``compile_s``), then called until it has run
``--min-calls`` times and at least ``--seconds`` (at most ``--max-calls``); ``median_s`` is the
median call, each call timed to ``block_until_ready`` of all its outputs.

    PYTHONPATH=. python benchmarks/roofline.py [--sizes quick|smallest|batch|full|smoke] [--smoke]
        [--members 1] [--out benchmarks/results/roofline.jsonl | -]

``quick`` (the CPU default) is MNIST widths 1/64 and 1/8, IMPALA width 1/16 at depth 1 and width
1/4 at depth 1 and 4 (on the 2-core CPU MNIST width 1's iteration took 250 s a call under load
9); ``full`` (the default elsewhere) is MNIST 1/64 ... 1 and IMPALA 1/16 ... 1 at depth 1 and 4;
``smallest`` is the smallest width of each family (to run with ``--members 8``); ``batch`` is
IMPALA width 1/4 at depth 1 with minibatches of 16 samples (8 envs x 16 steps in 8 minibatches, the
``quick`` size), 128 (32 x 16 in 4), 1024 (64 x 32 in 2) and 2048 (64 x 32 in 1; the paper's
minibatch, 64 envs x 256 steps in 8), to see whether small minibatches are what keeps its fraction
low; ``--smoke`` runs MNIST width 1/64 at a tiny batch, each program twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from scalelab import networks
from scalelab.algos import ppo
from scalelab.config import TrainConfig
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner, SweepState
from scalelab.sweep.spec import parse_spec, spec_for_config
from scalelab.xla_options import compile_lowered

DEFAULT_OUT = Path(__file__).parent / "results" / "roofline.jsonl"
PEAK_SIZE = 2048


@dataclasses.dataclass(frozen=True)
class Size:
    """One network size and the PPO batch it is measured at."""

    family: str
    width: float
    depth: int | None = None
    num_envs: int = 32
    rollout_length: int = 32
    update_epochs: int = 2
    num_minibatches: int = 2
    updates_per_chunk: int = 1

    def config(self) -> TrainConfig:
        """The trainer's config: MNIST-v0's preset, or CoinRun-v0 with CleanRL's Procgen
        epochs and a CPU-sized level pool."""
        sizes = dict(
            width=self.width, num_envs=self.num_envs, rollout_length=self.rollout_length,
            update_epochs=self.update_epochs, num_minibatches=self.num_minibatches,
            updates_per_chunk=self.updates_per_chunk,
            total_interactions=self.updates_per_chunk * self.num_envs * self.rollout_length,
        )
        if self.family == "mnist_cnn":
            return TrainConfig.preset("MNIST-v0", network="mnist_cnn", **sizes)
        return TrainConfig(
            env="CoinRun-v0", network="impala", depth=self.depth, lr=5e-4, gamma=0.999,
            env_kwargs=dict(pool_size=256, refresh_size=32), **sizes,
        )


def _mnist(width: float, **batch: int) -> Size:
    return Size("mnist_cnn", width, **batch)


def _impala(width: float, depth: int, **batch: int) -> Size:
    sizes = dict(num_envs=8, rollout_length=16, update_epochs=3, num_minibatches=8)
    return Size("impala", width, depth, **{**sizes, **batch})


MNIST_WIDTHS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
IMPALA_WIDTHS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
SIZES: dict[str, list[Size]] = {
    "smoke": [_mnist(1 / 64, num_envs=4, rollout_length=4, update_epochs=1)],
    "quick": [_mnist(1 / 64), _mnist(1 / 8), _impala(1 / 16, 1), _impala(1 / 4, 1),
              _impala(1 / 4, 4)],
    # the target's smallest widths, to run with --members 8
    "smallest": [_mnist(MNIST_WIDTHS[0]), _impala(IMPALA_WIDTHS[0], 1)],
    # minibatches of 16, 128, 1024 and 2048 samples (module docstring)
    "batch": [_impala(1 / 4, 1), _impala(1 / 4, 1, num_envs=32, num_minibatches=4),
              _impala(1 / 4, 1, num_envs=64, rollout_length=32, num_minibatches=2),
              _impala(1 / 4, 1, num_envs=64, rollout_length=32, num_minibatches=1)],
    "full": [_mnist(w) for w in MNIST_WIDTHS]
    + [_impala(w, d) for w in IMPALA_WIDTHS for d in (1, 4)],
}


@dataclasses.dataclass(frozen=True)
class Timing:
    """How long to time a program: at least min_calls and seconds, at most max_calls."""

    min_calls: int = 3
    max_calls: int = 20
    seconds: float = 2.0


def time_calls(call: Callable[[], Any], timing: Timing) -> tuple[float, list[float]]:
    """(compile + first call seconds, per-call seconds), each call to block_until_ready."""
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - t0
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < timing.max_calls and (
        len(times) < timing.min_calls or time.perf_counter() - start < timing.seconds
    ):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t0)
    return first, times


def matmul_peak_gflops(repeats: int, n: int = PEAK_SIZE) -> float:
    """Median fp32 GFLOP/s of an n x n by n x n ``jnp.dot`` (2 n^3 FLOPs) after a warm-up."""
    a, b = jax.random.normal(jax.random.key(0), (2, n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    _, times = time_calls(lambda: dot(a, b), Timing(repeats, repeats, 0.0))
    return 2 * n**3 / statistics.median(times) / 1e9


def compiled(options: dict[str, Any], fn: Callable, *args: Any) -> Any:
    """jax.jit(fn) compiled for `args` with XLA compiler `options` (``scalelab.xla_options``)."""
    return compile_lowered(jax.jit(fn).lower(*args), options)


def act_program(runner: FusedRunner, sweep: SweepState) -> tuple[Callable[[], Any], int]:
    """The acting forward pass on every member's current observations; (call, observations)."""
    state = sweep.groups[0]
    apply = compiled(runner.compile_options, jax.vmap(runner.statics[0].apply_fn), state.params,
                     state.obs)
    return (lambda: apply(state.params, state.obs)), state.obs.shape[0] * state.obs.shape[1]


def minibatch_update(
    apply_fn: Callable, config: TrainConfig, num_actions: int, params: Any, obs: jax.Array,
    options: dict[str, Any] | None = None,
) -> Callable[[], Any]:
    """A call doing one minibatch step as the trainer does (PPO loss gradient, global-norm clip,
    Adam; ``config``'s coefficients) for every member of ``params`` on ``obs`` [M, n, *obs_shape]
    with random actions, advantages and returns, its params and Adam state fed back; compiled
    with XLA compiler ``options`` (default none)."""
    members, size = obs.shape[:2]
    keys = jax.random.split(jax.random.key(1), 4)
    minibatch = ppo.Batch(
        obs=obs,
        actions=jax.random.randint(keys[0], (members, size), 0, num_actions),
        old_log_probs=jnp.full((members, size), -jnp.log(num_actions), jnp.float32),
        old_values=jax.random.normal(keys[1], (members, size)),
        advantages=jax.random.normal(keys[2], (members, size)),
        returns=jax.random.normal(keys[3], (members, size)),
    )
    coefs = ppo.LossCoefs(config.clip_eps, config.vf_coef, config.ent_coef)
    optimizer = ppo.adam(config.adam_eps)

    def step(params, opt_state, mb):
        (_, info), grads = jax.value_and_grad(ppo.ppo_loss, has_aux=True)(
            params, apply_fn, mb, coefs
        )
        params, opt_state, norm = ppo.gradient_step(
            params, opt_state, grads, optimizer, config.lr, config.max_grad_norm
        )
        return params, opt_state, info, norm

    carry = [params, jax.vmap(optimizer.init)(params)]
    step = compiled(options or {}, jax.vmap(step), *carry, minibatch)

    def call():
        params, opt_state, info, norm = step(*carry, minibatch)
        carry[:] = [params, opt_state]
        return params, opt_state, info, norm

    return call


def update_program(runner: FusedRunner, sweep: SweepState) -> tuple[Callable[[], Any], int]:
    """One minibatch step per member (``minibatch_update``) on the members' current
    observations tiled to the minibatch size; (call, samples)."""
    state, cfg = sweep.groups[0], runner.configs[0]
    members, size = state.obs.shape[0], cfg.batch_size // cfg.num_minibatches
    repeats = -(-size // cfg.num_envs)
    obs = jnp.tile(state.obs, (1, repeats) + (1,) * (state.obs.ndim - 2))[:, :size]
    call = minibatch_update(runner.statics[0].apply_fn, cfg, runner.env.num_actions,
                            state.params, obs, runner.compile_options)
    return call, members * size


def iteration_program(runner: FusedRunner, sweep: SweepState) -> tuple[Callable[[], Any], int]:
    """The runner's compiled chunk (what `scalelab.train` runs) advancing every member by
    updates_per_chunk PPO iterations from a copy of ``sweep`` (the chunk donates it), its state
    fed back; (call, interactions of all members)."""
    carry = [jax.tree.map(jnp.copy, sweep)]
    size = runner.plan.spec.updates_per_chunk

    def call():
        carry[0], metrics = runner.step(carry[0], size)
        return carry[0], metrics

    members = len(runner.plan.members)
    return call, members * size * runner.configs[0].batch_size


def peak_line(bench: str, peak_repeats: int) -> tuple[float, dict, dict]:
    """(peak GFLOP/s, the device fields every line carries, the ``matmul_peak`` line of
    `bench`), the peak measured now (``matmul_peak_gflops``)."""
    peak = matmul_peak_gflops(peak_repeats)
    common = dict(
        backend=jax.default_backend(), device=jax.devices()[0].device_kind,
        cpu_count=os.cpu_count(),
    )
    line = dict(bench=bench, program="matmul_peak", n=PEAK_SIZE, peak_gflops=round(peak, 2),
                loadavg_1m=round(os.getloadavg()[0], 2), **common)
    return peak, common, line


def measure_size(size: Size, members: int, timing: Timing, peak_repeats: int) -> list[dict]:
    """The peak line and one line per program of one size."""
    peak, common, line = peak_line("roofline", peak_repeats)
    lines = [line]
    runner = FusedRunner(make_plan(parse_spec(spec_for_config(size.config(), members))))
    state = runner.init_state()
    network = runner.plan.groups[0].network
    flops = networks.forward_flops(network, runner.plan.obs_shape, runner.plan.num_actions)
    epochs = runner.configs[0].update_epochs
    programs = {
        "act": (act_program, flops),
        "update": (update_program, 3 * flops),
        "iteration": (iteration_program, (1 + 3 * epochs) * flops),
    }
    for name, (make, flops_per_item) in programs.items():
        t0 = time.perf_counter()
        call, items = make(runner, state)
        setup = time.perf_counter() - t0
        first, times = time_calls(call, timing)
        median = statistics.median(times)
        gflops = flops_per_item * items / median / 1e9
        lines.append(dict(
            bench="roofline", program=name, family=size.family, width=size.width,
            depth=network.depth, members=members, items_per_call=items,
            batch=f"{size.num_envs}x{size.rollout_length}", update_epochs=epochs,
            num_minibatches=size.num_minibatches, updates_per_chunk=size.updates_per_chunk,
            forward_flops=flops, flops_per_call=flops_per_item * items, backward_factor=2,
            compile_s=round(setup + first, 2), calls=len(times), median_s=round(median, 6),
            min_s=round(min(times), 6), gflops=round(gflops, 3), peak_gflops=round(peak, 2),
            fraction_of_peak=round(gflops / peak, 5),
            conv_impl=networks.resolve_conv_impl("auto"),
            loadavg_1m=round(os.getloadavg()[0], 2), **common,
        ))
    return lines


def source_commit() -> str:
    """The checkout's short commit hash, "+dirty" with uncommitted changes ("" outside git)."""
    git = ["git", "-C", str(Path(__file__).parent)]
    try:
        rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        # appending to a tracked results file does not make the measured code dirty
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--",
                                ":/", ":(top,exclude)benchmarks/results"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return rev + ("+dirty" if dirty else "")


def emit(line: dict, out: str, commit: str) -> None:
    """Print one JSON line (with the source ``commit``) and append it to ``out`` (unless "-")."""
    text = json.dumps({**line, "commit": commit})
    print(text, flush=True)
    if out != "-":
        with open(out, "a") as f:
            f.write(text + "\n")


def add_run_arguments(parser: argparse.ArgumentParser, default_sizes: str, timing: Timing,
                      out: Path) -> None:
    """The options this benchmark and those built on it share: --sizes, --smoke, --members,
    --min-calls, --max-calls, --seconds (defaults from `timing`), --peak-repeats, --out."""
    parser.add_argument("--sizes", choices=list(SIZES), default=default_sizes)
    parser.add_argument("--smoke", action="store_true", help="same as --sizes smoke")
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--min-calls", type=int, default=timing.min_calls)
    parser.add_argument("--max-calls", type=int, default=timing.max_calls)
    parser.add_argument("--seconds", type=float, default=timing.seconds)
    parser.add_argument("--peak-repeats", type=int, default=7)
    parser.add_argument("--out", default=str(out),
                        help="JSON-lines file to append to ('-': print only)")


def run_settings(args: argparse.Namespace) -> tuple[list[Size], Timing, int]:
    """(sizes, timing, peak repeats) of options parsed by ``add_run_arguments``; --smoke: the
    smoke size, each program twice, the peak of 2 calls."""
    if args.smoke:
        return SIZES["smoke"], Timing(1, 2, 0.0), 2
    return (SIZES[args.sizes], Timing(args.min_calls, args.max_calls, args.seconds),
            args.peak_repeats)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_run_arguments(parser, "quick" if jax.default_backend() == "cpu" else "full", Timing(),
                      DEFAULT_OUT)
    args = parser.parse_args(argv)
    sizes, timing, peak_repeats = run_settings(args)
    commit = source_commit()
    for size in sizes:
        for line in measure_size(size, args.members, timing, peak_repeats):
            emit(line, args.out, commit)


if __name__ == "__main__":
    main()
