"""The bootstrap runs every resample to convergence and the fit says whether the data resolve
the law: synthetic sweeps with a known law, some of which never reach their frontier."""

import warnings

import numpy as np
import pytest

from fitting import FitWarning, fit_power_law, law, synthetic
from fitting.resolution import SizeReach, boundary_failures, verdict

DESIGN = synthetic.default_design(num_sizes=6, num_points=60, seeds=2)
A_N, A_E = 0.5, 0.7
TRUE_EXPONENT = A_E / (A_N + A_E)
# like sweeps/quickstart.toml before issue 13: 3 sizes (1k-14k params), 2 seeds, 80 log points
QUICKSTART = synthetic.Design(np.array([1.0e3, 3.6e3, 1.4e4]), np.linspace(2048, 163_840, 80),
                              seeds=2)


def _fit(curves, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return fit_power_law(curves, starts=16, **kw)


def _sweep(frontier_fraction, design=DESIGN, noise=0.02, seed=3):
    truth = synthetic.law_for_design(A_N, A_E, design, frontier_fraction=frontier_fraction)
    return truth, synthetic.make_curves(truth, design, noise=noise, seed=seed)


def test_sizes_that_never_reach_their_frontier_are_unresolved():
    # the smallest size's frontier point lies ~30x beyond the budget
    truth, curves = _sweep(frontier_fraction=240.0)
    true_ratio = DESIGN.interactions[-1] / np.exp(law.log_frontier_interactions(
        DESIGN.sizes, A_N, A_E, truth.N_c, truth.E_c))
    assert true_ratio.max() < 0.05
    fit = _fit(curves, bootstrap=24, seed=1)
    assert fit.status == "unresolved"
    assert "frontier" in fit.status_reason
    assert all(not r.reaches for r in fit.reach)
    assert any("unresolved" in w for w in fit.warnings)


def test_a_good_design_is_resolved_and_its_interval_covers_the_truth():
    truth, curves = _sweep(frontier_fraction=1 / 8)
    fit = _fit(curves, bootstrap=24, seed=1)
    assert fit.status == "resolved", fit.status_reason
    lo, hi = fit.intervals["size_exponent"]
    assert hi - lo <= 0.2 and lo <= TRUE_EXPONENT <= hi
    assert fit.bootstrap_ok.mean() >= 0.95
    # reach follows the fitted law's closed form E*(N), per size
    for r in fit.reach:
        e_star = np.exp(law.log_frontier_interactions(r.size, fit.alpha_N, fit.alpha_E,
                                                      fit.N_c, fit.E_c, fit.k))
        assert r.ratio == pytest.approx(DESIGN.interactions[-1] / e_star, rel=1e-9)
    assert sum(r.reaches for r in fit.reach) >= 2
    doc = fit.to_dict()
    assert doc["status"] == "resolved" and doc["status_reason"] == fit.status_reason


def test_bootstrap_converges_on_a_quickstart_design_and_repeats_exactly():
    _, curves = _sweep(frontier_fraction=1 / 8, design=QUICKSTART, noise=0.03, seed=1)
    a = _fit(curves, bootstrap=40, seed=7)
    assert a.bootstrap_ok.sum() >= 38  # >= 95%
    assert a.intervals is not None
    b = _fit(curves, bootstrap=40, seed=7)
    assert a.intervals == b.intervals
    np.testing.assert_array_equal(a.bootstrap_samples["size_exponent"],
                                  b.bootstrap_samples["size_exponent"])


def test_residual_bootstrap_with_one_seed_covers_the_truth():
    design = synthetic.Design(DESIGN.sizes, DESIGN.interactions, seeds=1)
    _, curves = _sweep(frontier_fraction=1 / 8, design=design, seed=5)
    fit = _fit(curves, bootstrap=24, seed=2)
    assert fit.resample_unit == "residual"
    lo, hi = fit.intervals["size_exponent"]
    assert lo < fit.size_exponent < hi and lo <= TRUE_EXPONENT <= hi


def _reach(*ratios):
    return tuple(SizeReach(float(i), 1.0, 1.0 / r, r, r >= 1) for i, r in enumerate(ratios))


def test_verdict_rules_and_messages():
    ok = dict(converged=True, problem=None, resamples=20)
    assert verdict(reach=_reach(3, 2, 0.5), resamples_converged=20, interval=(0.5, 0.6),
                   **ok)[0] == "resolved"
    status, reason = verdict(reach=_reach(3, 0.5, 0.5), resamples_converged=20,
                             interval=(0.5, 0.6), **ok)
    assert status == "weak" and "only 1 size" in reason
    status, reason = verdict(reach=_reach(3, 2, 1), resamples_converged=20, interval=(0.4, 0.7),
                             **ok)
    assert status == "weak" and "0.300 wide" in reason
    for converged_resamples in (0, 2, 18):
        status, reason = verdict(reach=_reach(3, 2), resamples_converged=converged_resamples,
                                 interval=None, **ok)
        assert status == "unresolved" and f"only {converged_resamples} of 20" in reason
    status, reason = verdict(converged=False, problem="not identifiable", reach=_reach(3, 2),
                             resamples=0, resamples_converged=0, interval=None)
    assert status == "unresolved" and "not identifiable" in reason


def test_design_checker_predicts_the_interval_of_a_design():
    good = synthetic.check_design(DESIGN.sizes, 2, float(DESIGN.interactions[-1]), (0.58, 0.58),
                                  alpha_sum=1.2, num_exponents=1, bootstrap=16)
    (trial,) = good.trials
    assert trial.true_exponent == pytest.approx(0.58)
    assert good.predicted_width <= 0.2 and good.resolved_fraction == 1.0
    assert trial.frontier_ratio > 1
    short = synthetic.check_design(DESIGN.sizes, 2, float(DESIGN.interactions[-1]),
                                   (0.58, 0.58), alpha_sum=1.2, num_exponents=1, bootstrap=16,
                                   frontier_fraction=240.0)
    assert short.resolved_fraction == 0.0 and short.trials[0].frontier_ratio < 0.05


def test_unconverged_resamples_are_described_by_the_boundary_they_ran_to():
    a_n = np.array([0.3, 1e-5, 2e-3, 0.4, 0.5])
    a_e = np.array([1.0, 0.9, 1.1, 1e-4, 1.2])
    ok = np.array([True, False, False, False, False])
    text = boundary_failures(a_n, a_e, ok)
    assert "of the 4 unconverged" in text
    assert "2 ran to alpha_N -> 0" in text and "1 ran to alpha_E -> 0" in text
    assert boundary_failures(a_n, a_e, np.ones(5, bool)) == ""
    # a converged resample at a small exponent is not counted as a failure
    assert "alpha_N" not in boundary_failures(a_n, a_e, np.array([1, 1, 1, 0, 0], bool))
    status, reason = verdict(converged=True, problem=None, reach=_reach(3, 2), resamples=5,
                             resamples_converged=1, interval=None, failures=text)
    assert status == "unresolved" and reason.endswith(text)


def test_seed_spread_measures_the_per_run_offset_and_widens_the_predicted_interval():
    design = synthetic.Design(DESIGN.sizes, DESIGN.interactions, seeds=8)
    truth = synthetic.law_for_design(A_N, A_E, design)
    curves = synthetic.make_curves(truth, design, noise=0.005, seed_noise=0.3, seed=1)
    fit = _fit(curves)
    # 6 sizes x 8 seeds: 42 degrees of freedom, a standard error of about 11%
    assert synthetic.seed_spread(fit, curves) == pytest.approx(0.3, rel=0.25)
    calm = synthetic.make_curves(truth, design, noise=0.005, seed=1)
    assert synthetic.seed_spread(_fit(calm), calm) < 0.05
    kw = dict(alpha_sum=1.2, num_exponents=1, bootstrap=16, noise=0.005)
    point = synthetic.check_design(DESIGN.sizes, 2, float(DESIGN.interactions[-1]),
                                   (0.58, 0.58), **kw)
    runs = synthetic.check_design(DESIGN.sizes, 2, float(DESIGN.interactions[-1]),
                                  (0.58, 0.58), seed_noise=0.3, **kw)
    assert runs.trials[0].width > 3 * point.trials[0].width
