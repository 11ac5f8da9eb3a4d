"""`scalelab sweep plan|run`: the command-line face of the sweep planner and runner."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_sweep_parser"]


def _cmd_plan(args: argparse.Namespace) -> int:
    from scalelab.sweep.plan import make_plan
    from scalelab.sweep.spec import SpecError, load_spec

    try:
        plan = make_plan(load_spec(args.spec))
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(plan.describe())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from scalelab.sweep.run import run_sweep
    from scalelab.sweep.spec import SpecError

    if args.distributed:
        import jax

        jax.distributed.initialize()
    try:
        run_sweep(args.spec, args.out, resume=args.resume, max_chunks=args.max_chunks,
                  progress=not args.quiet)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    """Register `sweep plan SPEC` and `sweep run SPEC --out DIR` on the main parser."""
    p = sub.add_parser("sweep", help="plan or run a sweep spec (see sweeps/README.md)")
    ss = p.add_subparsers(dest="sweep_command", required=True)
    pp = ss.add_parser("plan", help="print members, groups, padding overhead and memory")
    pp.add_argument("spec", help="path to a sweep spec (TOML)")
    pp.set_defaults(func=_cmd_plan)
    pr = ss.add_parser("run", help="train every member of a spec; re-run to resume")
    pr.add_argument("spec", nargs="?", default=None,
                    help="path to a sweep spec (TOML); optional with --resume")
    pr.add_argument("--out", required=True, help="run directory")
    pr.add_argument("--resume", action="store_true",
                    help="continue the sweep in --out from its last good checkpoint "
                         "(re-running into an existing run directory does the same)")
    pr.add_argument("--max-chunks", type=int, default=None,
                    help="stop after this many chunks in this invocation (resume later)")
    pr.add_argument("--distributed", action="store_true",
                    help="call jax.distributed.initialize() first (multi-host runs)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=_cmd_run)
