"""The figures of an intrinsic-performance study, each returned as a matplotlib Figure.

- `plot_learning_curves`: score against compute per model size, with the empirical frontier
  (and the fit's predicted curves);
- `plot_intrinsic`: fitted intrinsic performance against compute, with the frontier y = x;
- `plot_law_contours`: contours of the fitted I(N, E) over the data and the optimal path;
- `plot_optimal_size`: N_opt against compute with the fitted exponent and its interval;
- `plot_horizon`: interactions to reach a target against the horizon, with the fitted line.

Every function takes `save` (a path; the PNG is written at 150 dpi) and uses the object-
oriented API only, so it works headless and never touches pyplot's global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from fitting import law
from fitting.curves import LearningCurve, Size, group_curves
from fitting.horizon import HorizonFit
from fitting.intrinsic import empirical_intrinsic
from fitting.powerlaw import PowerLawFit


def _finish(fig: Figure, save: str | Path | None) -> Figure:
    fig.tight_layout()
    if save is not None:
        fig.savefig(save, dpi=150)
    return fig


def _models(curves: Sequence[LearningCurve], size: Size) -> list[tuple[float, np.ndarray,
                                                                       np.ndarray]]:
    """(N, interactions, seed-mean score) per model, smallest N first."""
    out = []
    for g in group_curves(curves):
        out.append((g.size(size), g.interactions, g.scores.mean(0)))
    return sorted(out, key=lambda m: m[0])


def _size_colors(sizes: Sequence[float]):
    logs = np.log(np.asarray(sizes))
    span = logs.max() - logs.min()
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(0.9 * (x - logs.min()) / span if span > 0 else 0.5) for x in logs]


def _size_legend(ax, size: Size) -> None:
    ax.legend(title="N (" + size + ")", fontsize="small", title_fontsize="small", ncol=2)


def plot_learning_curves(curves: Sequence[LearningCurve], fit: PowerLawFit | None = None, *,
                         size: Size = "params", k: float = 1.0,
                         save: str | Path | None = None) -> Figure:
    """Seed-averaged score against compute C = k·N·E (log x) per model size, the empirical
    compute-efficient frontier (black), and, given a fit, its predicted curves (dashed)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    models = _models(curves, size)
    for (n, e, r), color in zip(models, _size_colors([m[0] for m in models]), strict=True):
        ax.plot(k * n * e, r, color=color, lw=1.2, label=f"{n:.3g}")
        if fit is not None:
            ax.plot(k * n * e, fit.predict_score(n, e), color=color, lw=1, ls="--")
    front = empirical_intrinsic(curves, size=size, k=k)
    reached = np.isfinite(front.compute)
    ax.step(front.compute[reached], front.score[reached], where="post", color="black", lw=1.5,
            label="frontier")
    ax.set_xscale("log")
    ax.set_xlabel(f"compute C = k·N·E  (N = {size}, k = {k:g})")
    ax.set_ylabel("score")
    ax.set_title("Learning curves" + (" (dashed: fitted law)" if fit is not None else ""))
    _size_legend(ax, size)
    return _finish(fig, save)


def plot_intrinsic(curves: Sequence[LearningCurve], fit: PowerLawFit,
                   save: str | Path | None = None) -> Figure:
    """Fitted intrinsic performance I = f(score) against compute C per model (log-log); by
    construction the compute-efficient frontier touches the line I = C."""
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    models = _models(curves, fit.size)
    lo, hi = np.inf, 0.0
    for (n, e, r), color in zip(models, _size_colors([m[0] for m in models]), strict=True):
        c = fit.k * n * e
        ax.plot(c, fit.intrinsic(r), color=color, lw=1.2, label=f"{n:.3g}")
        lo, hi = min(lo, c.min()), max(hi, c.max())
    ax.plot([lo, hi], [lo, hi], color="black", ls="--", lw=1, label="I = C")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C")
    ax.set_ylabel("intrinsic performance I")
    ax.set_title("Intrinsic performance vs compute")
    _size_legend(ax, fit.size)
    return _finish(fig, save)


def plot_law_contours(curves: Sequence[LearningCurve], fit: PowerLawFit,
                      save: str | Path | None = None) -> Figure:
    """Contours of log10 I(N, E) of the fitted law over (E, N), the data's (E, N) points
    coloured by their fitted intrinsic performance on the same scale, and the compute-optimal
    path N_opt(C)."""
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    models = _models(curves, fit.size)
    sizes = np.array([m[0] for m in models])
    e_all = np.concatenate([m[1] for m in models])
    e_grid = np.geomspace(e_all.min(), e_all.max(), 120)
    n_grid = np.geomspace(sizes.min() / 2, sizes.max() * 2, 100)
    z = np.log10(fit.predict(n_grid[:, None], e_grid[None, :]))
    levels = np.linspace(z.min(), z.max(), 14)
    cs = ax.contour(e_grid, n_grid, z, levels=levels, cmap="viridis", linewidths=1)
    ax.clabel(cs, fontsize="x-small", fmt="%.1f")
    for n, e, r in models:
        step = max(1, e.size // 40)
        ax.scatter(e[::step], np.full(e[::step].shape, n), c=np.log10(fit.intrinsic(r[::step])),
                   cmap="viridis", vmin=levels[0], vmax=levels[-1], s=10, edgecolors="none")
    c_path = np.geomspace(fit.k * n_grid.min() * e_grid.min(), fit.k * n_grid.max() * e_grid.max())
    n_opt = fit.optimal_params(c_path)
    e_opt = c_path / (fit.k * n_opt)
    inside = (e_opt >= e_grid[0]) & (e_opt <= e_grid[-1]) & (n_opt >= n_grid[0]) & \
        (n_opt <= n_grid[-1])
    ax.plot(e_opt[inside], n_opt[inside], color="black", ls="--", label="compute-optimal N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("interactions E")
    ax.set_ylabel(f"model size N ({fit.size})")
    ax.set_title("Fitted law: contours of log10 I(N, E); dots: data at f(score)")
    ax.legend(fontsize="small")
    return _finish(fig, save)


def plot_optimal_size(fit: PowerLawFit, curves: Sequence[LearningCurve] | None = None, *,
                      compute_range: tuple[float, float] | None = None,
                      save: str | Path | None = None) -> Figure:
    """N_opt(C) of the fit (log-log) with its 5–95% bootstrap band when the fit has one, and,
    given curves, the model sizes that lie on the empirical frontier. compute_range defaults
    to the curves' compute range (or 1e3 decades around the fit's constants without curves)."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    front = None
    if curves is not None:
        front = empirical_intrinsic(curves, size=fit.size, k=fit.k)
    if compute_range is None:
        if front is not None:
            finite = front.compute[np.isfinite(front.compute)]
            compute_range = (finite.min(), finite.max())
        else:
            mid = fit.k * fit.N_c * fit.E_c
            compute_range = (mid * 1e-3, mid * 1e3)
    c = np.geomspace(*compute_range, 100)
    label = f"fit: N_opt ∝ C^{fit.size_exponent:.3f}"
    if fit.intervals is not None:
        lo, hi = fit.intervals["size_exponent"]
        label += f" [{lo:.3f}, {hi:.3f}]"
        s = fit.bootstrap_samples
        curves_b = np.stack([law.optimal_params(c, s["alpha_N"][i], s["alpha_E"][i],
                                                s["N_c"][i], s["E_c"][i], fit.k)
                             for i in range(fit.bootstrap_ok.size)])
        ax.fill_between(c, *np.percentile(curves_b, [5, 95], axis=0), color="tab:blue",
                        alpha=0.25, lw=0, label="5–95% bootstrap")
    ax.plot(c, fit.optimal_params(c), color="tab:blue", label=label)
    if front is not None:
        ok = np.isfinite(front.compute)
        ax.scatter(front.compute[ok], front.size[ok], s=12, color="black", zorder=3,
                   label="size on empirical frontier")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C")
    ax.set_ylabel(f"optimal model size N ({fit.size})")
    ax.set_title("Compute-optimal model size")
    ax.legend(fontsize="small")
    return _finish(fig, save)


def plot_horizon(horizons: ArrayLike, interactions_to_target: ArrayLike, fit: HorizonFit, *,
                 target: float | None = None, save: str | Path | None = None) -> Figure:
    """Interactions needed to reach the target against the horizon h = 1/(1-γ), with the
    fitted line intercept + slope·h."""
    h = np.asarray(horizons, dtype=np.float64)
    e = np.asarray(interactions_to_target, dtype=np.float64)
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    ax.scatter(h, e, color="black", s=18, zorder=3, label="runs")
    grid = np.linspace(0.0, h.max() * 1.05, 50)
    ax.plot(grid, fit.predict(grid), color="tab:red",
            label=f"{fit.intercept:.3g} + {fit.slope:.3g}·h  (R² = {fit.r2:.3f})")
    ax.set_xlabel("horizon h = 1/(1-γ)")
    ax.set_ylabel("interactions to reach target" + (f" {target:g}" if target is not None else ""))
    ax.set_title("Interactions needed vs horizon")
    ax.legend(fontsize="small")
    return _finish(fig, save)
