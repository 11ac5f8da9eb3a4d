"""One library call from learning curves to results: `fit_run` fits, writes fit.json and plots.

Input: a sweep's run directory (`fitting.rundir`), a CSV/JSON file of curves (`fitting.io`) or
a list of LearningCurves. The curves are split into *experiments* by their hyperparameters
other than the tuned learning rate (TUNED): every γ, λ, ... setting is its own power-law fit.
Within an experiment, when a size was run at several learning rates, the one with the best
learning curve is kept, as tuned per-size sweeps intend: the highest seed-averaged score
averaged over ln E with the fit's own point weights ΔE/E (`fitting.curves.point_weights`). The
final score alone does not do: small models plateau early, every lr reaches about the same
final score, and seed noise would pick one that learned slower (on the MNIST width sweep of
reports/mnist.md, the smallest size's four stable lrs ended within 0.008 of each other).

Output in out_dir: with one experiment, fit.json ({"input", "curves", "curves_fitted",
"power_law", and "natural" / "horizon" when asked}) and the plots; with several, one folder
fit_<name>=<value>_... per experiment holding the same, and out_dir/fit.json listing them with
the horizon study and the exponent-change test (`fitting.horizon`). Nothing is printed:
progress and the fits' warnings go to the `fitting` logger.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fitting import plots
from fitting.bootstrap import Unit
from fitting.curves import LearningCurve, Size, group_curves, point_weights
from fitting.horizon import ExponentChange, HorizonStudy, exponent_change, fit_horizons
from fitting.io import read_curves
from fitting.natural import NaturalFit, fit_natural
from fitting.objective import Residual
from fitting.powerlaw import FitWarning, PowerLawFit, fit_power_law
from fitting.resolution import Status
from fitting.rundir import load_run

TUNED = ("lr", "lr_scale")
log = logging.getLogger("fitting")
Source = str | Path | Sequence[LearningCurve]


@dataclasses.dataclass(frozen=True)
class ExperimentFit:
    """One experiment: its label ("" when there is only one), its hyperparameter values, the
    folder its results went to, the curves it had and the ones fitted (best lr per size), the
    power-law fit and, when asked, the natural-metric fit."""

    label: str
    key: tuple[tuple[str, float], ...]
    out_dir: Path
    curves: int
    curves_fitted: int
    fit: PowerLawFit
    natural: NaturalFit | None = None


@dataclasses.dataclass(frozen=True)
class FitReport:
    """What `fit_run` did: every experiment, the horizon study and exponent-change test (when
    asked and possible), and where fit.json went."""

    experiments: tuple[ExperimentFit, ...]
    horizon: HorizonStudy | None
    exponent_change: ExponentChange | None
    fit_json: Path

    @property
    def status(self) -> Status:
        """The weakest verdict over the experiments."""
        order = ("unresolved", "weak", "resolved")
        return min((e.fit.status for e in self.experiments), key=order.index)


def curve_area(interactions: np.ndarray, mean_score: np.ndarray) -> float:
    """The mean of a (seed-averaged) learning curve over ln E, each point weighted by the ln E
    interval it stands for (`point_weights`, as in the fit)."""
    return float(np.average(mean_score, weights=point_weights(interactions)))


def best_per_size(curves: Sequence[LearningCurve]) -> list[LearningCurve]:
    """Keep, for each model (params, flops, policy params), the curves of the hyperparameter
    setting with the largest `curve_area` of its seed-averaged score (module docstring)."""
    best: dict[tuple, tuple[float, dict]] = {}
    for g in group_curves(curves):
        final = curve_area(g.interactions, g.scores.mean(0))
        key = (g.params, g.flops_per_interaction, g.policy_params)
        if key not in best or final > best[key][0]:
            best[key] = (final, g.hparams)
    return [c for c in curves
            if best[(c.params, c.flops_per_interaction, c.policy_params)][1] == dict(c.hparams)]


def split_experiments(curves: Sequence[LearningCurve]
                      ) -> dict[tuple[tuple[str, float], ...], list[LearningCurve]]:
    """Curves keyed by their hyperparameters other than TUNED (sorted (name, value) pairs)."""
    out: dict[tuple[tuple[str, float], ...], list[LearningCurve]] = {}
    for c in curves:
        key = tuple(sorted((k, v) for k, v in c.hparams.items() if k not in TUNED))
        out.setdefault(key, []).append(c)
    return dict(sorted(out.items()))


def _label(key: tuple[tuple[str, float], ...]) -> str:
    return "_".join(f"{name}={value:g}" for name, value in key)


def _load(source: Source) -> tuple[list[LearningCurve], str]:
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            return load_run(path), str(path)
        return read_curves(path), str(path)
    return list(source), "curves"


def default_out_dir(source: str | Path) -> Path:
    """Where results go by default: into a run directory itself, next to a file as
    <stem>_fit."""
    path = Path(source)
    return path if path.is_dir() else path.with_name(path.stem + "_fit")


def _write_plots(out: Path, curves: list[LearningCurve], fit: PowerLawFit) -> None:
    plots.plot_learning_curves(curves, fit, size=fit.size, k=fit.k,
                               save=out / "learning_curves.png")
    plots.plot_intrinsic(curves, fit, save=out / "intrinsic.png")
    plots.plot_law_contours(curves, fit, save=out / "law_contours.png")
    plots.plot_optimal_size(fit, curves, save=out / "optimal_size.png")


def fit_run(source: Source, out_dir: str | Path | None = None, *, size: Size = "params",
            k: float = 1.0, bootstrap: int = 200, seed: int = 0,
            exclude_fraction: float = 1 / 64, residual: Residual = "score",
            resample: Unit = "auto", starts: int = 64, make_plots: bool = True,
            horizon_target: float | None = None, natural: str | None = None) -> FitReport:
    """Fit every experiment of `source` and write fit.json and plots (module docstring).

    source: a run directory, a .csv/.json curves file, or LearningCurves. out_dir: default
    `default_out_dir(source)`; required for a list of curves. size, k, bootstrap, seed,
    exclude_fraction, residual, resample, starts: as in `fit_power_law` (resample is its
    resample_unit). horizon_target: also fit interactions-to-target against h = 1/(1-γ) for
    curves with a gamma hyperparameter, and test whether the size exponent changes with h.
    natural: also fit a natural metric against intrinsic performance ("coinrun").
    Raises ValueError / FileNotFoundError on bad input.
    """
    curves, name = _load(source)
    if out_dir is None:
        if not isinstance(source, str | Path):
            raise ValueError("out_dir is required when fitting a list of curves")
        out_dir = default_out_dir(source)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    parts = split_experiments(curves)
    experiments, chosen_all = [], []
    for key, part in parts.items():
        label = _label(key)
        out = root / f"fit_{label}" if len(parts) > 1 else root
        out.mkdir(exist_ok=True)
        chosen = best_per_size(part)
        chosen_all += chosen
        log.info("fitting %s: %d curves (%d after choosing the best lr per size)",
                 label or name, len(part), len(chosen))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitWarning)
            fit = fit_power_law(chosen, size=size, k=k, bootstrap=bootstrap, seed=seed,
                                exclude_fraction=exclude_fraction, residual=residual,
                                resample_unit=resample, starts=starts)
        for note in fit.warnings:
            log.warning("%s%s", f"{label}: " if label else "", note)
        nat = (fit_natural(fit, chosen, metric=natural, exclude_fraction=exclude_fraction)
               if natural else None)
        doc = {"input": name, "experiment": dict(key), "curves": len(part),
               "curves_fitted": len(chosen), "power_law": fit.to_dict()}
        if nat is not None:
            doc["natural"] = nat.to_dict()
        (out / "fit.json").write_text(json.dumps(doc, indent=2))
        if make_plots:
            log.info("plotting into %s", out)
            _write_plots(out, chosen, fit)
        experiments.append(ExperimentFit(label, key, out, len(part), len(chosen), fit, nat))
    study = change = None
    if horizon_target is not None:
        study = fit_horizons(chosen_all, horizon_target, size=size, bootstrap=bootstrap,
                             seed=seed)
        if make_plots:
            plots.plot_horizon(study.horizons, study.interactions, study.pooled,
                               target=horizon_target, save=root / "horizon.png")
        by_gamma = {dict(e.key)["gamma"]: e.fit for e in experiments
                    if [n for n, _ in e.key] == ["gamma"]}
        if len(by_gamma) >= 2 and all(f.bootstrap_samples is not None
                                      for f in by_gamma.values()):
            change = exponent_change({1.0 / (1.0 - g): f for g, f in by_gamma.items()})
    fit_json = root / "fit.json"
    if len(parts) > 1 or study is not None:
        summary = json.loads(fit_json.read_text()) if len(parts) == 1 else {
            "input": name, "experiments": {e.label: {"dir": str(e.out_dir),
                                                     "status": e.fit.status,
                                                     "status_reason": e.fit.status_reason}
                                           for e in experiments}}
        if study is not None:
            summary["horizon"] = study.to_dict()
        if change is not None:
            summary["exponent_change"] = change.to_dict()
        fit_json.write_text(json.dumps(summary, indent=2))
    return FitReport(tuple(experiments), study, change, fit_json)
