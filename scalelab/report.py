"""Learning-curve output of `scalelab.train` results: PNG plots and one-line text summaries
(the curves themselves are the run directory's metrics.csv)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from scalelab.train import RunResult


def mean_curve(result: RunResult) -> np.ndarray:
    """Score averaged over members (seeds) at each log point, (T,); NaN windows are skipped."""
    score = np.asarray(result.score, np.float64)
    counts = np.isfinite(score).sum(0)
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, np.nansum(score, 0) / np.maximum(counts, 1), np.nan)


def interactions_to_reach(result: RunResult, target: float) -> int | None:
    """Interactions at the first log point where the seed-mean score is >= target (or None)."""
    hits = np.flatnonzero(mean_curve(result) >= target)
    return int(result.interactions[hits[0]]) if hits.size else None


def network_label(result: RunResult) -> str:
    """The network family, saying when it was chosen by observation shape (`network=None`)."""
    if result.config.network is not None:
        return result.network
    shape = "x".join(str(d) for d in result.obs_shape)
    return f"{result.network} (default for observation shape {shape})"


def summary(result: RunResult, target: float | None = None) -> str:
    """One line: env, network (and whether it was the default), size, final seed-mean score ± std,
    speed (and time to target)."""
    c = result.config
    final = np.asarray(result.score, np.float64)[:, -1]
    total = int(result.interactions[-1]) * len(result.seeds)
    line = (
        f"{c.env} {network_label(result)} width={c.width:g}: N={result.params:,} params, "
        f"{result.flops_per_interaction:,} FLOPs/obs | final {result.score_kind} "
        f"{np.nanmean(final):.4g} ± {np.nanstd(final):.2g} over {len(result.seeds)} seed(s) at "
        f"{int(result.interactions[-1]):,} interactions | compile {result.compile_seconds:.1f}s, "
        f"train {result.train_seconds:.1f}s ({total / result.train_seconds:,.0f} interactions/s)"
    )
    if target is not None:
        reached = interactions_to_reach(result, target)
        line += f" | >= {target:g} at " + (f"{reached:,}" if reached else "never")
    return line


def plot_curves(
    results: Sequence[RunResult], path: str | os.PathLike, title: str | None = None
) -> None:
    """PNG of score vs interactions: the seed mean of each result, with its min-max band."""

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for r in results:
        x = np.asarray(r.interactions)
        score = np.asarray(r.score, np.float64)
        label = f"width {r.config.width:g} (N={r.params:,})"
        (line,) = ax.plot(x, mean_curve(r), label=label)
        if score.shape[0] > 1:
            with np.errstate(invalid="ignore"):
                ax.fill_between(x, np.nanmin(score, 0), np.nanmax(score, 0),
                                color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment interactions (per member)")
    kind = results[0].score_kind if results else "score"
    ax.set_ylabel("training accuracy" if kind == "reward_per_step" else "mean episode return")
    ax.set_title(title or (results[0].config.env if results else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120)
