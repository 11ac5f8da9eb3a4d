"""Regenerate the MNIST report's results (reports/mnist.md) from the sweeps' run dirs.

    scalelab sweep run mnist_width_cpu --out runs/width      # lr grid 0.5-8, 105 members
    scalelab sweep run mnist_horizon_cpu --out runs/horizon
    python reports/mnist/make.py --width runs/width --horizon runs/horizon

--width and --horizon take one or more run dirs each (the report's width sweep was run in two
parts, lr 0.5-2 then 4-8, and its horizon sweep too, seeds 0-1 then 2-3: the union of their
curves is fitted). Each run's spec.toml, manifest.json and
metrics.csv are copied into reports/mnist/<width|horizon>/runs/<run name>/ (the results;
checkpoints stay behind); the fits (`fitting.fit_run`: fit.json and plots) go to
reports/mnist/width and reports/mnist/horizon, with the lr-grid figure. Re-running it on the
committed copies refits without training:

    python reports/mnist/make.py --width reports/mnist/width/runs/* \
        --horizon reports/mnist/horizon/runs/*
"""

from __future__ import annotations

import argparse
import collections
import logging
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import fitting  # noqa: E402
from fitting.curves import LearningCurve  # noqa: E402
from fitting.horizon import HorizonStudy  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = ("spec.toml", "manifest.json", "metrics.csv")
HORIZON_TARGET = 0.5
BOOTSTRAP = 200


def copy_results(run: Path, dest: Path) -> Path:
    """The run's result files in dest/runs/<run name> (nothing copied when already there)."""
    target = dest / "runs" / run.resolve().name
    target.mkdir(parents=True, exist_ok=True)
    if run.resolve() != target.resolve():
        for name in RESULTS:
            shutil.copy2(run / name, target / name)
    return target


def final_scores(curves: list[LearningCurve]) -> dict[tuple[int, float], list[float]]:
    """(params, lr_scale) -> each seed's mean score over the last 10% of interactions."""
    out: dict[tuple[int, float], list[float]] = collections.defaultdict(list)
    for c in sorted(curves, key=lambda c: (c.params, c.hparams["lr_scale"], c.seed)):
        tail = c.interactions >= 0.9 * c.interactions[-1]
        out[(int(c.params), c.hparams["lr_scale"])].append(float(c.score[tail].mean()))
    return out


def plot_lr_grid(curves: list[LearningCurve], save: Path) -> None:
    """Final score (mean over seeds, bars: min-max of seeds) against N, one line per lr scale."""
    finals = final_scores(curves)
    fig, ax = plt.subplots(figsize=(6, 4))
    for scale in sorted({s for _, s in finals}):
        keys = sorted(k for k in finals if k[1] == scale)
        n = np.array([k[0] for k in keys], float)
        v = [np.array(finals[k]) for k in keys]
        mean = np.array([x.mean() for x in v])
        err = np.array([[m - x.min(), x.max() - m] for m, x in zip(mean, v, strict=True)]).T
        ax.errorbar(n * (1 + 0.04 * np.log2(scale)), mean, yerr=err, marker="o", capsize=2,
                    label=f"lr × {scale:g}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("final accuracy (last 10% of training)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(save, dpi=120)
    plt.close(fig)


def plot_horizon_per_size(study: HorizonStudy, save: Path) -> None:
    """Interactions to the target against h, one colour and fitted line per size."""
    fig, ax = plt.subplots(figsize=(6, 4))
    grid = np.linspace(0, study.horizons.max() * 1.05, 50)
    for i, (n, fit) in enumerate(sorted(study.per_size.items())):
        keep = study.sizes == n
        ax.plot(study.horizons[keep], study.interactions[keep], "o", color=f"C{i}")
        ax.plot(grid, fit.predict(grid), color=f"C{i}",
                label=f"N = {n:,.0f}: {fit.intercept:,.0f} + {fit.slope:,.0f}·h "
                      f"(R² = {fit.r2:.3f})")
    ax.set_xlabel("horizon h = 1/(1 − γ)")
    ax.set_ylabel(f"interactions to accuracy {study.target:g}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(save, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=Path, nargs="+", required=True)
    parser.add_argument("--horizon", type=Path, nargs="+")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runs = [copy_results(run, HERE / "width") for run in args.width]
    curves = [c for run in runs for c in fitting.load_run(run)]
    report = fitting.fit_run(curves, HERE / "width", bootstrap=BOOTSTRAP)
    plot_lr_grid(curves, HERE / "width" / "lr_grid.png")
    for e in report.experiments:
        print(f"width: {e.fit.status}: {e.fit.status_reason}; size exponent "
              f"{e.fit.size_exponent:.3f} {e.fit.intervals and e.fit.intervals['size_exponent']}")
    if args.horizon is not None:
        runs = [copy_results(run, HERE / "horizon") for run in args.horizon]
        curves = [c for run in runs for c in fitting.load_run(run)]
        report = fitting.fit_run(curves, HERE / "horizon", bootstrap=BOOTSTRAP,
                                 horizon_target=HORIZON_TARGET)
        for e in report.experiments:
            print(f"horizon {e.label}: {e.fit.status}: size exponent {e.fit.size_exponent:.3f} "
                  f"{e.fit.intervals and e.fit.intervals['size_exponent']}")
        if report.horizon is not None:
            plot_horizon_per_size(report.horizon, HERE / "horizon" / "horizon_per_size.png")
            print("horizon pooled:", report.horizon.pooled)
            for n, f in report.horizon.per_size.items():
                print(f"horizon N={n:g}:", f)
        if report.exponent_change is not None:
            print("exponent change:", report.exponent_change.reason)


if __name__ == "__main__":
    main()
