"""`train(config, num_seeds)`: one training setup, several seeds, run as a sweep of one group.

The config becomes a one-size sweep spec (`scalelab.sweep.spec.spec_for_config`), planned and run
by the sweep runner (`scalelab.sweep.run`): the same compiled program, fault isolation and (with
`out`) the same run directory, resumable by calling again. `RunResult` is the in-memory view of
the finished run for Python users.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from scalelab.config import TrainConfig
from scalelab.members import Params
from scalelab.sweep.capacity import check_memory
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner, Progress, execute, run_spec
from scalelab.sweep.rundir import METRIC_COLUMNS, RunDir
from scalelab.sweep.spec import parse_spec, spec_for_config

__all__ = ["RunResult", "train"]



@dataclass(frozen=True)
class RunResult:
    """Learning curves of `train(config, num_seeds)`: one logged point per chunk.

    interactions (T,) int64: env steps per member at each log point. score (M, T): the env's
    score over the chunk that ends there (`score_kind` "reward_per_step": mean reward per step,
    i.e. training accuracy on MNIST-v0; "episode_return": mean return of the episodes that ended
    in the chunk, NaN if none did). network: the resolved network family (config.network, or
    `scalelab.config.default_family` of obs_shape, one observation's shape). params: its parameter
    count N; flops_per_interaction: its forward FLOPs per observation (policy + value). metrics:
    name -> (M, T) float64, the metrics.csv columns (window means of the update diagnostics;
    "lr_used" is the step size used). valid (M, T): False from a member's non-finite fault on.
    final_params: trained parameters, leading member axis. run_dir: where the run was written
    (None if in memory only).
    """

    config: TrainConfig
    seeds: tuple[int, ...]
    interactions: np.ndarray
    score: np.ndarray
    score_kind: str
    network: str
    obs_shape: tuple[int, ...]
    params: int
    flops_per_interaction: int
    metrics: dict[str, np.ndarray]
    valid: np.ndarray
    final_params: Params
    compile_seconds: float
    train_seconds: float
    run_dir: Path | None = None

    @classmethod
    def from_rows(cls, config: TrainConfig, runner: FusedRunner, rows: Sequence[Mapping],
                  final_params: Params, compile_seconds: float, train_seconds: float,
                  run_dir: Path | None = None) -> RunResult:
        """The view of a finished one-group run from its metrics rows (dicts as written to
        metrics.csv, values as numbers or as the strings read back)."""
        plan = runner.plan
        m = len(plan.members)
        per_member: list[list[Mapping]] = [[] for _ in range(m)]
        for r in rows:
            per_member[int(r["member"])].append(r)
        for pts in per_member:
            pts.sort(key=lambda r: int(r["update"]))
        # the trainer's metrics: the columns after metrics.csv's leading descriptive ones
        names = sorted(k for k in rows[0] if k not in METRIC_COLUMNS)

        def grid(key: str) -> np.ndarray:
            return np.asarray([[float(r[key]) for r in pts] for pts in per_member], np.float64)

        member = plan.members[0]
        return cls(
            config=config,
            seeds=tuple(mm.seed for mm in plan.members),
            interactions=np.asarray([int(r["interactions"]) for r in per_member[0]], np.int64),
            score=grid("score"),
            score_kind=runner.score_kind,
            network=plan.family,
            obs_shape=plan.obs_shape,
            params=member.params,
            flops_per_interaction=member.flops_per_interaction,
            metrics={k: grid(k) for k in names},
            valid=grid("valid") > 0,
            final_params=final_params,
            compile_seconds=compile_seconds,
            train_seconds=train_seconds,
            run_dir=run_dir,
        )


def train(config: TrainConfig, num_seeds: int = 1, *, out: str | Path | None = None,
          progress: bool | Callable[[Progress], None] = False,
          devices: Sequence[Any] | None = None, tensorboard: str | Path | None = None,
          force: bool = False) -> RunResult:
    """Train seeds config.seed .. config.seed+num_seeds-1 of `config` together, vmapped.

    Validates everything before compiling, then runs the one-group sweep of `config` (one log
    point per chunk of updates_per_chunk updates; the budget rounded down to whole updates, a
    shorter last chunk if needed). `out`: a run directory to write (as `scalelab sweep run`
    does); an existing one with the same config resumes, another config there is an error.
    `progress`: False, True (a bar on stderr) or a function of `scalelab.sweep.run.Progress`.
    `tensorboard`: a log directory for one event stream per seed (needs `out`). `force`: run
    even if the plan's memory estimate exceeds the devices' memory (checked before anything is
    initialised; `scalelab.sweep.capacity`).
    """
    config.validate()
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
        raise ValueError(f"num_seeds: expected an integer >= 1, got {num_seeds!r}")
    text = spec_for_config(config, num_seeds)
    if tensorboard is not None and out is None:
        raise ValueError("tensorboard: needs out (the events are written from the run directory's "
                         "metrics rows)")
    t0 = time.perf_counter()
    if out is None:
        plan = make_plan(parse_spec(text, "<train>"))
        if not force:
            check_memory(plan, list(jax.devices() if devices is None else devices))
        runner = FusedRunner(plan, devices)
        runner.compile_ahead()
        state, rows = execute(runner, runner.init_state(), progress=progress)
    else:
        runner, state = run_spec(text, f"{config.env} config", out, progress=progress,
                                 devices=devices, tensorboard=tensorboard, force=force)
        rows = RunDir(out).read_metrics()
    jax.block_until_ready(state)
    seconds = time.perf_counter() - t0
    params = jax.tree.map(lambda x: x[:num_seeds], state.groups[0].params)
    return RunResult.from_rows(config, runner, rows, params, runner.compile_seconds,
                               seconds - runner.compile_seconds,
                               None if out is None else Path(out))
