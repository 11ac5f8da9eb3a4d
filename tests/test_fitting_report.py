"""`fitting.fit_run`: one call from a run directory to fit.json, with the size measure chosen."""

import json

import numpy as np
import pytest

from fitting import fit_run, load_run, synthetic
from fitting.curves import LearningCurve
from fitting.report import best_per_size, curve_area


def _run_dir(tmp_path, curves, lr_scales=(1.0,)):
    """A run directory whose members are `curves` at every lr_scale (a smaller one scores 0.1
    lower); policy_params = params / 2 and flops = 3·params (exact multiples, so every size
    measure gives the same exponents)."""
    members, rows = [], ["run,member,group,params,update,interactions,score,valid"]
    for i, (c, lr_scale) in enumerate((c, x) for c in curves for x in lr_scales):
        members.append({"member": i, "group": 0, "params": c.params,
                        "policy_params": c.params / 2, "flops_per_interaction": 3 * c.params,
                        "seed": c.seed, "lr": 1e-3 * lr_scale, "lr_scale": lr_scale,
                        "gamma": 0.9, "status": "ok", "fault_update": None})
        penalty = 0.1 * (lr_scale < max(lr_scales))
        rows += [f"{i},{i},0,{c.params},{u},{float(e)!r},{float(r) - penalty!r},1"
                 for u, (e, r) in enumerate(zip(c.interactions, c.score, strict=True))]
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"members": members}))
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    return run


def test_fit_run_on_a_run_dir_with_each_size_measure(tmp_path):
    design = synthetic.default_design(num_sizes=6, num_points=60, seeds=2)
    truth = synthetic.law_for_design(0.5, 0.7, design)
    run = _run_dir(tmp_path, synthetic.make_curves(truth, design, noise=0.01, seed=0),
                   lr_scales=(0.5, 1.0))
    fits = {}
    for size in ("params", "policy_params", "flops"):
        report = fit_run(run, tmp_path / size, size=size, bootstrap=0, starts=16,
                         make_plots=False)
        (exp,) = report.experiments
        fits[size] = exp.fit
        doc = json.loads((tmp_path / size / "fit.json").read_text())
        assert doc["power_law"]["size"] == size
        assert (doc["curves"], doc["curves_fitted"]) == (24, 12)  # the better lr per size
        assert {c.hparams["lr_scale"] for c in best_per_size(load_run(run))} == {1.0}
        assert doc["power_law"]["status"] == exp.fit.status
    # N measured in units c times larger is the same law: same exponents, and at compute c·C
    # the optimal size is c times the optimal size at C
    compute = np.array([1e9, 1e11])
    for size, factor in (("policy_params", 0.5), ("flops", 3.0)):
        assert fits[size].size_exponent == pytest.approx(fits["params"].size_exponent, abs=1e-4)
        np.testing.assert_allclose(fits[size].optimal_params(factor * compute),
                                   factor * fits["params"].optimal_params(compute), rtol=1e-2)
    assert fits["params"].size_exponent == pytest.approx(0.7 / 1.2, abs=0.03)
    report = fit_run(run, bootstrap=0, starts=16, make_plots=True)
    assert (run / "fit.json").is_file() and (run / "optimal_size.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="policy_params"):
        fit_run(synthetic.make_curves(truth, design, seed=0), tmp_path / "x",
                size="policy_params", bootstrap=0)


def test_fit_run_splits_by_gamma_and_tests_the_exponent_against_the_horizon(tmp_path):
    design = synthetic.default_design(num_sizes=6, num_points=60, seeds=2)
    base = synthetic.law_for_design(0.5, 0.7, design)
    score_map = synthetic.logistic_map_for(base, design)
    curves = []
    for gamma, frontier in ((0.5, 1 / 8), (0.75, 1 / 4)):  # a longer horizon needs more E
        truth = synthetic.law_for_design(0.5, 0.7, design, frontier_fraction=frontier)
        curves += [synthetic.LearningCurve(c.params, c.interactions, c.score, seed=c.seed,
                                           hparams={"gamma": gamma})
                   for c in synthetic.make_curves(truth, design, noise=0.01,
                                                  score_map=score_map, seed=int(gamma * 8))]
    report = fit_run(curves, tmp_path, bootstrap=8, starts=16, make_plots=False,
                     horizon_target=0.2)
    assert [e.label for e in report.experiments] == ["gamma=0.5", "gamma=0.75"]
    for e in report.experiments:
        assert (tmp_path / f"fit_{e.label}" / "fit.json").is_file()
        assert e.fit.size_exponent == pytest.approx(0.7 / 1.2, abs=0.03)
    study = report.horizon
    assert set(study.horizons) == {2.0, 4.0} and study.horizons.size >= 8
    both = {n for n in study.sizes if {2.0, 4.0} <= set(study.horizons[study.sizes == n])}
    assert set(study.per_size) == both and len(both) >= 4
    change = report.exponent_change
    np.testing.assert_array_equal(change.horizons, [2.0, 4.0])
    summary = json.loads((tmp_path / "fit.json").read_text())
    assert set(summary["experiments"]) == {"gamma=0.5", "gamma=0.75"}
    assert summary["exponent_change"]["changes"] == change.changes
    assert len(summary["horizon"]["per_size"]) == len(both)


def test_the_best_lr_is_the_best_curve_over_ln_e_not_the_best_last_point():
    e = np.geomspace(1e3, 1e6, 61)
    slow = np.clip(0.15 * np.log10(e / 1e3) + 0.1, 0, 0.6)  # reaches 0.6 at E = 1e6 only
    fast = np.clip(0.3 * np.log10(e / 1e3) + 0.1, 0, 0.59)  # 0.59 from E = 5e4 on
    # a score linear in ln E averages to its value at the middle of the ln E range
    dense = np.geomspace(1e3, 1e6, 601)
    assert curve_area(dense, np.log(dense)) == pytest.approx(np.log(1e3 * 1e6) / 2, abs=1e-3)
    curves = [LearningCurve(1000.0, e, s, seed=0, hparams={"lr_scale": lr})
              for lr, s in ((1.0, slow), (2.0, fast))]
    (kept,) = best_per_size(curves)
    assert kept.hparams == {"lr_scale": 2.0}
