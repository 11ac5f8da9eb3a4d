"""The natural metric: CoinRun's fail-to-success ratio F = (10 - R)/R against intrinsic
performance, on synthetic curves whose score map makes F ∝ I^(-gamma) exactly."""

import json
import warnings

import numpy as np
import pytest

from fitting import FitWarning, fit_power_law, synthetic
from fitting.natural import fail_to_success, fit_natural

DESIGN = synthetic.default_design(num_sizes=6, num_points=60, seeds=2)
GAMMA = 0.45


def test_fail_to_success_ratio():
    np.testing.assert_allclose(fail_to_success([2.0, 5.0, 8.0]), [4.0, 1.0, 0.25])
    assert np.isnan(fail_to_success([0.0, 10.0])).all()


def test_fail_to_success_fit_recovers_a_known_exponent():
    truth = synthetic.law_for_design(0.5, 0.7, DESIGN)
    y = truth.log_intrinsic(DESIGN.sizes[:, None], DESIGN.interactions[None, :])
    # R = 10·sigmoid((ln I - c)/w)  ⇔  F = (10 - R)/R = exp(c/w)·I^(-1/w)
    score_map = synthetic.LogisticScoreMap(center=float(np.median(y)), width=1 / GAMMA,
                                           low=0.0, high=10.0)
    curves = synthetic.make_curves(truth, DESIGN, noise=0.01, score_map=score_map, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        fit = fit_power_law(curves, bootstrap=24, starts=16, seed=0)
    natural = fit_natural(fit, curves, metric="coinrun")
    assert natural.gamma == pytest.approx(GAMMA, abs=0.03)
    lo, hi = natural.interval
    assert lo <= GAMMA <= hi
    assert natural.r2 > 0.99
    i = np.exp(score_map.center)
    assert natural.predict(i) == pytest.approx(1.0, rel=0.3)  # F = 1 at R = 5
    with pytest.raises(ValueError, match="unknown natural metric"):
        fit_natural(fit, curves, metric="starpilot")


def test_fit_run_writes_the_natural_fit(tmp_path):
    from fitting import fit_run

    truth = synthetic.law_for_design(0.5, 0.7, DESIGN)
    y = truth.log_intrinsic(DESIGN.sizes[:, None], DESIGN.interactions[None, :])
    score_map = synthetic.LogisticScoreMap(center=float(np.median(y)), width=1 / GAMMA,
                                           low=0.0, high=10.0)
    curves = synthetic.make_curves(truth, DESIGN, noise=0.01, score_map=score_map, seed=3)
    report = fit_run(curves, tmp_path, natural="coinrun", bootstrap=8, starts=16,
                     make_plots=False)
    doc = json.loads((tmp_path / "fit.json").read_text())
    assert doc["natural"]["gamma"] == pytest.approx(GAMMA, abs=0.03)
    assert report.experiments[0].natural.gamma == doc["natural"]["gamma"]
