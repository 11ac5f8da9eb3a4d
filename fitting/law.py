"""Closed forms of the intrinsic-performance power law (Hilton, Tang & Schulman 2023).

The law, with N the model size, E the interactions and I the intrinsic performance (compute
units, C = k·N·E):

    I^(-beta) = (N_c/N)^alpha_N + (E_c/E)^alpha_E,    beta = alpha_N·alpha_E / (alpha_N + alpha_E).

Maximising I over N at fixed compute C gives the frontier. With s = alpha_E/(alpha_N+alpha_E)
(the size exponent) and H(s) = -s·ln s - (1-s)·ln(1-s):

    max_N I(N, C/(kN)) = C · exp(-H(s)/beta) / (k·N_c·E_c),

so I = C on the frontier exactly when  ln(k·N_c·E_c) = -H(s)/beta.  The optimum is at

    N_opt(C) = [ (alpha_N/alpha_E) · N_c^alpha_N · (k·E_c)^(-alpha_E) ]^(1/(alpha_N+alpha_E)) · C^s.

These NumPy functions broadcast over their arguments.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def beta(alpha_N: ArrayLike, alpha_E: ArrayLike) -> np.ndarray:
    """beta = alpha_N·alpha_E / (alpha_N + alpha_E), the exponent that makes the frontier I = C."""
    a, b = np.asarray(alpha_N, float), np.asarray(alpha_E, float)
    return a * b / (a + b)


def size_exponent(alpha_N: ArrayLike, alpha_E: ArrayLike) -> np.ndarray:
    """s = alpha_E / (alpha_N + alpha_E): N_opt ∝ C^s."""
    a, b = np.asarray(alpha_N, float), np.asarray(alpha_E, float)
    return b / (a + b)


def frontier_log_kNcEc(alpha_N: ArrayLike, alpha_E: ArrayLike) -> np.ndarray:
    """ln(k·N_c·E_c) = -H(s)/beta: the value that puts the law's frontier exactly on I = C."""
    s = size_exponent(alpha_N, alpha_E)
    entropy = -(s * np.log(s) + (1.0 - s) * np.log1p(-s))
    return -entropy / beta(alpha_N, alpha_E)


def log_intrinsic(
    N: ArrayLike, E: ArrayLike, alpha_N: float, alpha_E: float, N_c: float, E_c: float
) -> np.ndarray:
    """ln I(N, E) = -(1/beta) · ln[(N_c/N)^alpha_N + (E_c/E)^alpha_E], computed with logaddexp.

    N: model size (params or FLOPs per interaction), E: interactions; any broadcastable shapes.
    """
    log_n = np.log(np.asarray(N, float))
    log_e = np.log(np.asarray(E, float))
    terms = np.logaddexp(alpha_N * (np.log(N_c) - log_n), alpha_E * (np.log(E_c) - log_e))
    return -terms / beta(alpha_N, alpha_E)


def optimal_params(C: ArrayLike, alpha_N: float, alpha_E: float, N_c: float, E_c: float,
                   k: float = 1.0) -> np.ndarray:
    """Compute-optimal model size N_opt(C) (same units as N_c) for compute C = k·N·E."""
    a, b = float(alpha_N), float(alpha_E)
    log_pref = (np.log(a / b) + a * np.log(N_c) - b * np.log(k * E_c)) / (a + b)
    return np.exp(log_pref + size_exponent(a, b) * np.log(np.asarray(C, float)))


def constants_from_ratio(alpha_N: float, alpha_E: float, log_ratio: float,
                         k: float = 1.0) -> tuple[float, float]:
    """(N_c, E_c) from ln(N_c/E_c) and the frontier constraint ln(k·N_c·E_c) = -H(s)/beta."""
    total = float(frontier_log_kNcEc(alpha_N, alpha_E)) - np.log(k)
    return float(np.exp((total + log_ratio) / 2)), float(np.exp((total - log_ratio) / 2))


def log_frontier_interactions(N: ArrayLike, alpha_N: float, alpha_E: float, N_c: float,
                              E_c: float, k: float = 1.0) -> np.ndarray:
    """ln E*(N): E*(N) is the interactions at which a model of size N is compute-optimal, i.e.
    where N_opt(C) = N with C = k·N·E*. Inverting `optimal_params`, C* = (N/P)^(1/s) with P
    the prefactor of N_opt = P·C^s, so E*(N) = C*/(k·N)."""
    a, b = float(alpha_N), float(alpha_E)
    log_pref = (np.log(a / b) + a * np.log(N_c) - b * np.log(k * E_c)) / (a + b)
    log_n = np.log(np.asarray(N, float))
    return (log_n - log_pref) / size_exponent(a, b) - np.log(k) - log_n
