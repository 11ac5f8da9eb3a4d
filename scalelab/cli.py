"""The `scalelab` command line: one subcommand per module, dispatched here."""

from __future__ import annotations

import argparse
import sys


def _cmd_envs(args: argparse.Namespace) -> int:
    import envs_jax

    for name in envs_jax.registered_names():
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalelab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("envs", help="list the registered environments")
    p.set_defaults(func=_cmd_envs)
    from scalelab.sweep.cli import add_sweep_parser

    add_sweep_parser(sub)
    from fitting.cli import add_fit_parser

    add_fit_parser(sub)
    from scalelab.sweep.cli import add_quickstart_parser, route_fit_to_run_dirs

    route_fit_to_run_dirs(sub)
    add_quickstart_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
