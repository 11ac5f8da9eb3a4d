"""`TrainConfig`: every setting of one training run, validated in one place, and the presets.

A sweep member is a TrainConfig (see `scalelab.sweep.spec.train_config`); `scalelab.train(config,
num_seeds)` runs one as a sweep of one group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

import numpy as np

import envs_jax
from scalelab.algos import ALGORITHMS, Algorithm
from scalelab.algos.batch_schedule import SCHEDULES, BatchSchedule
from scalelab.algos.objectives import OBJECTIVES
from scalelab.networks import ACTIVATIONS, FAMILIES

__all__ = ["PRESETS", "SETTINGS", "TRACED", "Setting", "TrainConfig", "default_family",
           "default_of"]


@dataclass(frozen=True)
class Setting:
    """The one declaration of a training setting: its type, range or choices, whether None is
    allowed, whether it is traced per member (a sweepable axis that shares one compiled
    program), and which algorithms read it (`used`; None: all; `needs` says it in words).
    TrainConfig's validation, `scalelab.members.MemberHparams`, the sweep spec's axes and its
    "has no effect" errors all derive from these."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    optional: bool = False
    traced: bool = False
    used: Callable[[Algorithm, str], bool] | None = None
    needs: str = ""
    help: str = ""

    def rule(self) -> str:
        """The range or choices in words (for errors and the spec documentation)."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        return ""

    def ok(self, value: Any) -> bool:
        """Whether `value` is of this setting's type and within its range or choices."""
        if value is None:
            return self.optional
        if self.kind is bool or isinstance(value, bool):
            return self.kind is bool and isinstance(value, bool)
        if self.kind is int and not isinstance(value, int | np.integer):
            return False
        if self.kind is float and not (isinstance(value, int | float | np.floating)
                                       and math.isfinite(value)):
            return False
        if self.kind in (str, dict) and not isinstance(value, self.kind):
            return False
        if self.choices is not None and value not in self.choices:
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def check(self, name: str, value: Any) -> None:
        """Raise ValueError naming `name` unless `ok(value)`."""
        if not self.ok(value):
            kind = {int: "an integer", float: "a finite number", bool: "true or false",
                    str: "a string", dict: "a table"}[self.kind]
            if self.choices is not None:
                kind = ""
            rule = " ".join(x for x in (kind, self.rule()) if x)
            none = " (or None)" if self.optional else ""
            raise ValueError(f"{name}: expected {rule}{none}, got {value!r}")


def _num(x: float) -> str:
    return str(x) if float(x).is_integer() and abs(x) >= 1e6 else f"{x:g}"


def setting(default: Any, kind: type, **declaration: Any) -> Any:
    """A TrainConfig field whose metadata carries its `Setting` (`default` may be a factory,
    or MISSING for a required field)."""
    spec = Setting(kind, **declaration)
    if default is MISSING:
        return field(metadata={"setting": spec})
    if callable(default):
        return field(default_factory=default, metadata={"setting": spec})
    return field(default=default, metadata={"setting": spec})


def _default(f: Field) -> Any:
    return f.default_factory() if callable(f.default_factory) else f.default


def default_of(name: str) -> Any:
    """The default value of TrainConfig field `name`."""
    return _default(TrainConfig.__dataclass_fields__[name])


def _kl(algorithm: Algorithm, objective: str) -> bool:
    return objective == "kl"


def _ewma(algorithm: Algorithm, objective: str) -> bool:
    return algorithm.ewma


def _phasic(algorithm: Algorithm, objective: str) -> bool:
    return algorithm.phasic


def _decoupled(algorithm: Algorithm, objective: str) -> bool:
    return algorithm.decoupled(objective)


_PPG = 'algo = "ppg" or "ppg_ewma"'


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

    env: str = setting(MISSING, str, help="a registered environment (`scalelab envs`)")
    env_kwargs: dict[str, Any] = setting(dict, dict, help="keyword arguments of envs_jax.make")
    network: str | None = setting(None, str, optional=True, choices=FAMILIES,
                                  help="network family (None: by observation shape)")
    width: float = setting(1.0, float, low=0.0, low_open=True, help="width multiplier")
    depth: int | None = setting(None, int, low=1, optional=True, help="depth (family's default)")
    activation: str | None = setting(None, str, optional=True, choices=tuple(ACTIVATIONS),
                                     help="activation (family's default)")
    num_envs: int = setting(8, int, low=1, help="parallel environments per member")
    rollout_length: int = setting(128, int, low=1, help="steps per environment per update")
    total_interactions: int = setting(1_000_000, int, low=1, help="env steps per member")
    update_epochs: int = setting(4, int, low=1, help="epochs per update (PPG: policy epochs)")
    num_minibatches: int = setting(4, int, low=1, help="minibatches per epoch")
    lr: float = setting(2.5e-4, float, low=0.0, low_open=True, traced=True,
                        help="Adam learning rate")
    anneal_lr: bool = setting(False, bool, help="decay lr linearly to lr/num_updates")
    gamma: float = setting(0.99, float, low=0.0, high=1.0, traced=True, help="discount γ")
    gae_lambda: float = setting(0.95, float, low=0.0, high=1.0, traced=True, help="GAE λ")
    clip_eps: float = setting(0.2, float, low=0.0, low_open=True, traced=True,
                              help="PPO clip ε")
    ent_coef: float = setting(0.01, float, low=0.0, traced=True, help="entropy coefficient")
    vf_coef: float = setting(0.5, float, low=0.0, traced=True, help="value-loss coefficient")
    max_grad_norm: float = setting(0.5, float, low=0.0, low_open=True, traced=True,
                                   help="global gradient-norm clip")
    adam_eps: float = setting(1e-5, float, low=0.0, low_open=True, help="Adam ε")
    seed: int = setting(0, int, low=0, high=2**31 - 1, help="seed of the first member")
    updates_per_chunk: int = setting(16, int, low=1, help="updates per compiled call")
    level_seed: int = setting(0, int, low=0, help="key of the level-pool refreshes")
    algo: str = setting("ppo", str, choices=tuple(ALGORITHMS), help="algorithm")
    objective: str = setting("clip", str, choices=OBJECTIVES, help="policy objective")
    kl_coef: float = setting(1.0, float, low=0.0, traced=True, used=_kl, needs='objective = "kl"',
                             help="c_KL of the kl objective")
    ewma_decay: float = setting(0.889, float, low=0.0, high=1.0, high_open=True, traced=True,
                                used=_ewma, needs='algo = "ppo_ewma" or "ppg_ewma"',
                                help="β_prox of the -EWMA algorithms")
    imp_samp_max: float = setting(100.0, float, low=1.0, traced=True, used=_decoupled,
                                  needs='any algo but plain ppo with objective "clip"',
                                  help="cap on importance weights")
    value_epochs: int = setting(1, int, low=1, used=_phasic, needs=_PPG,
                                help="PPG value epochs per iteration")
    ppg_n_pi: int = setting(32, int, low=1, used=_phasic, needs=_PPG,
                            help="PPG policy iterations per auxiliary phase")
    aux_epochs: int = setting(6, int, low=1, used=_phasic, needs=_PPG,
                              help="PPG auxiliary epochs")
    aux_num_minibatches: int | None = setting(None, int, low=1, optional=True, used=_phasic,
                                              needs=_PPG, help="PPG auxiliary minibatches")
    beta_clone: float = setting(1.0, float, low=0.0, traced=True, used=_phasic, needs=_PPG,
                                help="PPG's cloning coefficient β_clone")
    batch_schedule: str = setting("fixed", str, choices=SCHEDULES, help="batch-size schedule")
    batch_max_envs: int | None = setting(None, int, low=1, optional=True,
                                         help="num_envs cap of a schedule")
    batch_power: float = setting(0.5, float, low=0.0, help="exponent of the power schedule")
    batch_e0: int | None = setting(None, int, low=1, optional=True,
                                   help="onset of the power schedule (interactions)")
    noise_scale: bool = setting(False, bool, help="measure the gradient noise scale")

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
        """Raise ValueError naming the first bad field; return self when all fields are sound.

        Every field is checked against its `Setting` (type, range, choices); a setting that
        differs from its default while the algorithm ignores it is an error; then the
        constraints between fields."""
        if not isinstance(self.env, str) or self.env not in envs_jax.registered_names():
            raise ValueError(f"env: unknown environment {self.env!r} (see `scalelab envs`)")
        algorithm = ALGORITHMS.get(self.algo)
        for f in fields(self):
            value = getattr(self, f.name)
            spec = SETTINGS[f.name]
            spec.check(f.name, value)
            if (algorithm is not None and spec.used is not None and value != _default(f)
                    and not spec.used(algorithm, self.objective)):
                raise ValueError(
                    f"{f.name}: has no effect with algo = {self.algo!r}, objective = "
                    f"{self.objective!r} (it needs {spec.needs}); leave it at its default "
                    f"{_default(f)!r}")
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
        schedule = self.schedule()
        phasic = ALGORITHMS[self.algo].phasic
        if schedule.kind != "fixed":
            if self.anneal_lr:
                raise ValueError("anneal_lr: cannot anneal over a batch-size schedule")
            if phasic and self.updates_per_chunk % self.ppg_n_pi:
                raise ValueError(
                    f"updates_per_chunk: a batch schedule with PPG changes the batch between "
                    f"phases, so it must be a multiple of ppg_n_pi = {self.ppg_n_pi}"
                )
        if (self.noise_scale or schedule.kind == "adaptive") and self.num_minibatches < 2:
            raise ValueError("num_minibatches: the noise scale needs at least 2 minibatches")
        buffered = self.ppg_n_pi * self.batch_size
        if phasic and buffered % self.aux_minibatches:
            raise ValueError(
                f"aux_num_minibatches: the {buffered} buffered samples (ppg_n_pi*num_envs*"
                f"rollout_length) do not split into {self.aux_minibatches} minibatches"
            )
        return self

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


SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in fields(TrainConfig)}
# The settings traced per member, in declaration order (the fields of MemberHparams).
TRACED: tuple[str, ...] = tuple(name for name, s in SETTINGS.items() if s.traced)


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
