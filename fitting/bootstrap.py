"""Bootstrap resampling of a fit's data (seeds, runs or residuals), and percentile intervals.

Three resampling units:

- "seeds": within each model, draw its n seeds with replacement and average them. A bootstrap
  mean of n draws has variance (n-1)/n times that of the sample mean, which matters with the
  2-5 seeds of a sweep; each resampled mean m* is therefore rescaled about the sample mean m
  as m + sqrt(n/(n-1))·(m* - m), so its variance matches the sample mean's. Models with one
  seed are left as they are.
- "residual": keep the fitted curve ŝ of every model and add back its own residual curve
  e = s - ŝ (seed mean minus fit) with a random sign per block of `block` in ln E
  (a block-wise wild bootstrap: s* = ŝ + v·e, v = ±1). Smoothing correlates neighbouring
  residuals, so whole blocks, several smoothing bandwidths long, keep their sign. It uses
  every point of every size, so it gives smooth intervals even with 1-3 seeds, but it
  assumes the fitted law is right and that blocks are independent.
- "runs": draw the models themselves with replacement (a model drawn c times enters the loss
  with c times its weight). With few sizes a resample often holds fewer than 3 distinct
  sizes, which cannot determine the law; use it only for sweeps with many sizes.

"auto" resamples seeds when every model has at least 2 of them, residuals otherwise. Seeds are
the default because they are the only replicates known to be independent: the seed bootstrap
assumes nothing about the law. With 2-3 seeds per size its resamples take few distinct values
(3 per size with 2 seeds), so its percentiles are coarse; compare with "residual" there, and
take the wider. Measured on a quickstart-like synthetic design (3 sizes, 2 seeds, 80 points,
3% noise, 10 sweeps × 100 resamples): the 5–95% interval of the size exponent covered the
truth in 7/10 sweeps with "seeds" (median width 0.071) and 5/10 with "residual" (0.040; blocks
of 2.0 in ln E gave 4/10): the residual bootstrap is too narrow there, most likely because the
fitted score map absorbs part of the noise, so its residuals understate it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from fitting.curves import Prepared

Unit = Literal["auto", "seeds", "residual", "runs"]
Chosen = Literal["seeds", "residual", "runs"]


def choose_unit(prep: Prepared, unit: Unit) -> Chosen:
    """"auto" resamples seeds when every model has at least 2 of them, residuals otherwise."""
    if unit not in ("auto", "seeds", "residual", "runs"):
        raise ValueError(f"resample must be 'auto', 'seeds', 'residual' or 'runs', got {unit!r}")
    if unit != "auto":
        return unit
    return "seeds" if int(prep.seed_mask.sum(1).min()) >= 2 else "residual"


def resample(prep: Prepared, num: int, unit: Chosen, rng: np.random.Generator,
             fitted: np.ndarray | None = None,
             block: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """`num` resampled (score (num, M, T), weight (num, M, T)) arrays; see the module docstring.

    fitted (M, T): the fit's score at every point (needed by "residual"); block: the length in
    ln E of the residual blocks that share a sign.
    """
    m = prep.score.shape[0]
    scores = np.broadcast_to(prep.score, (num, *prep.score.shape)).copy()
    weights = np.broadcast_to(prep.weight, (num, *prep.weight.shape)).copy()
    if unit == "seeds":
        for i in range(m):
            n = int(prep.seed_mask[i].sum())
            scores[:, i] = seed_means(prep.seed_scores[i, :n], num, rng)
    elif unit == "residual":
        if fitted is None:
            raise ValueError("the residual bootstrap needs the fitted scores")
        x = np.log(prep.interactions)
        blocks = np.floor((x - x[:, :1]) / block).astype(int)  # (M, T), from 0 per model
        signs = rng.choice([-1.0, 1.0], size=(num, m, int(blocks.max()) + 1))
        v = np.take_along_axis(signs, np.broadcast_to(blocks, (num, *blocks.shape)), axis=2)
        scores = fitted + v * (prep.score - fitted)
    else:
        counts = rng.multinomial(m, np.full(m, 1.0 / m), size=num)
        weights *= counts[:, :, None]
    return scores, weights


def seed_means(seed_scores: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
    """`num` resampled seed means (num, T) of seed_scores (n, T): n seeds drawn with
    replacement, averaged, rescaled by sqrt(n/(n-1)) about the sample mean (module
    docstring); one seed is returned as it is."""
    n = seed_scores.shape[0]
    mean = seed_scores.mean(0)
    if n < 2:
        return np.broadcast_to(mean, (num, mean.size)).copy()
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=num)
    return mean + np.sqrt(n / (n - 1)) * (counts @ seed_scores / n - mean)


def percentile_intervals(samples: dict[str, np.ndarray], lo: float = 5.0,
                         hi: float = 95.0) -> dict[str, tuple[float, float]]:
    """name → (lo-th, hi-th percentile) over the finite samples (B,) of each name.

    Every resample counts (none is dropped for converging slowly), so the intervals do not
    depend on where a convergence threshold falls."""
    out = {}
    for name, v in samples.items():
        finite = v[np.isfinite(v)]
        if finite.size == 0:
            raise ValueError(f"no finite bootstrap value of {name}; no intervals")
        out[name] = (float(np.percentile(finite, lo)), float(np.percentile(finite, hi)))
    return out
