"""Learning curves, intrinsic performance and the Hilton et al. (2023) power-law fit."""
