"""Bootstrap resampling of seeds or runs, and percentile intervals.

Two resampling units:

- "seeds": within each model, draw its n seeds with replacement and average them. A bootstrap
  mean of n draws has variance (n-1)/n times that of the sample mean, which matters with the
  2-5 seeds of a sweep; each resampled mean m* is therefore rescaled about the sample mean m
  as m + sqrt(n/(n-1))·(m* - m), so its variance matches the sample mean's. Models with one
  seed are left as they are.
- "runs": draw the models themselves with replacement (for sweeps with one seed per size);
  a model drawn c times enters the loss with c times its weight.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from fitting.curves import Prepared

Unit = Literal["auto", "seeds", "runs"]


def choose_unit(prep: Prepared, unit: Unit) -> Literal["seeds", "runs"]:
    """"auto" resamples seeds when every model has at least 2 of them, runs otherwise."""
    if unit not in ("auto", "seeds", "runs"):
        raise ValueError(f"resample must be 'auto', 'seeds' or 'runs', got {unit!r}")
    if unit != "auto":
        return unit
    return "seeds" if int(prep.seed_mask.sum(1).min()) >= 2 else "runs"


def resample(prep: Prepared, num: int, unit: Literal["seeds", "runs"],
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`num` resampled (score (num, M, T), weight (num, M, T)) arrays; see the module docstring."""
    m = prep.score.shape[0]
    scores = np.broadcast_to(prep.score, (num, *prep.score.shape)).copy()
    weights = np.broadcast_to(prep.weight, (num, *prep.weight.shape)).copy()
    if unit == "seeds":
        for i in range(m):
            n = int(prep.seed_mask[i].sum())
            if n < 2:
                continue
            counts = rng.multinomial(n, np.full(n, 1.0 / n), size=num)
            boot = counts @ prep.seed_scores[i, :n] / n
            scores[:, i] = prep.score[i] + np.sqrt(n / (n - 1)) * (boot - prep.score[i])
    else:
        counts = rng.multinomial(m, np.full(m, 1.0 / m), size=num)
        weights *= counts[:, :, None]
    return scores, weights


def percentile_intervals(samples: dict[str, np.ndarray], ok: np.ndarray,
                         lo: float = 5.0, hi: float = 95.0) -> dict[str, tuple[float, float]]:
    """name → (lo-th, hi-th percentile) over the samples where ok (B,) is True."""
    if not np.any(ok):
        raise ValueError("no bootstrap resample converged; no intervals")
    return {name: (float(np.percentile(v[ok], lo)), float(np.percentile(v[ok], hi)))
            for name, v in samples.items()}
