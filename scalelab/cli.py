"""The `scalelab` command line: one subcommand per module, dispatched here.

Exit codes: 0 success (an unconverged fit is a result), 2 bad input or a refused state (one
paragraph on stderr saying which, no traceback), 1 anything else that failed (a short message;
`--debug` prints the traceback of either).
"""

from __future__ import annotations

import argparse
import sys
import traceback

from envs_jax.data import MnistDataError
from fitting.cli import add_fit_parser
from scalelab import compile_cache, train_cli
from scalelab.sweep.capacity import MemoryRefused
from scalelab.sweep.cli import (
    add_export_parser,
    add_quickstart_parser,
    add_sweep_parser,
)
from scalelab.sweep.integrity import IntegrityError
from scalelab.sweep.lock import RunLockedError
from scalelab.sweep.spec import SpecError
from scalelab.tensorboard import TensorBoardMissing

# Refusals of bad input or of a run directory's state: exit code 2. ValueError covers the
# configs' validation and UnicodeDecodeError (a binary or non-UTF-8 input file).
REFUSALS = (SpecError, MnistDataError, ValueError, TypeError, FileNotFoundError,
            NotADirectoryError, IsADirectoryError, RunLockedError, IntegrityError, MemoryRefused,
            TensorBoardMissing)
_MAX_MESSAGE = 2000


def _cmd_envs(args: argparse.Namespace) -> int:
    import envs_jax

    for name in envs_jax.registered_names():
        print(name)
    return 0


def _cmd_envs_show(args: argparse.Namespace) -> int:
    import jax

    import envs_jax
    from envs_jax.procgen.common import ProcgenGame, frames_to_file, rollout_frames

    kwargs = {"distribution_mode": args.mode} if args.mode else {}
    env, params = envs_jax.make(args.name, **kwargs)
    if not isinstance(env, ProcgenGame):
        print(f"scalelab envs show: {args.name} has no pixel renderer", file=sys.stderr)
        return 2
    frames = rollout_frames(env, params, jax.random.PRNGKey(args.seed), args.steps, args.policy)
    frames_to_file(frames, args.out)
    print(f"wrote {len(frames)} frames of {args.name} (seed {args.seed}) to {args.out}")
    return 0


def _add_envs_show(envs_parser: argparse.ArgumentParser) -> None:
    sub = envs_parser.add_subparsers(dest="envs_command")
    p = sub.add_parser("show", help="play a Procgen-like game and save the frames (GIF or PNG)")
    p.add_argument("name", help="environment, e.g. CoinRun-v0")
    p.add_argument("--seed", type=int, default=0, help="PRNG seed: picks levels and actions")
    p.add_argument("--out", required=True, help="output file: .gif (animated) or .png (strip)")
    p.add_argument("--steps", type=int, default=64, help="environment steps to record")
    p.add_argument("--policy", choices=("random", "right"), default="random")
    p.add_argument("--mode", choices=("easy", "hard"), default=None, help="distribution mode")
    p.set_defaults(func=_cmd_envs_show)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalelab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error (also accepted after the command)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("envs", help="list the registered environments")
    p.set_defaults(func=_cmd_envs)
    _add_envs_show(p)
    train_cli.register(sub)
    add_sweep_parser(sub)
    add_fit_parser(sub)
    add_quickstart_parser(sub)
    add_export_parser(sub)
    return parser


def _one_paragraph(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > _MAX_MESSAGE:
        text = f"{text[:_MAX_MESSAGE]} ... ({len(text) - _MAX_MESSAGE} more characters)"
    return text


def _message(exc: BaseException, args: argparse.Namespace) -> str:
    if isinstance(exc, UnicodeDecodeError):
        given = getattr(args, "spec", None) or getattr(args, "path", None) or "an input file"
        return (f"{given}: not a UTF-8 text file ({exc.reason} at byte {exc.start}); specs and "
                f"curves files are text (TOML, CSV or JSON)")
    return _one_paragraph(exc)


def main(argv: list[str] | None = None) -> int:
    """Run the `scalelab` command `argv` (default: sys.argv[1:]); returns its exit code.
    `--debug` anywhere in argv prints tracebacks of errors."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    try:
        compile_cache.enable()
        return int(args.func(args) or 0)
    except REFUSALS as exc:
        error, code, message = exc, 2, f"error: {_message(exc, args)}"
    except Exception as exc:  # noqa: BLE001 -- the exit-code contract: 1 for any failure
        error, code = exc, 1
        message = (f"error: unexpected {type(exc).__name__}: {_one_paragraph(exc)}"
                   + ("" if debug else " (run with --debug for the traceback)"))
    if debug:
        traceback.print_exception(error)
    print(message, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
