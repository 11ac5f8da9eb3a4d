"""`scalelab sweep plan|run`: the command-line face of the sweep planner and runner."""

from __future__ import annotations

import argparse
import os
import sys

import jax

from fitting.cli import format_report
from fitting.report import fit_run
from scalelab import specs
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import run_sweep
from scalelab.sweep.spec import load_spec
from scalelab.sweep.xla_memory import xla_member_bytes
from scalelab.tensorboard import export_run

__all__ = ["add_export_parser", "add_quickstart_parser", "add_sweep_parser"]


def _cmd_plan(args: argparse.Namespace) -> int:
    plan = make_plan(load_spec(specs.resolve(args.spec)))
    print(plan.describe())
    if args.compile:
        print(f"XLA's accounting ({jax.devices()[0].platform}; two compiles per group):")
        for g in plan.groups:
            exact = xla_member_bytes(plan, g)
            print(f"  group {g.index}: {exact / 2**20:.1f} MiB/member, "
                  f"{len(g.members) * exact / 2**20:.1f} MiB for its {len(g.members)} members "
                  f"(estimate {g.memory_per_member / exact:.2f}x)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    if args.distributed:
        # CPU processes need a collectives backend to talk to each other (GPUs use NCCL)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        # None lets JAX detect the cluster (SLURM, Open MPI, ...); JAX_COORDINATOR_ADDRESS too
        jax.distributed.initialize(coordinator_address=args.coordinator,
                                   num_processes=args.num_processes,
                                   process_id=args.process_id,
                                   heartbeat_timeout_seconds=args.heartbeat_timeout)
    try:
        spec = None if args.spec is None else specs.resolve(args.spec)
        run_sweep(spec, args.out, resume=args.resume, max_chunks=args.max_chunks,
                  progress=not args.quiet, tensorboard=args.tensorboard, force=args.force)
    except jax.errors.JaxRuntimeError as exc:
        if jax.process_count() == 1:
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: process {jax.process_index()} of {jax.process_count()}: a collective "
              f"with the other processes failed ({first}); another process has probably died. "
              f"Re-run every process with the same command to resume {args.out} from its last "
              f"checkpoint.", file=sys.stderr, flush=True)
        # a normal exit would wait in the distributed client's shutdown barrier for the dead
        # process and then abort (SIGABRT) with a wall of coordination-service logs
        os._exit(1)
    return 0


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    """Register `sweep plan SPEC` and `sweep run SPEC --out DIR` on the main parser."""
    p = sub.add_parser("sweep", help="plan or run a sweep spec (see sweeps/README.md)")
    ss = p.add_subparsers(dest="sweep_command", required=True)
    pp = ss.add_parser("plan", help="print members, groups, padding overhead and memory")
    pp.add_argument("spec", help="path to a sweep spec (TOML), or a shipped spec's name "
                    f"({', '.join(specs.names())})")
    pp.add_argument("--compile", action="store_true",
                    help="also print XLA's exact memory per member of each group (compiles "
                         "each group's chunk program twice on abstract shapes)")
    pp.set_defaults(func=_cmd_plan)
    pr = ss.add_parser("run", help="train every member of a spec; re-run to resume")
    pr.add_argument("spec", nargs="?", default=None,
                    help="path to a sweep spec (TOML) or a shipped spec's name; optional "
                         "with --resume")
    pr.add_argument("--out", required=True, help="run directory")
    pr.add_argument("--resume", action="store_true",
                    help="continue the sweep in --out from its last good checkpoint "
                         "(re-running into an existing run directory does the same)")
    pr.add_argument("--max-chunks", type=int, default=None,
                    help="stop after this many chunks in this invocation (resume later)")
    pr.add_argument("--distributed", action="store_true",
                    help="call jax.distributed.initialize() first (multi-host runs)")
    pr.add_argument("--coordinator", default=None, help="with --distributed: host:port of "
                    "process 0 (default: $JAX_COORDINATOR_ADDRESS or cluster detection)")
    pr.add_argument("--num-processes", type=int, default=None, help="with --distributed")
    pr.add_argument("--process-id", type=int, default=None, help="with --distributed")
    pr.add_argument("--heartbeat-timeout", type=int, default=100, metavar="SECONDS",
                    help="with --distributed: a process not heard from for this long is taken "
                         "as dead and the others stop with an error (default 100)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.add_argument("--force", action="store_true",
                    help="run even if the plan's memory estimate exceeds the devices' memory")
    pr.add_argument("--tensorboard", metavar="LOGDIR", default=None,
                    help="also write one TensorBoard event stream per member into LOGDIR "
                         '(pip install "scalelab[tensorboard]")')
    pr.set_defaults(func=_cmd_run)


def _cmd_quickstart(args: argparse.Namespace) -> int:
    spec = specs.path("quickstart")
    if args.dry_run:
        print(f"spec: {spec}")
        return _cmd_plan(argparse.Namespace(spec=spec, compile=False))
    run_sweep(spec, args.out, progress=not args.quiet)
    report = fit_run(args.out, bootstrap=args.bootstrap)
    print(format_report(report))
    for experiment in report.experiments:
        fit = experiment.fit
        interval = (fit.intervals or {}).get("size_exponent")
        ci = (f"5–95%: {interval[0]:.3f}–{interval[1]:.3f}" if interval else "no interval")
        print(f"\noptimal model size N_opt ∝ C^{fit.size_exponent:.3f} ({ci}); "
              f"verdict: {fit.status} ({fit.status_reason})")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    n = export_run(args.run_dir, args.tensorboard)
    print(f"wrote {n} scalars to {args.tensorboard}; view with `tensorboard --logdir "
          f"{args.tensorboard}`")
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """Register `export RUN_DIR --tensorboard LOGDIR`."""
    p = sub.add_parser("export", help="export a run directory's metrics to TensorBoard")
    p.add_argument("run_dir", help="a run directory (scalelab sweep run / train --out)")
    p.add_argument("--tensorboard", metavar="LOGDIR", required=True,
                   help="TensorBoard log directory (one event stream per member)")
    p.set_defaults(func=_cmd_export)


def add_quickstart_parser(sub: argparse._SubParsersAction) -> None:
    """Register `quickstart`: the shipped quickstart sweep (scalelab/specs/quickstart.toml), then
    its fit."""
    p = sub.add_parser("quickstart", help="run the quickstart sweep and fit its scaling law")
    p.add_argument("--out", default="runs/quickstart", help="run directory")
    p.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true",
                   help="print the quickstart's plan and spec file, train nothing")
    p.set_defaults(func=_cmd_quickstart)
