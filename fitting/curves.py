"""Learning curves: validation, seed averaging, smoothing, early-training exclusion and weights.

Preprocessing used by the fit (each step documented where it is implemented):

1. Curves of the same model (same params, FLOPs per interaction and hyperparameters) are
   grouped; their seeds are kept on the interactions they all logged (`group_curves`).
2. Every seed curve is smoothed by local-linear Gaussian-kernel regression in ln E
   (`smooth_scores`); smoothing is linear, so the smoothed seed mean equals the mean of the
   smoothed seeds, which lets the bootstrap resample seeds after smoothing.
3. Points with E < exclude_fraction · E_last of their curve are dropped (early training).
4. Each kept point gets weight ΔE/E (ΔE its local spacing), which is exactly ∝ 1/E for evenly
   spaced logs and in general gives every interval of ln E equal total weight.
5. Kept points are merged into bins of width `bin_width` in ln E (weighted means, summed
   weights; `bin_points`), so the fit's cost follows the ln E range of the curves rather than
   how often the runs logged. With the default 0.05 (half the smoothing bandwidth) a bin
   spans 5% of E, over which the smoothed curve is close to linear.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

Size = Literal["params", "policy_params", "flops"]
SIZES = ("params", "policy_params", "flops")


@dataclasses.dataclass(frozen=True, eq=False)
class LearningCurve:
    """One training run: score against interactions for a model of a given size.

    params: parameter count N (> 0). interactions: (T,) strictly increasing, > 0, T >= 2.
    score: (T,) finite mean return or accuracy at those interactions. seed: the run's seed.
    flops_per_interaction: forward FLOPs per interaction (used with size="flops").
    policy_params: parameters of the acting network alone (used with size="policy_params").
    hparams: other settings that distinguish runs of the same size (e.g. lr, gamma); runs that
    differ only in seed are averaged together.
    """

    params: float
    interactions: np.ndarray
    score: np.ndarray
    seed: int | None = None
    flops_per_interaction: float | None = None
    hparams: Mapping[str, float] = dataclasses.field(default_factory=dict)
    policy_params: float | None = None

    def __init__(self, params: float, interactions: ArrayLike, score: ArrayLike,
                 seed: int | None = None, flops_per_interaction: float | None = None,
                 hparams: Mapping[str, float] | None = None,
                 policy_params: float | None = None) -> None:
        _check_size("params", params)
        for name, value in (("flops_per_interaction", flops_per_interaction),
                            ("policy_params", policy_params)):
            if value is not None:
                _check_size(name, value)
        e = np.asarray(interactions, dtype=np.float64)
        r = np.asarray(score, dtype=np.float64)
        if e.ndim != 1 or r.ndim != 1:
            raise ValueError(f"interactions and score must be 1-D, got shapes {e.shape}, {r.shape}")
        if e.shape != r.shape:
            raise ValueError(f"interactions has {e.size} points but score has {r.size}")
        if e.size < 2:
            raise ValueError(f"a learning curve needs at least 2 points, got {e.size}")
        if not np.all(np.isfinite(e)) or np.any(e <= 0):
            raise ValueError("interactions must be finite and > 0")
        if np.any(np.diff(e) <= 0):
            i = int(np.argmax(np.diff(e) <= 0))
            raise ValueError(f"interactions must be strictly increasing: "
                             f"interactions[{i}]={e[i]:g} >= interactions[{i + 1}]={e[i + 1]:g}")
        if not np.all(np.isfinite(r)):
            i = int(np.argmax(~np.isfinite(r)))
            raise ValueError(f"score[{i}] is {r[i]} (at interactions={e[i]:g}); "
                             "scores must be finite")
        if seed is not None and not isinstance(seed, int | np.integer):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        e.flags.writeable = False
        r.flags.writeable = False
        object.__setattr__(self, "params", float(params))
        object.__setattr__(self, "interactions", e)
        object.__setattr__(self, "score", r)
        object.__setattr__(self, "seed", None if seed is None else int(seed))
        object.__setattr__(self, "flops_per_interaction",
                           None if flops_per_interaction is None else float(flops_per_interaction))
        object.__setattr__(self, "hparams", dict(hparams or {}))
        object.__setattr__(self, "policy_params",
                           None if policy_params is None else float(policy_params))

    def group_key(self) -> tuple:
        """Curves with equal keys differ only by seed and are averaged together."""
        return (self.params, self.flops_per_interaction, tuple(sorted(self.hparams.items())),
                self.policy_params)


def _check_size(name: str, value: float) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")


class CurveGroup(NamedTuple):
    """Seeds of one model: shared interactions (T,) and per-seed scores (S, T)."""

    params: float
    flops_per_interaction: float | None
    hparams: dict
    interactions: np.ndarray
    scores: np.ndarray
    seeds: tuple
    policy_params: float | None

    def size(self, measure: Size) -> float:
        """The model size N of C = k·N·E: "params" (every trained parameter),
        "policy_params" (the acting network) or "flops" (forward FLOPs per interaction)."""
        value = {"params": self.params, "policy_params": self.policy_params,
                 "flops": self.flops_per_interaction}.get(measure, -1.0)
        if value == -1.0:
            raise ValueError(f"size must be one of {SIZES}, got {measure!r}")
        if value is None:
            column = "flops_per_interaction" if measure == "flops" else measure
            raise ValueError(f"size={measure!r} needs {column} on every curve; the curve(s) "
                             f"with params={self.params:g} have none")
        return float(value)


def group_curves(curves: Sequence[LearningCurve]) -> list[CurveGroup]:
    """Group curves that differ only by seed; each group keeps the interactions all seeds logged.

    Returns groups sorted by (params, flops, hparams). Raises if a group's seeds share fewer
    than 2 interaction values.
    """
    if len(curves) == 0:
        raise ValueError("no learning curves given")
    for i, c in enumerate(curves):
        if not isinstance(c, LearningCurve):
            raise ValueError(f"curves[{i}] is a {type(c).__name__}, not a LearningCurve")
    by_key: dict[tuple, list[LearningCurve]] = {}
    for c in curves:
        by_key.setdefault(c.group_key(), []).append(c)
    groups = []
    for key in sorted(by_key, key=lambda k: (k[0], k[1] or 0.0, k[2], k[3] or 0.0)):
        members = by_key[key]
        common = members[0].interactions
        for c in members[1:]:
            common = np.intersect1d(common, c.interactions)
        if common.size < 2:
            raise ValueError(f"the {len(members)} seeds of the model with params={key[0]:g} "
                             f"share {common.size} logged interactions; need >= 2")
        scores = np.stack([c.score[np.isin(c.interactions, common)] for c in members])
        groups.append(CurveGroup(key[0], key[1], dict(key[2]), common, scores,
                                 tuple(c.seed for c in members), key[3]))
    return groups


def smooth_scores(interactions: np.ndarray, scores: np.ndarray, bandwidth: float) -> np.ndarray:
    """Local-linear Gaussian-kernel smoothing in ln E.

    For each point j, fits y ≈ a + b·(x - x_j) by least squares with weights
    exp(-(x - x_j)²/(2h²)), x = ln E, h = bandwidth (natural-log units, so 0.1 ≈ 10% of E),
    and returns a. Unlike a moving average this has no bias at the ends of a linear trend.
    Where a point's kernel holds effectively one point, it falls back to the local mean.
    interactions: (T,); scores: (..., T). bandwidth <= 0 returns scores unchanged. Cost O(T²).
    """
    if bandwidth < 0 or not math.isfinite(bandwidth):
        raise ValueError(f"smoothing bandwidth must be finite and >= 0, got {bandwidth}")
    y = np.asarray(scores, dtype=np.float64)
    if bandwidth == 0:
        return y.copy()
    x = np.log(np.asarray(interactions, dtype=np.float64))
    d = x[None, :] - x[:, None]  # d[j, l] = x_l - x_j
    kern = np.exp(-0.5 * (d / bandwidth) ** 2)
    s0, s1, s2 = kern.sum(1), (kern * d).sum(1), (kern * d * d).sum(1)
    t0 = y @ kern.T
    t1 = y @ (kern * d).T
    det = s0 * s2 - s1 * s1
    linear = det > 1e-9 * s0 * np.maximum(s2, 1e-300)
    local_linear = (s2 * t0 - s1 * t1) / np.where(linear, det, 1.0)
    return np.where(linear, local_linear, t0 / s0)


def point_weights(interactions: np.ndarray) -> np.ndarray:
    """ΔE/E per point: ΔE = (E[j+1] - E[j-1])/2 inside, the one-sided gap at the ends.

    Exactly ∝ 1/E for evenly spaced E, and ≈ the ln E interval each point represents otherwise.
    """
    e = np.asarray(interactions, dtype=np.float64)
    gaps = np.diff(e)
    spacing = np.empty_like(e)
    spacing[0], spacing[-1] = gaps[0], gaps[-1]
    spacing[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
    return spacing / e


class Prepared(NamedTuple):
    """Preprocessed curves, padded to a common length T (padding has weight 0).

    sizes (M,): N per model; interactions (M, T) of the (binned) points; seed_scores (M, S, T)
    smoothed per seed; seed_mask (M, S) which seeds exist; score (M, T) smoothed seed mean;
    weight (M, T) ΔE/E summed per bin (0 on padding); groups: the M CurveGroups; warnings:
    messages about curves that are flat or fall back by much after smoothing.
    """

    sizes: np.ndarray
    interactions: np.ndarray
    seed_scores: np.ndarray
    seed_mask: np.ndarray
    score: np.ndarray
    weight: np.ndarray
    groups: list
    warnings: tuple


def bin_points(interactions: np.ndarray, scores: np.ndarray, weights: np.ndarray,
               width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge points into bins of `width` in ln E, starting at the first point.

    Each non-empty bin becomes one point at the weighted mean of ln E, with the weighted mean
    score (per row of scores (S, T)) and the summed weight. width 0 returns the input.
    Returns (interactions (B,), scores (S, B), weights (B,)).
    """
    if width == 0:
        return interactions, scores, weights
    x = np.log(interactions)
    idx = np.floor((x - x[0]) / width).astype(int)
    _, idx = np.unique(idx, return_inverse=True)
    total = np.bincount(idx, weights)
    mean_x = np.bincount(idx, weights * x) / total
    mean_r = np.stack([np.bincount(idx, weights * r) for r in scores]) / total
    return np.exp(mean_x), mean_r, total


def prepare(curves: Sequence[LearningCurve], size: Size = "params",
            exclude_fraction: float = 1 / 64, smooth: float = 0.1,
            bin_width: float = 0.05) -> Prepared:
    """Group seeds, smooth, drop early training, weight and bin points (module docstring)."""
    if not 0 <= exclude_fraction < 1:
        raise ValueError(f"exclude_fraction must be in [0, 1), got {exclude_fraction}")
    if not (bin_width >= 0 and math.isfinite(bin_width)):
        raise ValueError(f"bin_width must be finite and >= 0, got {bin_width}")
    groups = group_curves(curves)
    sizes = np.array([g.size(size) for g in groups])
    kept, notes = [], []
    for g in groups:
        keep = g.interactions >= exclude_fraction * g.interactions[-1]
        if keep.sum() < 2:
            raise ValueError(f"the curve with params={g.params:g} keeps {keep.sum()} points after "
                             f"excluding the first {exclude_fraction:g} of training; need >= 2")
        sm = smooth_scores(g.interactions, g.scores, smooth)[:, keep]
        raw = g.scores[:, keep].mean(0)
        kept.append((g, raw, bin_points(g.interactions[keep], sm,
                                        point_weights(g.interactions)[keep], bin_width)))
    span = _score_span([sm.mean(0) for _, _, (_, sm, _) in kept])
    m, s_max = len(groups), max(g.scores.shape[0] for g in groups)
    t_max = max(e.size for _, _, (e, _, _) in kept)
    inter, weight = np.ones((m, t_max)), np.zeros((m, t_max))
    seed_scores, seed_mask = np.zeros((m, s_max, t_max)), np.zeros((m, s_max), bool)
    for i, (g, raw, (e, sm, w)) in enumerate(kept):
        t, s = e.size, sm.shape[0]
        # padding repeats the last point so padded entries stay finite and in range
        inter[i, :t], inter[i, t:] = e, e[-1]
        seed_scores[i, :s, :t], seed_scores[i, :s, t:] = sm, sm[:, -1:]
        seed_mask[i, :s] = True
        weight[i, :t] = w
        notes.extend(_shape_warnings(g, raw, smooth_scores(g.interactions, g.scores.mean(0),
                                                           smooth)[-raw.size:], span))
    score = (seed_scores * seed_mask[..., None]).sum(1) / seed_mask.sum(1)[:, None]
    return Prepared(sizes, inter, seed_scores, seed_mask, score, weight, groups, tuple(notes))


def _score_span(scores: list) -> float:
    top = max(float(r.max()) for r in scores)
    span = top - min(float(r.min()) for r in scores)
    if span <= 1e-9 * max(1.0, abs(top)):
        raise ValueError("every kept score is identical; there is nothing to fit")
    return span


def _shape_warnings(g: CurveGroup, raw: np.ndarray, smoothed: np.ndarray, span: float) -> list:
    """Flat: the smoothed curve varies by < 2% of the score range. Not monotone: it falls below
    its running best by > 10% of the range and by > 4 noise levels (std of raw - smoothed)."""
    noise = float(np.std(raw - smoothed))
    drop = float(np.max(np.maximum.accumulate(smoothed) - smoothed))
    rise = float(smoothed.max() - smoothed.min())
    if rise < 0.02 * span:
        return [f"curve params={g.params:g} is flat (its smoothed score varies by {rise:.3g}, "
                f"under 2% of the score range {span:.3g})"]
    if drop > max(0.1 * span, 4 * noise):
        return [f"curve params={g.params:g} is not monotone: its smoothed score falls {drop:.3g} "
                f"below its running best (over 10% of the score range and 4 noise levels)"]
    return []
