"""`scalelab fit FILE`: fit the power law to a CSV/JSON of learning curves; table, fit.json, plots.

The file formats are those of `fitting.io`. When a model size was run with several
hyperparameter settings (other than seed), the setting with the best final score (mean of
the seed-averaged score over the last 10% of interactions) is kept for the power-law fit, as
tuned per-size sweeps intend. With --horizon-target, curves that carry a `gamma`
hyperparameter also get a horizon fit: the interactions at which each seed-averaged curve
first reaches the target, against h = 1/(1-γ).
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fitting import plots
from fitting.curves import LearningCurve, group_curves
from fitting.horizon import HorizonFit, fit_horizon, horizon_from_gamma, interactions_to_reach
from fitting.io import read_curves
from fitting.powerlaw import FitWarning, PowerLawFit, fit_power_law

CONSTANTS = ("alpha_N", "alpha_E", "beta", "size_exponent", "N_c", "E_c")


def best_per_size(curves: Sequence[LearningCurve]) -> list[LearningCurve]:
    """Keep, for each (params, flops) model, the curves of the hyperparameter setting whose
    seed-averaged score over the last 10% of interactions is highest."""
    best: dict[tuple, tuple[float, dict]] = {}
    for g in group_curves(curves):
        tail = g.interactions >= 0.9 * g.interactions[-1]
        final = float(g.scores[:, tail].mean())
        key = (g.params, g.flops_per_interaction)
        if key not in best or final > best[key][0]:
            best[key] = (final, g.hparams)
    return [c for c in curves
            if best[(c.params, c.flops_per_interaction)][1] == dict(c.hparams)]


def horizon_points(curves: Sequence[LearningCurve], target: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(horizons, interactions to reach target) per seed-averaged curve with a gamma
    hyperparameter that reaches the target."""
    h, e = [], []
    for g in group_curves(curves):
        if "gamma" not in g.hparams:
            continue
        mean = LearningCurve(g.params, g.interactions, g.scores.mean(0))
        reached = interactions_to_reach(mean, target)
        if np.isfinite(reached):
            h.append(float(horizon_from_gamma(g.hparams["gamma"])))
            e.append(reached)
    return np.array(h), np.array(e)


def format_table(fit: PowerLawFit) -> str:
    """The fitted constants, with 5–95% intervals when the fit has them."""
    lines = [f"{'constant':<14}{'value':>12}{'5%':>12}{'95%':>12}"]
    for name in CONSTANTS:
        value = getattr(fit, name)
        lo, hi = fit.intervals[name] if fit.intervals else (float("nan"), float("nan"))
        lines.append(f"{name:<14}{value:>12.4g}{lo:>12.4g}{hi:>12.4g}")
    status = "converged" if fit.converged else "NOT CONVERGED"
    lines.append(f"{status}; {fit.n_models} models, {fit.n_points} points, R² = {fit.r2:.4f}")
    return "\n".join(lines)


def run_fit(path: str | Path, out_dir: str | Path, *, compute: str = "params", k: float = 1.0,
            bootstrap: int = 200, seed: int = 0, exclude_fraction: float = 1 / 64,
            residual: str = "score", starts: int = 64, make_plots: bool = True,
            horizon_target: float | None = None) -> tuple[PowerLawFit, HorizonFit | None]:
    """Fit the curves in `path`, write out_dir/fit.json (and PNG plots); return the fits."""
    curves = read_curves(path)
    chosen = best_per_size(curves)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FitWarning)
        fit = fit_power_law(chosen, compute=compute, k=k, bootstrap=bootstrap, seed=seed,
                            exclude_fraction=exclude_fraction, residual=residual,
                            starts=starts)
    for w in caught:
        print(f"warning: {w.message}")
    report = {"input": str(path), "curves": len(curves), "curves_fitted": len(chosen),
              "power_law": fit.to_dict()}
    hfit = None
    if horizon_target is not None:
        h, e = horizon_points(curves, horizon_target)
        hfit = fit_horizon(h, e)
        report["horizon"] = {"target": horizon_target, **hfit.to_dict(),
                             "horizons": h.tolist(), "interactions_to_target": e.tolist()}
        if make_plots:
            plots.plot_horizon(h, e, hfit, target=horizon_target, save=out / "horizon.png")
    (out / "fit.json").write_text(json.dumps(report, indent=2))
    if make_plots:
        plots.plot_learning_curves(chosen, fit, compute=compute, k=k,
                                   save=out / "learning_curves.png")
        plots.plot_intrinsic(chosen, fit, save=out / "intrinsic.png")
        plots.plot_law_contours(chosen, fit, save=out / "law_contours.png")
        plots.plot_optimal_size(fit, chosen, save=out / "optimal_size.png")
    return fit, hfit


def add_fit_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the `fit` subcommand on a `scalelab` argparse subparsers object."""
    p = subparsers.add_parser("fit", help="fit the intrinsic-performance power law",
                              description=__doc__)
    p.add_argument("path", help="CSV or JSON of learning curves (see fitting.io)")
    p.add_argument("--out", default=None, help="output folder (default: <file stem>_fit)")
    p.add_argument("--compute", choices=("params", "flops"), default="params")
    p.add_argument("--k", type=float, default=1.0, help="compute constant, C = k·N·E")
    p.add_argument("--bootstrap", type=int, default=200, help="resamples (0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--exclude-fraction", type=float, default=1 / 64)
    p.add_argument("--residual", choices=("score", "log_intrinsic"), default="score")
    p.add_argument("--starts", type=int, default=64, help="random starting points")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--horizon-target", type=float, default=None,
                   help="also fit interactions-to-target vs horizon for curves with gamma")
    p.set_defaults(func=_cmd_fit)


def _cmd_fit(args: argparse.Namespace) -> int:
    path = Path(args.path)
    out = Path(args.out) if args.out else path.with_name(path.stem + "_fit")
    fit, hfit = run_fit(path, out, compute=args.compute, k=args.k, bootstrap=args.bootstrap,
                        seed=args.seed, exclude_fraction=args.exclude_fraction,
                        residual=args.residual, starts=args.starts,
                        make_plots=not args.no_plots,
                        horizon_target=args.horizon_target)
    print(format_table(fit))
    if hfit is not None:
        print(f"horizon: E = {hfit.intercept:.4g} + {hfit.slope:.4g}·h  (R² = {hfit.r2:.3f}, "
              f"{hfit.n} runs)")
    print(f"wrote {out / 'fit.json'}")
    return 0  # an unconverged fit is a result (its table says NOT CONVERGED), not a failure
