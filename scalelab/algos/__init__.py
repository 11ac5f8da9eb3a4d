"""The four algorithms as small objects: what each reads and which phases it runs.

`ALGORITHMS[name]` is an `Algorithm`; everything that depends on the algorithm asks it (the
config's "setting has no effect" errors, the chunk's update path, PPG's auxiliary phase, the
memory model) instead of testing the name.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ALGORITHMS", "Algorithm"]


class Algorithm(NamedTuple):
    """ewma: the proximal policy is a bias-corrected EWMA of the weights (PPO-EWMA, PPG-EWMA).
    phasic: PPG's separate policy and value epochs and its auxiliary phase."""

    name: str
    ewma: bool
    phasic: bool

    def decoupled(self, objective: str) -> bool:
        """Whether updates go through the decoupled objective (importance weights capped at
        imp_samp_max): everything but plain PPO with the clipped objective."""
        return self.ewma or self.phasic or objective != "clip"


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a for a in (
        Algorithm("ppo", ewma=False, phasic=False),
        Algorithm("ppo_ewma", ewma=True, phasic=False),
        Algorithm("ppg", ewma=False, phasic=True),
        Algorithm("ppg_ewma", ewma=True, phasic=True),
    )
}
