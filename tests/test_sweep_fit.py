"""Fit hook: a run directory's valid points become the right learning curves, per experiment,
and a synthetic sweep with a known law fits back to it (best lr per size chosen)."""

import json
import math

import numpy as np
import pytest

from fitting import synthetic
from scalelab.sweep.fit import curves_from_run, fit_run_dir
from scalelab.sweep.rundir import RunDir

SPEC = """
[env]
name = "CartPole-v1"
[network]
family = "mlp"
[budget]
interactions = 100_000
[lr]
base = 1e-3
[axes]
width = [0.25, 0.5, 1.0, 2.0, 4.0]
seed = [0, 1]
lr_scale = [0.5, 1.0]
"""


def _write_run(tmp_path, curves_by_size, gammas=(None,), spoil=None):
    """A run directory whose members follow the given curves; lr_scale 0.5 scores 0.2 lower.

    spoil: member index whose rows from the 5th on are invalid (a fault), with one NaN score.
    """
    spec = SPEC if gammas == (None,) else SPEC + f"gamma = {list(gammas)}\n"
    members, rows, index = [], [], 0
    for size, curves in enumerate(curves_by_size):
        for seed, curve in enumerate(curves):
            for lr_scale in (0.5, 1.0):
                for gamma in gammas:
                    m = {"member": index, "group": 0, "params": int(curve.params),
                         "flops_per_interaction": 2 * int(curve.params), "seed": seed,
                         "lr": 1e-3 * lr_scale, "lr_scale": lr_scale, "width": size,
                         "depth": None, "gamma": gamma if gamma is not None else 0.99,
                         "gae_lambda": 0.95, "status": "ok", "fault_update": None}
                    members.append(m)
                    for u, (e, r) in enumerate(zip(curve.interactions, curve.score, strict=True)):
                        score = float(r) - (0.2 if lr_scale == 0.5 else 0.0)
                        valid = not (index == spoil and u >= 4)
                        if index == spoil and u == 2:
                            score = math.nan
                        rows.append({"run": index, **m, "update": u + 1,
                                     "interactions": int(e), "score": score, "valid": valid})
                    index += 1
    rd = RunDir(tmp_path / "run")
    rd.create(spec, {}, {"members": members})
    rd.append_metrics(rows, [])
    return rd


def _design(num_points=40):
    design = synthetic.default_design(num_sizes=5, base_params=1e4, num_points=num_points,
                                      max_interactions=1e6, seeds=2)
    law = synthetic.law_for_design(0.6, 0.4, design)
    curves = synthetic.make_curves(law, design, noise=0.01, seed=0)
    return [curves[2 * i: 2 * i + 2] for i in range(5)]


def test_curves_from_run_partitions_by_gamma_and_drops_invalid_points(tmp_path):
    by_size = _design(num_points=8)
    rd = _write_run(tmp_path, by_size, gammas=(0.9, 0.99), spoil=3)
    parts = curves_from_run(rd.path)
    assert sorted(parts) == [(("gamma", 0.9),), (("gamma", 0.99),)]
    for (key,), curves in parts.items():
        assert len(curves) == 5 * 2 * 2
        assert {c.hparams["gamma"] for c in curves} == {key[1]}
        assert {c.hparams["lr_scale"] for c in curves} == {0.5, 1.0}
    manifest = {m["member"]: m for m in rd.read_manifest()["members"]}
    spoiled = manifest[3]
    got = [c for c in parts[(("gamma", spoiled["gamma"]),)]
           if c.params == spoiled["params"] and c.seed == spoiled["seed"]
           and c.hparams["lr_scale"] == spoiled["lr_scale"]]
    assert len(got) == 1
    src = by_size[spoiled["width"]][spoiled["seed"]]
    keep = [0, 1, 3]  # rows 5.. invalid, row 3 NaN
    np.testing.assert_array_equal(got[0].interactions, src.interactions[keep].astype(int))
    penalty = 0.2 if spoiled["lr_scale"] == 0.5 else 0.0
    np.testing.assert_allclose(got[0].score, src.score[keep] - penalty, rtol=1e-15)
    assert got[0].flops_per_interaction == 2 * spoiled["params"]


def test_fit_run_dir_recovers_the_law_with_the_best_lr_per_size(tmp_path):
    rd = _write_run(tmp_path, _design())
    summary = fit_run_dir(rd.path, bootstrap=0, starts=16, make_plots=False)
    fit, out = summary["fits"][""]
    assert out == rd.path
    report = json.loads((rd.path / "fit.json").read_text())
    assert report["curves"] == 5 * 2 * 2 and report["curves_fitted"] == 5 * 2
    assert fit.alpha_N == pytest.approx(0.6, abs=0.1)
    assert fit.alpha_E == pytest.approx(0.4, abs=0.1)


def test_fit_run_dir_refuses_a_folder_without_a_sweep(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        fit_run_dir(tmp_path)
