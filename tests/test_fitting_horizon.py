"""Horizon fits and interactions-to-target."""

from types import SimpleNamespace

import numpy as np
import pytest

from fitting import LearningCurve, fit_horizon, horizon_from_gamma, interactions_to_reach
from fitting.horizon import exponent_change, fit_horizons


def test_fit_horizon_recovers_an_affine_law():
    h = horizon_from_gamma([0.5, 0.9, 0.95, 0.99])
    np.testing.assert_allclose(h, [2, 10, 20, 100])
    e = 3e5 + 4e3 * h
    fit = fit_horizon(h, e)
    assert fit.intercept == pytest.approx(3e5) and fit.slope == pytest.approx(4e3)
    assert fit.r2 == pytest.approx(1.0)
    noisy = e + np.array([1e4, -1e4, 1e4, -1e4])
    slope, intercept = np.polyfit(h, noisy, 1)
    fit = fit_horizon(h, noisy)
    assert fit.slope == pytest.approx(slope) and fit.intercept == pytest.approx(intercept)
    assert fit.r2 < 1.0


def test_interactions_to_reach_interpolates_first_crossing():
    c = LearningCurve(10, [100, 200, 300, 400], [0.1, 0.3, 0.7, 0.5])
    assert interactions_to_reach(c, 0.5) == pytest.approx(250.0)
    assert interactions_to_reach(c, 0.05) == 100.0
    assert np.isnan(interactions_to_reach(c, 0.8))


def test_horizon_bad_input():
    with pytest.raises(ValueError, match="never reached"):
        fit_horizon([1, 2, 3], [1.0, np.nan, 3.0])
    with pytest.raises(ValueError, match="2 distinct horizons"):
        fit_horizon([5, 5, 5], [1, 2, 3])
    with pytest.raises(ValueError, match="gamma"):
        horizon_from_gamma([0.5, 1.0])


def test_plot_horizon_returns_and_saves_a_figure(tmp_path):
    from matplotlib.figure import Figure

    from fitting import plots

    h = np.array([2.0, 10.0, 20.0, 100.0])
    fit = fit_horizon(h, 1e5 + 2e3 * h)
    fig = plots.plot_horizon(h, 1e5 + 2e3 * h, fit, target=0.9, save=tmp_path / "h.png")
    assert isinstance(fig, Figure) and (tmp_path / "h.png").stat().st_size > 10_000


E = np.linspace(2e3, 4e5, 200)
HORIZONS = np.array([1.0, 2.0, 4.0, 8.0, 16.0])


def _horizon_curves(intercept, slope, params, seeds=5, noise=0.03, seed=0):
    """Curves 1 - exp(-E/tau) with tau set so the noiseless curve reaches 0.8 at
    E = intercept + slope·h, for every horizon; Gaussian noise per point."""
    rng = np.random.default_rng(seed)
    curves = []
    for h in HORIZONS:
        tau = (intercept + slope * h) / np.log(5.0)
        for s in range(seeds):
            score = 1 - np.exp(-E / tau) + noise * rng.standard_normal(E.size)
            curves.append(LearningCurve(params, E, score, seed=s,
                                        hparams={"gamma": 1 - 1 / h}))
    return curves


def test_smoothed_horizon_fit_recovers_slope_and_intercept_within_intervals():
    curves = (_horizon_curves(2e4, 4e3, params=1e3, seed=21)
              + _horizon_curves(1e4, 2e3, params=4e3, seed=22))
    study = fit_horizons(curves, 0.8, bootstrap=200, seed=0)
    assert sorted(study.per_size) == [1e3, 4e3]
    for params, (a, b) in {1e3: (2e4, 4e3), 4e3: (1e4, 2e3)}.items():
        fit = study.per_size[params]
        lo, hi = fit.intervals["slope"]
        assert lo <= b <= hi and hi - lo < 0.5 * b
        lo, hi = fit.intervals["intercept"]
        assert lo <= a <= hi
        assert fit.n == 5 and fit.resamples_used == 200
    # the pooled line is ordinary least squares over all ten crossings
    slope, intercept = np.polyfit(study.horizons, study.interactions, 1)
    assert study.pooled.slope == pytest.approx(slope) and study.pooled.n == 10
    assert study.pooled.intercept == pytest.approx(intercept)


def test_exponent_change_compares_the_trend_with_its_bootstrap_interval():
    rng = np.random.default_rng(0)
    h = [1.0, 4.0, 16.0]

    def fits(trend):
        return {hh: SimpleNamespace(size_exponent=0.6 + trend * np.log(hh),
                                    bootstrap_samples={"size_exponent": 0.6 + trend * np.log(hh)
                                                       + 0.02 * rng.standard_normal(300)})
                for hh in h}

    flat = exponent_change(fits(0.0))
    assert not flat.changes and flat.interval[0] < 0 < flat.interval[1]
    moving = exponent_change(fits(0.05))
    assert moving.changes and "changes" in moving.reason
    assert moving.slope == pytest.approx(np.polyfit(np.log(h), moving.exponents, 1)[0])
    with pytest.raises(ValueError, match="2 or more"):
        exponent_change({1.0: fits(0.0)[1.0]})
