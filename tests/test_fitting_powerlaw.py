"""The joint power-law fit on synthetic curves with known constants and score maps."""

import json
import warnings

import numpy as np
import pytest

from fitting import FitWarning, LearningCurve, fit_power_law, synthetic

DESIGN = synthetic.default_design(num_sizes=6, num_points=60, seeds=1)
FAST = dict(starts=16)  # one static configuration, so the fit compiles once per test run


class SquaredLogistic:
    """A non-logistic monotone score map: score = 10·sigmoid((ln I - c)/w)²."""

    def __init__(self, center, width):
        self.center, self.width, self.low, self.high = center, width, 0.0, 10.0

    def __call__(self, y):
        return 10.0 / (1.0 + np.exp(-(np.asarray(y) - self.center) / self.width)) ** 2

    def inverse(self, score):
        p = np.sqrt(np.asarray(score) / 10.0)
        return self.center + self.width * np.log(p / (1 - p))


def _quiet_fit(curves, **kw):
    """A fit that must raise no FitWarning except "flat" (a tiny model's true plateau)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitWarning)
        warnings.filterwarnings("ignore", message=".* is flat", category=FitWarning)
        return fit_power_law(curves, **FAST, **kw)


def _case(a_n, a_e, squared=False, design=DESIGN, noise=0.0, seed=0):
    true = synthetic.law_for_design(a_n, a_e, design)
    g = synthetic.logistic_map_for(true, design)
    if squared:
        g = SquaredLogistic(g.center, g.width)
    return true, g, synthetic.make_curves(true, design, noise=noise, score_map=g, seed=seed)


@pytest.mark.parametrize("a_n,a_e,squared", [(0.6, 0.4, False), (0.3, 0.9, False),
                                             (0.5, 0.5, True)])
def test_recovers_known_constants_from_noiseless_curves(a_n, a_e, squared):
    true, g, curves = _case(a_n, a_e, squared)
    fit = _quiet_fit(curves)
    assert fit.converged
    assert fit.alpha_N == pytest.approx(a_n, abs=0.02)
    assert fit.alpha_E == pytest.approx(a_e, abs=0.02)
    assert fit.size_exponent == pytest.approx(a_e / (a_n + a_e), abs=0.01)
    assert np.log(fit.N_c / true.N_c) == pytest.approx(0, abs=0.3)
    assert np.log(fit.E_c / true.E_c) == pytest.approx(0, abs=0.3)
    # the fitted map f: score -> ln I against the true map's inverse, inside the data
    inner = fit.score_knots[2:-2]
    np.testing.assert_allclose(np.log(fit.intrinsic(inner)), g.inverse(inner), atol=0.1)


def test_recovers_constants_from_noisy_seeds_with_bootstrap():
    design = synthetic.default_design(num_sizes=6, num_points=60, seeds=3)
    _, _, curves = _case(0.4, 0.6, design=design, noise=0.03, seed=4)
    fit = fit_power_law(curves, bootstrap=16, **FAST)
    assert fit.converged and fit.resample_unit == "seeds"
    assert fit.alpha_N == pytest.approx(0.4, abs=0.06)
    assert fit.alpha_E == pytest.approx(0.6, abs=0.06)
    assert fit.bootstrap_ok.sum() >= 14
    for name in ("alpha_N", "alpha_E", "size_exponent"):
        lo, hi = fit.intervals[name]
        assert lo < hi
        assert lo - 0.02 <= getattr(fit, name) <= hi + 0.02


def test_constants_do_not_depend_on_k_and_frontier_is_compute():
    _, _, curves = _case(0.6, 0.4)
    a, b = _quiet_fit(curves, k=1.0), _quiet_fit(curves, k=1000.0)
    for name in ("alpha_N", "alpha_E", "size_exponent"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-6)
    assert 1000.0 * b.N_c * b.E_c == pytest.approx(a.N_c * a.E_c, rel=1e-6)
    scores = np.linspace(a.score_knots[1], a.score_knots[-2], 7)
    np.testing.assert_allclose(b.intrinsic(scores), 1000.0 * a.intrinsic(scores), rtol=1e-6)
    # brute force: the maximum over N of the fitted I(N, C/(kN)) is C
    for fit in (a, b):
        n = np.geomspace(1e-6, 1e12, 400_001)
        for c in (1e9, 1e12):
            assert np.max(fit.predict(n, c / (fit.k * n))) == pytest.approx(c, rel=1e-6)


def test_fitted_map_is_monotone_and_optimal_size_scales():
    _, _, curves = _case(0.3, 0.9)
    fit = _quiet_fit(curves)
    assert np.all(np.diff(fit.log_intrinsic_knots) > 0)
    grid = np.linspace(*fit.score_range, 200)
    assert np.all(np.diff(fit.intrinsic(grid)) > 0)
    lo, hi = fit.score_range
    assert np.isnan(fit.intrinsic([lo - 1e-3, hi + 1e-3])).all()
    np.testing.assert_allclose(fit.predict_score(1e4, 1e6),
                               grid[np.argmin(np.abs(fit.intrinsic(grid) - fit.predict(1e4, 1e6)))],
                               atol=(hi - lo) / 100)
    c = np.array([1e10, 1e12])
    slope = np.diff(np.log(fit.optimal_params(c))) / np.diff(np.log(c))
    assert slope[0] == pytest.approx(fit.size_exponent, rel=1e-9)
    doc = json.loads(json.dumps(fit.to_dict()))
    assert doc["alpha_N"] == fit.alpha_N and doc["converged"] is True


def test_one_or_two_model_sizes_is_an_error():
    e = np.linspace(1e4, 1e6, 30)
    one = [LearningCurve(100, e, np.log(e), seed=s) for s in range(3)]
    with pytest.raises(ValueError, match="at least 3 model sizes"):
        fit_power_law(one)
    two = one + [LearningCurve(200, e, np.log(e) + 1)]
    with pytest.raises(ValueError, match="at least 3 model sizes"):
        fit_power_law(two)
    with pytest.raises(ValueError, match="flops_per_interaction"):
        fit_power_law(two + [LearningCurve(300, e, np.log(e) + 2)], size="flops")
    with pytest.raises(ValueError, match="identical"):
        fit_power_law([LearningCurve(n, e, np.ones(e.size)) for n in (1, 2, 3)])


def test_bad_curves_and_non_convergence_are_flagged():
    _, _, curves = _case(0.6, 0.4)
    e = curves[0].interactions
    odd = [*curves[:4], LearningCurve(curves[4].params, e, np.full(e.size, 0.5)),
           LearningCurve(curves[5].params, e, np.linspace(0.9, 0.1, e.size))]
    with pytest.warns(FitWarning) as record:
        fit = fit_power_law(odd, **FAST)
    messages = " ".join(str(w.message) for w in record)
    assert f"params={curves[4].params:g} is flat" in messages
    assert f"params={curves[5].params:g} is not monotone" in messages
    assert any("flat" in w for w in fit.warnings)
    # every size learns identically: alpha_N is not determined (it runs off to 0)
    same = [LearningCurve(c.params, e, curves[-1].score) for c in curves]
    with pytest.warns(FitWarning, match="not identifiable|did not converge"):
        flagged = fit_power_law(same, **FAST)
    assert not flagged.converged
