"""The `scalelab train` and `scalelab train-quickstart` subcommands (registered by scalelab.cli)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
from typing import Any

# Flag -> TrainConfig field for the common settings; anything else goes through --set.
_FLAGS = {
    "width": float, "network": str, "depth": int, "lr": float, "gamma": float,
    "gae_lambda": float, "num_envs": int, "rollout_length": int, "update_epochs": int,
    "num_minibatches": int, "updates_per_chunk": int, "seed": int,
}
QUICKSTART_WIDTHS = (1 / 16, 1 / 8, 1 / 4)
# Six log points of 8,192: the MNIST-v0 preset passes 90% training accuracy by ~33k.
QUICKSTART_INTERACTIONS = 49_152
MNIST_TARGET = 0.9


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `train` and `train-quickstart` subparsers to the `scalelab` command."""
    p = sub.add_parser(
        "train",
        help="train PPO on one environment, several seeds vmapped; write curve CSV + PNG",
        description="Starts from the env's preset (scalelab.train.PRESETS), then applies flags.",
    )
    p.add_argument("--env", default="MNIST-v0", help="environment name (see `scalelab envs`)")
    p.add_argument("--interactions", type=int, help="env steps per seed (total_interactions)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds trained together")
    p.add_argument("--out", default="runs/train", help="output directory")
    for name, kind in _FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any other TrainConfig field, e.g. --set ent_coef=0.0 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    q = sub.add_parser(
        "train-quickstart",
        help="short MNIST-as-RL runs at widths 1/16, 1/8, 1/4: print and plot learning curves",
    )
    q.add_argument("--out", default="runs/train-quickstart", help="output directory")
    q.add_argument("--interactions", type=int, default=QUICKSTART_INTERACTIONS,
                   help="env steps per seed and width")
    q.add_argument("--seeds", type=int, default=1, help="seeds per width")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=cmd_quickstart)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from scalelab.train import TrainConfig

    out = {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    if args.interactions is not None:
        out["total_interactions"] = args.interactions
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(sorted(fields))}")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def _write(results: list, out_dir: str, title: str) -> tuple[str, str]:
    from scalelab import report

    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, "curves.csv")
    png_path = os.path.join(out_dir, "curves.png")
    report.write_curves_csv(results, csv_path)
    report.plot_curves(results, png_path, title=title)
    with open(os.path.join(out_dir, "configs.json"), "w") as f:
        json.dump([dataclasses.asdict(r.config) for r in results], f, indent=1)
    return csv_path, png_path


def _run(config: Any, seeds: int, quiet: bool) -> Any:
    from scalelab.train import train

    try:
        return train(config, num_seeds=seeds, progress=not quiet)
    except ValueError as e:
        raise SystemExit(f"scalelab: {e}") from None


def cmd_train(args: argparse.Namespace) -> int:
    """`scalelab train`: one config, `--seeds` members; CSV + PNG + summary."""
    from scalelab import report
    from scalelab.train import TrainConfig

    try:
        config = TrainConfig.preset(args.env, **_overrides(args))
    except TypeError as e:
        raise SystemExit(f"scalelab train: {e}") from None
    result = _run(config, args.seeds, args.quiet)
    target = MNIST_TARGET if result.score_kind == "reward_per_step" else None
    csv_path, png_path = _write([result], args.out, title=f"{config.env} PPO")
    print(report.summary(result, target=target))
    print(f"wrote {csv_path} and {png_path}")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """`scalelab train-quickstart`: MNIST-v0 at a few widths; print curves, write CSV + PNG."""
    from scalelab import report
    from scalelab.train import TrainConfig

    results = []
    for width in QUICKSTART_WIDTHS:
        config = TrainConfig.preset(
            "MNIST-v0", width=width, total_interactions=args.interactions, updates_per_chunk=4
        )
        results.append(_run(config, args.seeds, args.quiet))
        print(report.summary(results[-1], target=MNIST_TARGET), flush=True)
    print("\ntraining accuracy (seed mean) vs interactions:")
    print("interactions " + " ".join(f"{'w=' + format(w, '.4g'):>9}" for w in QUICKSTART_WIDTHS))
    curves = [report.mean_curve(r) for r in results]
    for t, x in enumerate(results[0].interactions):
        print(f"{int(x):>12,} " + " ".join(f"{c[t]:9.4f}" for c in curves))
    csv_path, png_path = _write(results, args.out, title="MNIST-v0 PPO quickstart")
    print(f"wrote {csv_path} and {png_path}")
    return 0
