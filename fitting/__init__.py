"""Learning curves, intrinsic performance and the Hilton et al. (2023) power-law fit."""

from fitting import law, plots, synthetic
from fitting.curves import LearningCurve
from fitting.horizon import HorizonFit, fit_horizon, horizon_from_gamma, interactions_to_reach
from fitting.intrinsic import EmpiricalFrontier, empirical_intrinsic
from fitting.io import read_curves, write_curves_csv, write_curves_json
from fitting.powerlaw import FitWarning, PowerLawFit, fit_power_law
from fitting.report import FitReport, fit_run
from fitting.rundir import load_run

__all__ = [
    "EmpiricalFrontier",
    "FitReport",
    "FitWarning",
    "HorizonFit",
    "LearningCurve",
    "PowerLawFit",
    "empirical_intrinsic",
    "fit_horizon",
    "fit_power_law",
    "fit_run",
    "horizon_from_gamma",
    "interactions_to_reach",
    "law",
    "load_run",
    "plots",
    "read_curves",
    "synthetic",
    "write_curves_csv",
    "write_curves_json",
]
