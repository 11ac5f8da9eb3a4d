"""scalelab: scaling laws of single-agent RL, trained as vmapped sweeps in one compiled program.

One member's path, each module left for good once read:

  a spec (TOML), or a TrainConfig   what to run (shipped specs: `scalelab.specs`; `scalelab.config`)
  scalelab.sweep.spec               the spec parsed and checked (`spec_for_config` for train)
  scalelab.sweep.plan               members, groups (zero-padded widths), chunks, memory
  scalelab.sweep.run                the one driver: init, fused jitted chunks, faults, resume
  scalelab.members                  the member-vmapped chunk: rollout, GAE, minibatch updates
  scalelab.algos                    the losses and phases of PPO, PPO-EWMA, PPG, PPG-EWMA
  scalelab.sweep.rundir             the run directory: spec, plan, manifest, metrics.csv
  fitting                           curves, intrinsic performance, the power-law fit, plots

`scalelab.train(config, num_seeds)` is a sweep of one group through the same runner.
"""

__version__ = "0.1.0"

# Imported eagerly, not lazily: the submodule `scalelab.train` would otherwise shadow the
# function `scalelab.train` as soon as anything imported the submodule.
from scalelab.config import TrainConfig  # noqa: E402
from scalelab.train import RunResult, train  # noqa: E402

__all__ = ["RunResult", "TrainConfig", "train"]
