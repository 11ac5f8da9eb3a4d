"""Learning-curve validation, preprocessing and the empirical frontier."""

import numpy as np
import pytest

from fitting import LearningCurve, empirical_intrinsic
from fitting.curves import bin_points, group_curves, point_weights, prepare, smooth_scores


@pytest.mark.parametrize("kwargs,message", [
    (dict(params=10, interactions=[1, 2, 2], score=[0, 1, 2]), "strictly increasing"),
    (dict(params=10, interactions=[3, 2, 4], score=[0, 1, 2]), "strictly increasing"),
    (dict(params=10, interactions=[1, 2, 3], score=[0, np.nan, 2]), r"score\[1\] is nan"),
    (dict(params=10, interactions=[1, 2, 3], score=[0, 1]), "3 points but score has 2"),
    (dict(params=-5, interactions=[1, 2], score=[0, 1]), "params must be finite and > 0"),
    (dict(params=10, interactions=[0, 2], score=[0, 1]), "interactions must be finite and > 0"),
    (dict(params=10, interactions=[1], score=[0]), "at least 2 points"),
    (dict(params=10, interactions=[1, 2], score=[0, 1], flops_per_interaction=0),
     "flops_per_interaction"),
])
def test_learning_curve_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LearningCurve(**kwargs)


def test_seeds_of_a_size_are_grouped_on_common_interactions():
    a = LearningCurve(10, [1, 2, 3, 4], [0, 1, 2, 3], seed=0)
    b = LearningCurve(10, [2, 3, 4, 5], [5, 6, 7, 8], seed=1)
    c = LearningCurve(20, [1, 2], [1, 1], seed=0)
    groups = group_curves([c, a, b])
    assert [g.params for g in groups] == [10, 20]
    np.testing.assert_array_equal(groups[0].interactions, [2, 3, 4])
    np.testing.assert_array_equal(groups[0].scores.mean(0), [3, 4, 5])


def test_local_linear_smoothing_keeps_lines_and_reduces_noise():
    e = np.linspace(1e3, 1e6, 400)
    line = 0.2 + 0.05 * np.log(e)
    np.testing.assert_allclose(smooth_scores(e, line, 0.1), line, atol=1e-10)
    noise = np.random.default_rng(0).normal(0, 0.05, e.size)
    late = e > 1e5
    smoothed = smooth_scores(e, line + noise, 0.1)
    assert np.std((smoothed - line)[late]) < 0.3 * np.std(noise[late])
    np.testing.assert_array_equal(smooth_scores(e, line + noise, 0.0), line + noise)


def test_point_weights_are_proportional_to_inverse_interactions_for_even_logs():
    e = np.linspace(100, 10_000, 100)
    w = point_weights(e)
    np.testing.assert_allclose(w * e, w[0] * e[0])


def test_binning_preserves_weight_and_weighted_means():
    rng = np.random.default_rng(1)
    e = np.sort(rng.uniform(1, 1000, 300))
    r = rng.normal(size=(2, 300))
    w = rng.uniform(0.5, 1.5, 300)
    eb, rb, wb = bin_points(e, r, w, 0.1)
    assert wb.sum() == pytest.approx(w.sum())
    np.testing.assert_allclose(rb @ wb, r @ w)
    assert np.sum(wb * np.log(eb)) == pytest.approx(np.sum(w * np.log(e)))
    assert np.all(np.diff(np.log(eb)) > 0) and eb.size < e.size


def test_prepare_excludes_early_training():
    e = np.linspace(1, 640, 640)
    curve = LearningCurve(5, e, np.log(e))
    prep = prepare([curve, LearningCurve(7, e, np.log(e))], exclude_fraction=1 / 64,
                   bin_width=0.0)
    kept = prep.interactions[0][prep.weight[0] > 0]
    assert kept.min() == 10 and kept.size == 631


def test_prepare_flags_flat_and_non_monotone_curves():
    e = np.linspace(1e3, 1e5, 100)
    rising = [LearningCurve(n, e, np.log(e) * n / 10) for n in (10, 20)]
    flat = LearningCurve(30, e, np.full(e.size, 3.0))
    falling = LearningCurve(40, e, np.log(e)[::-1])
    notes = prepare([*rising, flat, falling]).warnings
    assert any("params=30 is flat" in n for n in notes)
    assert any("params=40 is not monotone" in n for n in notes)
    assert not any("params=10" in n or "params=20" in n for n in notes)
    with pytest.raises(ValueError, match="identical"):
        prepare([LearningCurve(n, e, np.ones(e.size)) for n in (1, 2, 3)])


def _brute_force_frontier(curves, levels, k):
    """Average seeds per size, then for each level the least k·N·E over all logged points
    that reach it (a double loop over sizes and points)."""
    sizes = sorted({c.params for c in curves})
    best = np.full(len(levels), np.inf)
    for n in sizes:
        mine = [c for c in curves if c.params == n]
        mean = np.mean([c.score for c in mine], axis=0)
        for j, level in enumerate(levels):
            for e, r in zip(mine[0].interactions, mean, strict=True):
                if r >= level:
                    best[j] = min(best[j], k * n * e)
                    break
    return best


def test_empirical_frontier_matches_brute_force():
    rng = np.random.default_rng(2)
    e = np.linspace(1e3, 1e5, 50)
    curves = [LearningCurve(n, e, 1 - np.exp(-e * n / 3e6) + rng.normal(0, 0.05, e.size),
                            seed=s) for n in (30, 100, 300, 1000) for s in range(2)]
    levels = np.linspace(-0.1, 1.1, 61)
    front = empirical_intrinsic(curves, k=2.0, levels=levels, smooth=0.0)
    np.testing.assert_array_equal(front.compute, _brute_force_frontier(curves, levels, 2.0))
    reached = np.isfinite(front.compute)
    assert not reached.all() and reached.any()
    implied_e = front.compute[reached] / (2.0 * front.size[reached])
    assert np.all(np.min(np.abs(implied_e[:, None] / e[None, :] - 1), axis=1) < 1e-12)
