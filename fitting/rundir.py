"""Learning curves from a sweep's run directory: its manifest.json and metrics.csv.

The layout is the one `scalelab sweep run` and `scalelab train --out` write (read here with
the standard library only, so `fitting` does not depend on `scalelab`):

- manifest.json: {"members": [row, ...], ...}, one row per member with at least `member`,
  `params` and `seed`, and usually `policy_params`, `flops_per_interaction`, `lr_scale`,
  `gamma`, `gae_lambda` and other hyperparameters;
- metrics.csv: one row per (member, log point) with at least `member`, `interactions`,
  `score` and `valid` (0 from a member's fault onwards).

Each member's valid, finite points become one LearningCurve. Its hparams hold the numeric
manifest columns that vary between members, other than the size and identity columns
(IDENTITY): the swept hyperparameters such as `lr_scale` and `gamma`. Members with fewer than 2
valid points are left out, with a warning on the `fitting` logger.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

from fitting.curves import LearningCurve

# Manifest columns that are not hyperparameters of a run: identity, sizes, and values derived
# from other columns (lr follows lr_scale and the width rule).
IDENTITY = frozenset({"member", "group", "slot", "env", "family", "width", "depth",
                      "param_ratio", "params", "policy_params", "flops_per_interaction",
                      "seed", "lr", "status", "fault_update"})

log = logging.getLogger("fitting")


def is_run_dir(path: str | Path) -> bool:
    """Whether path is a directory holding a sweep's manifest.json."""
    return (Path(path) / "manifest.json").is_file()


def _swept(members: list[dict]) -> list[str]:
    names = sorted({k for m in members for k in m} - IDENTITY)
    swept = []
    for name in names:
        values = {m.get(name) for m in members}
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric and len(values) > 1:
            swept.append(name)
    return swept


def load_run(path: str | Path) -> list[LearningCurve]:
    """One LearningCurve per member of the run directory `path` (module docstring).

    Raises FileNotFoundError if path has no manifest.json or metrics.csv, and ValueError if
    no member has 2 or more valid points.
    """
    root = Path(path)
    if not is_run_dir(root):
        raise FileNotFoundError(f"{root}: not a run directory (no manifest.json)")
    if not (root / "metrics.csv").is_file():
        raise FileNotFoundError(f"{root}: no metrics.csv; has the sweep logged anything?")
    members = json.loads((root / "manifest.json").read_text())["members"]
    points: dict[int, list[tuple[float, float]]] = {}
    with (root / "metrics.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"member", "interactions", "score", "valid"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{root / 'metrics.csv'}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            if None in row.values():  # a torn last line
                continue
            try:
                score = float(row["score"]) if row["score"] else math.nan
                point = (int(row["member"]), float(row["interactions"]), score)
            except ValueError as err:
                raise ValueError(f"{root / 'metrics.csv'}:{line}: {err}") from None
            if row["valid"] in ("1", "True", "true") and math.isfinite(score):
                points.setdefault(point[0], []).append(point[1:])
    swept = _swept(members)
    curves = []
    for m in members:
        pts = sorted(points.get(m["member"], []))
        if len(pts) < 2:
            log.warning("member %s has %d valid log points; not fitted", m["member"], len(pts))
            continue
        curves.append(LearningCurve(
            m["params"], [p[0] for p in pts], [p[1] for p in pts], seed=m.get("seed"),
            flops_per_interaction=m.get("flops_per_interaction"),
            policy_params=m.get("policy_params"),
            hparams={name: float(m[name]) for name in swept}))
    if not curves:
        raise ValueError(f"{root}: no member has 2 or more valid log points to fit")
    return curves
