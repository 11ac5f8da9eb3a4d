"""Reading and writing learning curves as CSV (long format) or JSON.

CSV: one row per (run, logged point), header required. Columns:

    run                    optional  run identifier; rows of a run form one curve
    params                 required  parameter count N (> 0)
    flops_per_interaction  optional  forward FLOPs per interaction (empty = unknown)
    seed                   optional  integer seed
    interactions           required  environment interactions at the log point
    score                  required  mean return / accuracy at the log point
    any other column       optional  numeric hyperparameters (e.g. lr, gamma; empty = not
                                     set); runs that differ in them are not averaged together

Without a run column, rows are grouped by (params, flops_per_interaction, seed, the other
columns). Within a curve, rows are sorted by interactions.

JSON: {"curves": [{"params": N, "interactions": [...], "score": [...], "seed": s,
"flops_per_interaction": F, "hparams": {"lr": ...}}, ...]} (or the bare list); seed,
flops_per_interaction and hparams are optional.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fitting.curves import LearningCurve

REQUIRED = ("params", "interactions", "score")
KNOWN = ("run", "params", "flops_per_interaction", "seed", "interactions", "score")


def read_curves(path: str | Path) -> list[LearningCurve]:
    """Learning curves from a .csv or .json file (formats in the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no curves file at {p}")
    if p.suffix.lower() == ".csv":
        return _read_csv(p)
    if p.suffix.lower() == ".json":
        return _read_json(p)
    raise ValueError(f"{p}: expected a .csv or .json file of learning curves")


def _number(value: str, column: str, where: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"{where}: column {column!r} has non-numeric value {value!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{where}: column {column!r} is {value!r}; values must be finite")
    return x


def _read_csv(p: Path) -> list[LearningCurve]:
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise ValueError(f"{p}: missing required column(s) {missing}; found {columns}")
        extra = [c for c in columns if c not in KNOWN]
        runs: dict[tuple, list[tuple[float, float]]] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{p}:{line}"
            params = _number(row["params"], "params", where)
            flops_raw = (row.get("flops_per_interaction") or "").strip()
            flops = _number(flops_raw, "flops_per_interaction", where) if flops_raw else None
            seed_raw = (row.get("seed") or "").strip()
            seed = int(_number(seed_raw, "seed", where)) if seed_raw else None
            hparams = tuple((c, _number(row[c], c, where)) for c in extra
                            if (row[c] or "").strip())
            key = (row.get("run") or "", params, flops, seed, hparams)
            point = (_number(row["interactions"], "interactions", where),
                     _number(row["score"], "score", where))
            runs.setdefault(key, []).append(point)
    if not runs:
        raise ValueError(f"{p}: no rows")
    curves = []
    for (run, params, flops, seed, hparams), points in runs.items():
        points.sort()
        e, r = np.array(points).T
        try:
            curves.append(LearningCurve(params, e, r, seed=seed, flops_per_interaction=flops,
                                        hparams=dict(hparams)))
        except ValueError as err:
            raise ValueError(f"{p}: run {run or (params, seed)}: {err}") from None
    return curves


def _read_json(p: Path) -> list[LearningCurve]:
    doc = json.loads(p.read_text())
    items = doc.get("curves") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not items:
        raise ValueError(f"{p}: expected a non-empty list of curves (or {{'curves': [...]}})")
    curves = []
    for i, c in enumerate(items):
        if not isinstance(c, dict):
            raise ValueError(f"{p}: curves[{i}] is not an object")
        missing = [k for k in REQUIRED if k not in c]
        if missing:
            raise ValueError(f"{p}: curves[{i}] lacks {missing}")
        try:
            curves.append(LearningCurve(c["params"], c["interactions"], c["score"],
                                        seed=c.get("seed"),
                                        flops_per_interaction=c.get("flops_per_interaction"),
                                        hparams=c.get("hparams")))
        except ValueError as err:
            raise ValueError(f"{p}: curves[{i}]: {err}") from None
    return curves


def write_curves_csv(curves: Sequence[LearningCurve], path: str | Path) -> None:
    """Write curves in the CSV long format (a run column numbers the curves)."""
    extra = sorted({k for c in curves for k in c.hparams})
    with Path(path).open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*KNOWN, *extra])
        for i, c in enumerate(curves):
            fixed = [i, repr(c.params),
                     "" if c.flops_per_interaction is None else repr(c.flops_per_interaction),
                     "" if c.seed is None else c.seed]
            hp = [repr(float(c.hparams[k])) if k in c.hparams else "" for k in extra]
            for e, r in zip(c.interactions, c.score, strict=True):
                w.writerow([*fixed, repr(float(e)), repr(float(r)), *hp])


def write_curves_json(curves: Sequence[LearningCurve], path: str | Path) -> None:
    """Write curves in the JSON format of the module docstring."""
    doc = {"curves": [{"params": c.params, "interactions": c.interactions.tolist(),
                       "score": c.score.tolist(), "seed": c.seed,
                       "flops_per_interaction": c.flops_per_interaction,
                       "hparams": dict(c.hparams)} for c in curves]}
    Path(path).write_text(json.dumps(doc))
