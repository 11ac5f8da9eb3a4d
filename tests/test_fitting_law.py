"""Closed forms of the power law against brute-force numerical optimisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fitting import law, synthetic
from fitting.objective import law_y, unpack

PAIRS = [(0.6, 0.4), (0.3, 0.9), (1.2, 0.5)]


def _brute_force_frontier(a_n, a_e, n_c, e_c, k, log_c):
    """max over a fine ln N grid of ln I(N, C/(kN)), and the argmax N."""
    log_n = np.linspace(-40, 60, 200_001)
    log_i = law.log_intrinsic(np.exp(log_n), np.exp(log_c - np.log(k) - log_n), a_n, a_e,
                              n_c, e_c)
    j = int(np.argmax(log_i))
    return log_i[j], log_n[j]


def test_beta_formula():
    assert law.beta(0.6, 0.4) == pytest.approx(0.6 * 0.4 / 1.0)
    assert law.size_exponent(0.3, 0.9) == pytest.approx(0.75)


@pytest.mark.parametrize("a_n,a_e", PAIRS)
@pytest.mark.parametrize("k", [1.0, 6.0])
def test_frontier_of_constrained_law_is_compute(a_n, a_e, k):
    n_c, e_c = law.constants_from_ratio(a_n, a_e, log_ratio=-3.0, k=k)
    for log_c in (np.log(1e9), np.log(1e14)):
        best, _ = _brute_force_frontier(a_n, a_e, n_c, e_c, k, log_c)
        assert best == pytest.approx(log_c, abs=1e-6)


@pytest.mark.parametrize("a_n,a_e", PAIRS)
def test_frontier_interactions_make_the_size_compute_optimal(a_n, a_e):
    n_c, e_c = law.constants_from_ratio(a_n, a_e, log_ratio=1.0, k=2.0)
    for n in (1e3, 1e6):
        log_e = law.log_frontier_interactions(n, a_n, a_e, n_c, e_c, k=2.0)
        _, log_n_opt = _brute_force_frontier(a_n, a_e, n_c, e_c, 2.0, np.log(2.0 * n) + log_e)
        assert log_n_opt == pytest.approx(np.log(n), abs=1e-3)


@pytest.mark.parametrize("a_n,a_e", PAIRS)
def test_optimal_size_matches_brute_force(a_n, a_e):
    n_c, e_c = law.constants_from_ratio(a_n, a_e, log_ratio=2.0, k=3.0)
    log_cs = np.log([1e10, 1e13, 1e16])
    argmax = np.array([_brute_force_frontier(a_n, a_e, n_c, e_c, 3.0, c)[1] for c in log_cs])
    slope = np.polyfit(log_cs, argmax, 1)[0]
    assert slope == pytest.approx(law.size_exponent(a_n, a_e), abs=1e-3)
    closed = np.log(law.optimal_params(np.exp(log_cs), a_n, a_e, n_c, e_c, k=3.0))
    np.testing.assert_allclose(closed, argmax, atol=2e-3)


def test_synthetic_law_from_optimum():
    true = synthetic.SyntheticLaw.from_optimum(0.5, 0.7, C_ref=1e12, N_opt_ref=3e4, k=2.0)
    assert np.log(true.k * true.N_c * true.E_c) == pytest.approx(
        law.frontier_log_kNcEc(0.5, 0.7))
    _, log_n = _brute_force_frontier(0.5, 0.7, true.N_c, true.E_c, 2.0, np.log(1e12))
    assert log_n == pytest.approx(np.log(3e4), abs=2e-3)


def test_centred_objective_law_matches_physical_law():
    """law_y in centred units + ln(k N0 E0) equals law.log_intrinsic with unpacked N_c, E_c."""
    rng = np.random.default_rng(0)
    log_n0, log_e0, log_k = 9.0, 14.0, np.log(5.0)
    u = rng.uniform(-3, 3, 5)
    v = rng.uniform(-2, 2, (5, 7))
    for _ in range(5):
        theta = np.concatenate([rng.uniform(-1.5, 0.5, 2), rng.uniform(-3, 3, 1)])
        with jax.enable_x64(True):
            y = np.asarray(law_y(jnp.asarray(theta), jnp.asarray(u), jnp.asarray(v)))
        c = unpack(theta, log_n0, log_e0, log_k)
        expected = law.log_intrinsic(np.exp(u + log_n0)[:, None], np.exp(v + log_e0),
                                     c["alpha_N"], c["alpha_E"], np.exp(c["log_N_c"]),
                                     np.exp(c["log_E_c"]))
        np.testing.assert_allclose(y + log_k + log_n0 + log_e0, expected, rtol=1e-10)
        assert log_k + c["log_N_c"] + c["log_E_c"] == pytest.approx(
            law.frontier_log_kNcEc(c["alpha_N"], c["alpha_E"]))
