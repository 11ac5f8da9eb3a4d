"""Fit hook: learning curves from a sweep's run directory, fitted by `fitting` (fit.json, plots).

Each member's valid log points (finite score, no fault) become one `fitting.LearningCurve`
(params N, flops per interaction, seed, interactions, score). Seeds are averaged by `fitting`;
where an lr grid (`lr_scale`) was swept, the best lr per size is kept (`fitting.cli.run_fit`).
Other swept hyperparameters (γ, λ, ...) are separate experiments: one power-law fit per
combination of their values, in DIR (one combination) or DIR/fit_<name>=<value>_... (several).
With a γ axis and a target score, interactions-to-target are also fitted against the horizon
h = 1/(1-γ) (DIR/horizon.json, DIR/horizon.png).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["curves_from_run", "fit_run_dir"]

_NOT_PARTITIONS = ("width", "param_ratio", "depth", "seed", "lr_scale")


def curves_from_run(path: str | Path) -> dict[tuple, list[Any]]:
    """The run's learning curves, keyed by the values of its swept non-lr hyperparameters.

    Returns {((name, value), ...): [LearningCurve, ...]}; a curve's hparams hold `lr_scale`
    (when swept) and those names. Members with fewer than 2 valid points are left out (with a
    message on stderr); an empty result is an error.
    """
    from fitting import LearningCurve
    from scalelab.sweep.rundir import RunDir
    from scalelab.sweep.spec import parse_spec

    rd = RunDir(path)
    if not rd.exists():
        raise FileNotFoundError(f"{path}: not a sweep run directory (no manifest.json)")
    spec = parse_spec(rd.read_spec_text(), str(rd.spec_file))
    parts = [a for a in spec.axes if a not in _NOT_PARTITIONS]
    tuned = ["lr_scale"] if "lr_scale" in spec.axes else []
    points: dict[int, list[tuple[float, float]]] = {}
    for row in rd.read_metrics():
        score = float(row["score"]) if row["score"] else math.nan
        if row["valid"] == "1" and math.isfinite(score):
            points.setdefault(int(row["member"]), []).append((float(row["interactions"]), score))
    out: dict[tuple, list[Any]] = {}
    for m in rd.read_manifest()["members"]:
        pts = sorted(points.get(m["member"], []))
        if len(pts) < 2:
            print(f"note: member {m['member']} has {len(pts)} valid log points; not fitted",
                  file=sys.stderr)
            continue
        key = tuple((a, m[a]) for a in parts)
        curve = LearningCurve(
            m["params"], [p[0] for p in pts], [p[1] for p in pts], seed=m["seed"],
            flops_per_interaction=m["flops_per_interaction"],
            hparams={**{a: m[a] for a in tuned}, **dict(key)},
        )
        out.setdefault(key, []).append(curve)
    if not out:
        raise ValueError(f"{path}: no member has 2 or more valid log points to fit")
    return out


def _label(key: tuple) -> str:
    return "_".join(f"{name}={value:g}" for name, value in key)


def fit_run_dir(path: str | Path, *, compute: str = "params", k: float = 1.0,
                bootstrap: int = 200, seed: int = 0, exclude_fraction: float = 1 / 64,
                starts: int = 64, make_plots: bool = True,
                horizon_target: float | None = None) -> dict[str, Any]:
    """Fit every experiment of run directory `path`; write fit.json and plots; return a summary.

    Returns {"fits": {label: (PowerLawFit, out_dir)}, "horizon": HorizonFit | None}; label ""
    when no non-lr hyperparameter was swept (then everything lands in `path` itself).
    """
    from fitting import plots
    from fitting.cli import best_per_size, horizon_points, run_fit
    from fitting.horizon import fit_horizon
    from fitting.io import write_curves_csv

    root = Path(path)
    fits = {}
    chosen_all = []
    for key, curves in curves_from_run(root).items():
        out = root if not key else root / f"fit_{_label(key)}"
        out.mkdir(exist_ok=True)
        csv_path = out / "curves.csv"
        write_curves_csv(curves, csv_path)
        fit, _ = run_fit(csv_path, out, compute=compute, k=k, bootstrap=bootstrap, seed=seed,
                         exclude_fraction=exclude_fraction, starts=starts,
                         make_plots=make_plots)
        fits[_label(key)] = (fit, out)
        chosen_all += best_per_size(curves)
    hfit = None
    if horizon_target is not None:
        h, e = horizon_points(chosen_all, horizon_target)
        hfit = fit_horizon(h, e)
        (root / "horizon.json").write_text(json.dumps(
            {"target": horizon_target, **hfit.to_dict(), "horizons": h.tolist(),
             "interactions_to_target": e.tolist()}, indent=2))
        if make_plots:
            plots.plot_horizon(h, e, hfit, target=horizon_target, save=root / "horizon.png")
    return {"fits": fits, "horizon": hfit}
