"""Benchmark of the power-law fit: speed of one fit, of a bootstrap, and synthetic recovery.

Prints one JSON line per result. Targets (issue 3): one fit of 20 curves × 200 points with 64
starts ≤ 10 s compile included; 200 bootstrap resamples ≤ 60 s; on synthetic data (8 sizes over
1/64×–8×, 3 seeds, 5% noise) alpha_N and alpha_E within ±0.05, size_exponent within ±0.03, and
the truth inside the 5–95% bootstrap intervals in ~90% of trials. cpu_seconds (process CPU
time, all threads) is the steadier number on a shared machine.

    PYTHONPATH=. python benchmarks/fit_speed.py [--trials 20] [--resamples 200] [--skip-speed]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from fitting import fit_power_law, synthetic
from fitting.powerlaw import FitWarning

PAIRS = ((0.6, 0.4), (0.4, 0.6), (0.3, 0.9))
NAMES = ("alpha_N", "alpha_E", "size_exponent")
TOLERANCE = {"alpha_N": 0.05, "alpha_E": 0.05, "size_exponent": 0.03}


def _emit(**row) -> None:
    print(json.dumps(row), flush=True)


def speed(resamples: int) -> None:
    """One fit and one bootstrap on 20 sizes × 1 seed × 200 points (4,000 points), 64 starts."""
    design = synthetic.default_design(num_sizes=20, seeds=1)
    true_law = synthetic.law_for_design(0.5, 0.5, design)
    curves = synthetic.make_curves(true_law, design, noise=0.05, seed=0)
    for label in ("first call (compile included)", "second call"):
        t0, c0 = time.perf_counter(), time.process_time()
        fit = fit_power_law(curves, starts=64)
        _emit(bench="one_fit", call=label, curves=20, points=200, starts=64,
              seconds=round(time.perf_counter() - t0, 2),
              cpu_seconds=round(time.process_time() - c0, 2), converged=fit.converged,
              target_seconds=10)
    for label in ("first call (compile included)", "second call"):
        t0, c0 = time.perf_counter(), time.process_time()
        fit = fit_power_law(curves, starts=64, bootstrap=resamples)
        _emit(bench="bootstrap", call=label, resamples=resamples, unit=fit.resample_unit,
              seconds=round(time.perf_counter() - t0, 2),
              cpu_seconds=round(time.process_time() - c0, 2),
              converged_resamples=int(fit.bootstrap_ok.sum()), target_seconds=60)


def recovery(trials: int, resamples: int, first_trial: int = 0,
             residual: str = "score") -> None:
    """Fit `trials` noisy synthetic sweeps per (alpha_N, alpha_E) pair; errors and coverage.

    One line per trial, then a summary per pair and constant (trials can be split over
    processes with --first-trial and the per-trial lines pooled)."""
    design = synthetic.default_design(num_sizes=8, seeds=3)
    for alpha_n, alpha_e in PAIRS:
        true_law = synthetic.law_for_design(alpha_n, alpha_e, design)
        truth = {"alpha_N": alpha_n, "alpha_E": alpha_e,
                 "size_exponent": alpha_e / (alpha_n + alpha_e)}
        errors = {n: [] for n in NAMES}
        covered = {n: 0 for n in NAMES}
        converged = 0
        for trial in range(first_trial, first_trial + trials):
            curves = synthetic.make_curves(true_law, design, noise=0.05, seed=1000 + trial)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitWarning)
                fit = fit_power_law(curves, bootstrap=resamples, seed=trial, residual=residual)
            row = {"bench": "recovery_trial", "true_alpha_N": alpha_n, "true_alpha_E": alpha_e,
                   "residual": residual, "trial": trial, "converged": fit.converged,
                   "seconds": round(time.perf_counter() - t0, 2)}
            converged += fit.converged
            for n in NAMES:
                errors[n].append(getattr(fit, n) - truth[n])
                lo, hi = fit.intervals[n] if fit.intervals else (np.nan, np.nan)
                covered[n] += lo <= truth[n] <= hi
                row[n] = round(getattr(fit, n), 4)
                row[n + "_interval"] = [round(lo, 4), round(hi, 4)]
            _emit(**row)
        for n in NAMES:
            err = np.abs(errors[n])
            _emit(bench="recovery", alpha_N=alpha_n, alpha_E=alpha_e, constant=n,
                  residual=residual,
                  trials=trials, resamples=resamples, noise=0.05,
                  mean_error=round(float(np.mean(errors[n])), 4),
                  max_abs_error=round(float(err.max()), 4),
                  within_tolerance=int(np.sum(err <= TOLERANCE[n])), tolerance=TOLERANCE[n],
                  coverage=round(covered[n] / trials, 3), converged=converged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="synthetic sweeps per pair")
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples")
    parser.add_argument("--first-trial", type=int, default=0, help="seed offset of trials")
    parser.add_argument("--residual", default="score", choices=("score", "log_intrinsic"))
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-recovery", action="store_true")
    args = parser.parse_args()
    if not args.skip_speed:
        speed(args.resamples)
    if not args.skip_recovery:
        recovery(args.trials, args.resamples, args.first_trial, args.residual)


if __name__ == "__main__":
    main()
