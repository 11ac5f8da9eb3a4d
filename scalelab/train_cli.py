"""The `scalelab train` subcommand (registered by scalelab.cli): one config, several seeds, run as
a sweep of one group into a run directory."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path
from typing import Any

from scalelab import report
from scalelab.config import TrainConfig
from scalelab.sweep.spec import SpecError
from scalelab.tensorboard import TensorBoardMissing
from scalelab.train import train

# Flag -> TrainConfig field for the common settings; anything else goes through --set.
_FLAGS = {
    "width": float, "network": str, "depth": int, "lr": float, "gamma": float,
    "gae_lambda": float, "num_envs": int, "rollout_length": int, "update_epochs": int,
    "num_minibatches": int, "updates_per_chunk": int, "seed": int,
}
MNIST_TARGET = 0.9


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` subparser to the `scalelab` command."""
    p = sub.add_parser(
        "train",
        help="train one config, several seeds vmapped, into a run directory (resumable)",
        description="Starts from the env's preset (scalelab.config.PRESETS), then applies flags. "
                    "Writes the same run directory as `scalelab sweep run` (spec.toml, plan.json, "
                    "manifest.json, metrics.csv, checkpoints) plus curves.png; re-running the "
                    "same command resumes it.",
    )
    p.add_argument("--env", default="MNIST-v0", help="environment name (see `scalelab envs`)")
    p.add_argument("--interactions", type=int, help="env steps per seed (total_interactions)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds trained together")
    p.add_argument("--out", default="runs/train", help="run directory")
    for name, kind in _FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any other TrainConfig field, e.g. --set ent_coef=0.0 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true",
                   help="run even if the memory estimate exceeds the devices' memory")
    p.add_argument("--tensorboard", metavar="LOGDIR", default=None,
                   help="also write one TensorBoard event stream per seed into LOGDIR "
                        '(pip install "scalelab[tensorboard]")')
    p.set_defaults(func=cmd_train)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    if args.interactions is not None:
        out["total_interactions"] = args.interactions
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(fields))}")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def cmd_train(args: argparse.Namespace) -> int:
    """`scalelab train`: one config, `--seeds` members, into the run directory `--out`."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} is a file; give a directory", file=sys.stderr)
        return 2
    try:
        config = TrainConfig.preset(args.env, **_overrides(args))
        result = train(config, num_seeds=args.seeds, out=out, progress=not args.quiet,
                       tensorboard=args.tensorboard, force=args.force)
    except (TypeError, ValueError, SpecError, TensorBoardMissing) as e:
        print(f"error: scalelab train: {e}", file=sys.stderr)
        return 2
    target = MNIST_TARGET if result.score_kind == "reward_per_step" else None
    png = out / "curves.png"
    report.plot_curves([result], png, title=f"{config.env} {config.algo}")
    print(report.summary(result, target=target))
    print(f"wrote {out / 'metrics.csv'} and {png}")
    return 0
