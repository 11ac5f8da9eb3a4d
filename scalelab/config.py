"""`TrainConfig`: every setting of one training run, validated in one place, and the presets.

A sweep member is a TrainConfig (see `scalelab.sweep.spec.train_config`); `scalelab.train(config,
num_seeds)` runs one as a sweep of one group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import envs_jax
from scalelab.algos.batch_schedule import BatchSchedule
from scalelab.algos.decoupled import ALGOS, is_phasic
from scalelab.algos.objectives import OBJECTIVES
from scalelab.networks import FAMILIES

__all__ = ["PRESETS", "TrainConfig", "default_family"]


# images with both sides at most this many cells are grids for "small_cnn" (MinAtar: 10x10xC)
SMALL_GRID = 16


def default_family(obs_shape: tuple[int, ...]) -> str:
    """The network family of `network=None`, by observation shape (H, W, C for images):

    - not an image (vectors, any shape but H x W x C) -> "mlp" (observations flattened);
    - H, W <= SMALL_GRID (16), e.g. MinAtar's 10x10xC grids -> "small_cnn";
    - 28x28x1 (MNIST) -> "mnist_cnn";
    - any other image, e.g. 64x64x3 pixels (Procgen) -> "impala".
    """
    shape = tuple(obs_shape)
    if len(shape) != 3:
        return "mlp"
    if max(shape[:2]) <= SMALL_GRID:
        return "small_cnn"
    return "mnist_cnn" if shape == (28, 28, 1) else "impala"


@dataclass(frozen=True)
class TrainConfig:
    """One PPO training setup; `train(config, num_seeds)` runs it for seeds seed..seed+n-1.

    Sizes: `num_envs` parallel environments per member, `rollout_length` steps each per update
    (batch = num_envs * rollout_length interactions), `total_interactions` env steps per member
    (rounded down to whole updates), `updates_per_chunk` updates per compiled device call (one
    logged point per chunk). `network` None picks by observation (`default_family`): "mlp" for
    vectors, "small_cnn" for grids up to 16x16, "mnist_cnn" for 28x28x1, "impala" otherwise.
    `anneal_lr` decays the step size linearly from lr to lr/num_updates (off by default: a curve
    read at every E should not depend on the final budget). `level_seed` keys the shared level-pool
    refresh of envs that have one.

    Algorithm (`scalelab.algos.decoupled`): `algo` "ppo" | "ppo_ewma" | "ppg" | "ppg_ewma" and
    `objective` "clip" (clip_eps) | "kl" (fixed penalty kl_coef · KL(π_prox‖π)). The -EWMA
    algorithms use a bias-corrected EWMA of the weights with decay `ewma_decay` as the proximal
    policy (0.889: a centre of mass of 8 minibatch steps, the reference's choice for 8
    minibatches); importance weights π/π_b are capped at `imp_samp_max` (all but plain clipped
    PPO). PPG: `update_epochs` policy and `value_epochs` value epochs per iteration, and after
    every `ppg_n_pi` iterations an auxiliary phase of `aux_epochs` epochs over the buffered
    rollouts in `aux_num_minibatches` minibatches (None: ppg_n_pi * num_minibatches, i.e. the
    policy phase's minibatch size) with cloning coefficient `beta_clone`. PPG's paper defaults:
    update_epochs 1, value_epochs 1, ppg_n_pi 32, aux_epochs 6, beta_clone 1.

    Batch size (`scalelab.algos.batch_schedule`): `batch_schedule` "fixed" | "adaptive" (double
    num_envs whenever the measured gradient noise scale exceeds the minibatch size) | "power"
    (num_envs·rollout_length ≈ B_min·(E/batch_e0)^batch_power), growing num_envs by doublings
    from num_envs (the floor B_min) up to `batch_max_envs` (None: 16·num_envs); `batch_e0` None
    means 16 updates' worth of interactions at B_min. `noise_scale` measures the noise scale
    every update (always on for "adaptive"); it shows as metrics["noise_scale"].
    """

    env: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    network: str | None = None
    width: float = 1.0
    depth: int | None = None
    activation: str | None = None
    num_envs: int = 8
    rollout_length: int = 128
    total_interactions: int = 1_000_000
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 2.5e-4
    anneal_lr: bool = False
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5
    seed: int = 0
    updates_per_chunk: int = 16
    level_seed: int = 0
    algo: str = "ppo"
    objective: str = "clip"
    kl_coef: float = 1.0
    ewma_decay: float = 0.889
    imp_samp_max: float = 100.0
    value_epochs: int = 1
    ppg_n_pi: int = 32
    aux_epochs: int = 6
    aux_num_minibatches: int | None = None
    beta_clone: float = 1.0
    batch_schedule: str = "fixed"
    batch_max_envs: int | None = None
    batch_power: float = 0.5
    batch_e0: int | None = None
    noise_scale: bool = False

    @property
    def batch_size(self) -> int:
        """Interactions per update per member: num_envs * rollout_length."""
        return self.num_envs * self.rollout_length

    @property
    def aux_minibatches(self) -> int:
        """Minibatches per auxiliary epoch (aux_num_minibatches, or ppg_n_pi*num_minibatches)."""
        if self.aux_num_minibatches is None:
            return self.ppg_n_pi * self.num_minibatches
        return self.aux_num_minibatches

    def schedule(self) -> BatchSchedule:
        """The batch-size schedule these fields describe (validated)."""
        return BatchSchedule(
            kind=self.batch_schedule,
            min_envs=self.num_envs,
            max_envs=16 * self.num_envs if self.batch_max_envs is None else self.batch_max_envs,
            power=self.batch_power,
            e0=16 * self.batch_size if self.batch_e0 is None else self.batch_e0,
        )

    @property
    def num_updates(self) -> int:
        """Whole PPO updates that fit in total_interactions."""
        return self.total_interactions // self.batch_size

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first bad field; return self when all fields are sound."""
        if not isinstance(self.env, str) or self.env not in envs_jax.registered_names():
            raise ValueError(f"env: unknown environment {self.env!r} (see `scalelab envs`)")
        if not isinstance(self.env_kwargs, dict):
            raise ValueError(f"env_kwargs: expected a dict, got {type(self.env_kwargs).__name__}")
        if self.network is not None and self.network not in FAMILIES:
            raise ValueError(f"network: {self.network!r} is not one of {FAMILIES}")
        for name in ("num_envs", "rollout_length", "total_interactions", "update_epochs",
                     "num_minibatches", "updates_per_chunk"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        _check_int("level_seed", self.level_seed, minimum=0)
        if self.depth is not None:
            _check_int("depth", self.depth, minimum=1)
        for name in ("width", "lr", "clip_eps", "max_grad_norm", "adam_eps"):
            _check_real(name, getattr(self, name), low=0.0, low_open=True)
        for name in ("ent_coef", "vf_coef"):
            _check_real(name, getattr(self, name), low=0.0)
        for name in ("gamma", "gae_lambda"):
            _check_real(name, getattr(self, name), low=0.0, high=1.0)
        if not isinstance(self.anneal_lr, bool):
            raise ValueError(f"anneal_lr: expected a bool, got {self.anneal_lr!r}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"num_minibatches: num_envs*rollout_length = {self.batch_size} is not divisible "
                f"by num_minibatches = {self.num_minibatches}"
            )
        if self.total_interactions < self.batch_size:
            raise ValueError(
                f"total_interactions: {self.total_interactions} is less than one update "
                f"(num_envs*rollout_length = {self.batch_size})"
            )
        self._validate_algo()
        return self

    def _validate_algo(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo: {self.algo!r} is not one of {ALGOS}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective: {self.objective!r} is not one of {OBJECTIVES}")
        _check_real("kl_coef", self.kl_coef, low=0.0)
        _check_real("beta_clone", self.beta_clone, low=0.0)
        _check_real("imp_samp_max", self.imp_samp_max, low=1.0)
        _check_real("ewma_decay", self.ewma_decay, low=0.0, high=1.0)
        if self.ewma_decay == 1.0:
            raise ValueError("ewma_decay: expected a number < 1 (1 would never move the average)")
        for name in ("value_epochs", "ppg_n_pi", "aux_epochs"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.aux_num_minibatches is not None:
            _check_int("aux_num_minibatches", self.aux_num_minibatches, minimum=1)
        if not isinstance(self.noise_scale, bool):
            raise ValueError(f"noise_scale: expected a bool, got {self.noise_scale!r}")
        if self.batch_max_envs is not None:
            _check_int("batch_max_envs", self.batch_max_envs, minimum=1)
        if self.batch_e0 is not None:
            _check_int("batch_e0", self.batch_e0, minimum=1)
        _check_real("batch_power", self.batch_power, low=0.0)
        schedule = self.schedule()
        if schedule.kind != "fixed":
            if self.anneal_lr:
                raise ValueError("anneal_lr: cannot anneal over a batch-size schedule")
            if is_phasic(self.algo) and self.updates_per_chunk % self.ppg_n_pi:
                raise ValueError(
                    f"updates_per_chunk: a batch schedule with PPG changes the batch between "
                    f"phases, so it must be a multiple of ppg_n_pi = {self.ppg_n_pi}"
                )
        if (self.noise_scale or schedule.kind == "adaptive") and self.num_minibatches < 2:
            raise ValueError("num_minibatches: the noise scale needs at least 2 minibatches")
        buffered = self.ppg_n_pi * self.batch_size
        if is_phasic(self.algo) and buffered % self.aux_minibatches:
            raise ValueError(
                f"aux_num_minibatches: the {buffered} buffered samples (ppg_n_pi*num_envs*"
                f"rollout_length) do not split into {self.aux_minibatches} minibatches"
            )

    @classmethod
    def preset(cls, env: str, **overrides: Any) -> TrainConfig:
        """Recommended settings for `env` (PRESETS; the dataclass defaults elsewhere), then
        `overrides`. Where a preset names an `lr_ref_width` and lr is not overridden, lr follows
        the paper's rule lr ∝ 1/sqrt(width): lr = preset lr * sqrt(lr_ref_width / width)."""
        settings = dict(PRESETS.get(env, {}))
        ref_width = settings.pop("lr_ref_width", None)
        if ref_width is not None and "lr" not in overrides:
            width = overrides.get("width", 1.0)
            if isinstance(width, int | float) and width > 0:
                settings["lr"] = settings["lr"] * math.sqrt(ref_width / width)
        return cls(env=env, **{**settings, **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # PureJaxRL's published CartPole defaults (the throughput/learning reference).
    "CartPole-v1": dict(
        network="mlp", activation="tanh", num_envs=4, rollout_length=128,
        total_interactions=500_000, update_epochs=4, num_minibatches=4, lr=2.5e-4,
        anneal_lr=True, gamma=0.99, gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5, adam_eps=1e-5,
    ),
    # The paper's MNIST toy at horizon 1 (γ = 0, λ = 1: advantage = reward - V). Small batches
    # learn fastest per interaction: tuned at width 1/8 (lr 3e-3 reached 90% training accuracy
    # in ~33k interactions there, vs ~130k for 64x64 rollouts at lr 1e-3).
    "MNIST-v0": dict(
        num_envs=32, rollout_length=32, total_interactions=65_536, update_epochs=2,
        num_minibatches=2, lr=3e-3, lr_ref_width=0.125, gamma=0.0, gae_lambda=1.0,
        ent_coef=0.01, updates_per_chunk=8,
    ),
}


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _check_real(
    name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False
) -> None:
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > low if low_open else value >= low)
    if not ok or value > high:
        bound = f"> {low}" if low_open else f">= {low}"
        if high < math.inf:
            bound += f" and <= {high}"
        raise ValueError(f"{name}: expected a finite number {bound}, got {value!r}")
