"""The `scalelab` command line: one subcommand per module, dispatched here."""

from __future__ import annotations

import argparse
import sys

from fitting.cli import add_fit_parser
from scalelab import train_cli
from scalelab.sweep.cli import (
    add_export_parser,
    add_quickstart_parser,
    add_sweep_parser,
)


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
    parser = argparse.ArgumentParser(prog="scalelab", description=__doc__)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
