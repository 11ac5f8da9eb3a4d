"""`scalelab fit PATH`: fit the power law to a run directory or a CSV/JSON of learning curves.

A thin wrapper over `fitting.report.fit_run` (which writes fit.json and the plots; see there
for how experiments and learning rates are chosen). It prints the verdict first ("resolved",
"weak" or "unresolved", with the reason), then the constants and any horizon or natural-metric
fit; progress and the fits' warnings go to stderr. Exit status: 0 when the fits ran, whatever
their verdict; 2 on bad input (missing or malformed files, too few sizes); 1 when writing the
results failed.
"""

from __future__ import annotations

import argparse
import logging
import sys

from fitting.curves import SIZES
from fitting.horizon import HorizonStudy
from fitting.natural import MAX_RETURN
from fitting.powerlaw import CONSTANTS, PowerLawFit
from fitting.report import FitReport, fit_run

__all__ = ["add_fit_parser", "format_report", "format_table"]


def format_table(fit: PowerLawFit) -> str:
    """The verdict, then the fitted constants with 5–95% intervals when the fit has them."""
    lines = [f"{fit.status.upper()}: {fit.status_reason}",
             f"{'constant':<14}{'value':>12}{'5%':>12}{'95%':>12}"]
    for name in CONSTANTS:
        value = getattr(fit, name)
        lo, hi = fit.intervals[name] if fit.intervals else (float("nan"), float("nan"))
        lines.append(f"{name:<14}{value:>12.4g}{lo:>12.4g}{hi:>12.4g}")
    reach = ", ".join(f"{r.size:.3g}: {r.ratio:.2g}" for r in fit.reach)
    lines.append(f"max E / E*(N) per size ({fit.size}): {reach}")
    state = "converged" if fit.converged else "NOT CONVERGED"
    lines.append(f"{state}; {fit.n_models} models, {fit.n_points} points, R² = {fit.r2:.4f}")
    if fit.bootstrap_ok is not None:
        lines.append(f"bootstrap ({fit.resample_unit}): {int(fit.bootstrap_ok.sum())} of "
                     f"{fit.bootstrap_ok.size} resamples converged "
                     f"({int(fit.bootstrap_restarted.sum())} after fresh restarts)")
    return "\n".join(lines)


def format_horizon(study: HorizonStudy) -> str:
    """One line per size and the pooled line, with intervals when there are some."""
    def line(name: str, f) -> str:
        text = f"{name}: E = {f.intercept:.4g} + {f.slope:.4g}·h  (R² = {f.r2:.3f}, {f.n} runs)"
        if f.intervals:
            (a0, a1), (b0, b1) = f.intervals["intercept"], f.intervals["slope"]
            text += f"; 5–95% intercept [{a0:.4g}, {a1:.4g}], slope [{b0:.4g}, {b1:.4g}]"
        return text

    rows = [line(f"N = {n:.3g}", f) for n, f in study.per_size.items()]
    return "\n".join([f"horizon (target {study.target:g}):", *rows, line("pooled", study.pooled)])


def format_report(report: FitReport) -> str:
    """Everything `scalelab fit` prints, verdicts first."""
    lines = [f"{e.label or 'power law'}: {e.fit.status.upper()}" for e in report.experiments]
    for e in report.experiments:
        lines += ["", f"== {e.label or 'power law'} ({e.out_dir / 'fit.json'})",
                  format_table(e.fit)]
        if e.natural is not None:
            n = e.natural
            ci = f" (5–95%: {n.interval[0]:.3f}–{n.interval[1]:.3f})" if n.interval else ""
            lines.append(f"natural ({n.metric}): F = (max - R)/R ∝ I^-{n.gamma:.3f}{ci}, "
                         f"R² = {n.r2:.3f}")
    if report.horizon is not None:
        lines += ["", format_horizon(report.horizon)]
    if report.exponent_change is not None:
        lines.append(f"size exponent vs horizon: {report.exponent_change.reason}")
    lines.append(f"wrote {report.fit_json}")
    return "\n".join(lines)


def add_fit_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `fit` subcommand on a `scalelab` argparse subparsers object."""
    p = subparsers.add_parser("fit", help="fit the intrinsic-performance power law",
                              description=__doc__)
    p.add_argument("path", help="run directory, or CSV/JSON of learning curves (fitting.io)")
    p.add_argument("--out", default=None,
                   help="output folder (default: the run directory, or <file stem>_fit)")
    p.add_argument("--size", choices=SIZES, default="params",
                   help="model size N: all trained params (default, the paper's measure), "
                        "the policy network's params, or forward FLOPs per interaction")
    p.add_argument("--k", type=float, default=1.0, help="compute constant, C = k·N·E")
    p.add_argument("--bootstrap", type=int, default=200, help="resamples (0 = none)")
    p.add_argument("--resample", choices=("auto", "seeds", "residual", "runs"), default="auto",
                   help="bootstrap unit (auto: seeds with >= 2 seeds per size, else residual)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude-fraction", type=float, default=1 / 64)
    p.add_argument("--residual", choices=("score", "log_intrinsic"), default="score")
    p.add_argument("--starts", type=int, default=64, help="random starting points")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--horizon-target", type=float, default=None,
                   help="also fit interactions-to-target vs horizon for curves with gamma")
    p.add_argument("--natural", choices=sorted(MAX_RETURN), default=None,
                   help="also fit the natural metric's fail-to-success ratio against I")
    p.set_defaults(func=_cmd_fit)


def _cmd_fit(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("fitting")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a root handler installed by another library would repeat it
    try:
        report = fit_run(args.path, args.out, size=args.size, k=args.k,
                         bootstrap=args.bootstrap, seed=args.seed,
                         exclude_fraction=args.exclude_fraction, residual=args.residual,
                         resample=args.resample, starts=args.starts,
                         make_plots=not args.no_plots, horizon_target=args.horizon_target,
                         natural=args.natural)
    except UnicodeDecodeError:  # a ValueError: caught first
        print(f"error: {args.path}: not a UTF-8 text file (expected a run directory or a "
              f"CSV/JSON of learning curves)", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: could not write the results: {exc}", file=sys.stderr)
        return 1
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    print(format_report(report))
    return 0
