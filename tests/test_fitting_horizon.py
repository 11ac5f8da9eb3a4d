"""Horizon fits and interactions-to-target."""

import numpy as np
import pytest

from fitting import LearningCurve, fit_horizon, horizon_from_gamma, interactions_to_reach


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
