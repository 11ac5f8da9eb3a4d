"""Learning curves, intrinsic performance and the Hilton et al. (2023) power-law fit."""

from fitting.curves import LearningCurve
from fitting.intrinsic import EmpiricalFrontier, empirical_intrinsic
from fitting.powerlaw import FitWarning, PowerLawFit, fit_power_law

__all__ = [
    "EmpiricalFrontier",
    "FitWarning",
    "LearningCurve",
    "PowerLawFit",
    "empirical_intrinsic",
    "fit_power_law",
]
