"""PPO training from a config: `TrainConfig`, `train(config, num_seeds) -> RunResult`.

`train` validates the config, builds the environment and network, and drives the member-vmapped
chunk function of `scalelab.members` chunk by chunk, recording learning curves on the host.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from scalelab.algos.batch_schedule import BatchSchedule
from scalelab.algos.noise_scale import noise_scale_from_sums
from scalelab.members import (
    ChunkStatic,
    MemberHparams,
    MemberState,
    Params,
    UpdateMetrics,
    grow_members,
    has_level_pool,
    init_key,
    init_level_pools,
    init_members,
    make_chunk_fn,
    member_root_keys,
)

__all__ = [
    "PRESETS", "ChunkStatic", "MemberHparams", "MemberState", "RunResult", "TrainConfig",
    "UpdateMetrics", "build_static", "init_key", "init_members", "make_chunk_fn",
    "member_root_keys", "prepare", "train", "PreparedRun", "execute", "window_means",
]

@dataclass(frozen=True)
class TrainConfig:
    """One PPO training setup; `train(config, num_seeds)` runs it for seeds seed..seed+n-1.

    Sizes: `num_envs` parallel environments per member, `rollout_length` steps each per update
    (batch = num_envs * rollout_length interactions), `total_interactions` env steps per member
    (rounded down to whole updates), `updates_per_chunk` updates per compiled device call (one
    logged point per chunk). `network` None picks by observation: "mlp" for vectors,
    "mnist_cnn" for 28x28x1 images, "impala" otherwise. `anneal_lr` decays the step size linearly
    from lr to lr/num_updates (off by default: a curve read at every E should not depend on the
    final budget). `level_seed` keys the shared level-pool refresh of envs that have one.

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
        import envs_jax
        from scalelab.networks import FAMILIES

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
        from scalelab.algos.decoupled import ALGOS
        from scalelab.algos.objectives import OBJECTIVES

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
            if self.algo.startswith("ppg") and self.updates_per_chunk % self.ppg_n_pi:
                raise ValueError(
                    f"updates_per_chunk: a batch schedule with PPG changes the batch between "
                    f"phases, so it must be a multiple of ppg_n_pi = {self.ppg_n_pi}"
                )
        if (self.noise_scale or schedule.kind == "adaptive") and self.num_minibatches < 2:
            raise ValueError("num_minibatches: the noise scale needs at least 2 minibatches")
        buffered = self.ppg_n_pi * self.batch_size
        if self.algo.startswith("ppg") and buffered % self.aux_minibatches:
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


@dataclass(frozen=True)
class RunResult:
    """Learning curves of `train(config, num_seeds)`: one logged point per chunk.

    interactions (T,) int64: env steps per member at each log point. score (M, T): the env's
    score over the chunk that ends there (`score_kind` "reward_per_step": mean reward per step,
    i.e. training accuracy on MNIST-v0; "episode_return": mean return of the episodes that ended
    in the chunk, NaN if none did). network: the resolved network family. params: its parameter
    count N; flops_per_interaction: its forward FLOPs per observation (policy + value). metrics:
    name -> (M, T) float64 window means of the UpdateMetrics diagnostics plus reward_per_step,
    episode_return, episode_length. final_params: trained parameters, leading member axis.
    """

    config: TrainConfig
    seeds: tuple[int, ...]
    interactions: np.ndarray
    score: np.ndarray
    score_kind: str
    network: str
    params: int
    flops_per_interaction: int
    metrics: dict[str, np.ndarray]
    final_params: Params
    compile_seconds: float
    train_seconds: float


def window_means(chunk_metrics: UpdateMetrics, batch_size: int) -> dict[str, np.ndarray]:
    """Host-side reduction of one chunk's (M, K) metrics to per-member window values (M,)."""
    shape = np.shape(chunk_metrics.reward_sum)
    m = {k: np.broadcast_to(np.asarray(v, np.float64), shape)
         for k, v in chunk_metrics._asdict().items()}
    k = m["reward_sum"].shape[1]
    episodes = m["episodes"].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "reward_per_step": m["reward_sum"].sum(1) / (k * batch_size),
            "episodes": episodes,
            "episode_return": np.where(
                episodes > 0, m["episode_return_sum"].sum(1) / episodes, np.nan
            ),
            "episode_length": np.where(
                episodes > 0, m["episode_length_sum"].sum(1) / episodes, np.nan
            ),
        }
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "grad_norm",
                 "lr", "prox_kl"):
        out[name] = m[name].mean(1)
    out["noise_g2"], out["noise_trace"] = m["noise_g2"].mean(1), m["noise_trace"].mean(1)
    out["noise_scale"] = noise_scale_from_sums(m["noise_g2"], m["noise_trace"], axis=1)
    out["batch_size"] = np.full(m["noise_g2"].shape[0], float(batch_size))
    phases = m["aux_phase"].sum(1)
    for name in ("aux_kl", "aux_value_loss"):
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(phases > 0, (m[name] * m["aux_phase"]).sum(1) / phases, np.nan)
    return out


def build_static(config: TrainConfig, env: Any, obs_shape: tuple[int, ...]) -> tuple[
    ChunkStatic, Any
]:
    """(ChunkStatic, NetworkConfig) of a validated config for an env with these observations."""
    from scalelab import networks

    family = config.network or _default_family(obs_shape)
    net_cfg = networks.NetworkConfig(
        family=family, width=config.width, depth=config.depth, activation=config.activation
    )
    phasic = config.algo.startswith("ppg")
    if phasic:
        net_cfg = dataclasses.replace(net_cfg, aux_value_head=True)
    module = networks.build(net_cfg, env.num_actions)
    static = ChunkStatic(
        env=env,
        apply_fn=module.apply,
        num_envs=config.num_envs,
        rollout_length=config.rollout_length,
        update_epochs=config.update_epochs,
        num_minibatches=config.num_minibatches,
        updates_per_chunk=min(config.updates_per_chunk, config.num_updates),
        total_updates=config.num_updates,
        anneal_lr=config.anneal_lr,
        adam_eps=config.adam_eps,
        level_seed=config.level_seed,
        algo=config.algo,
        objective=config.objective,
        value_epochs=config.value_epochs,
        ppg_n_pi=config.ppg_n_pi,
        aux_epochs=config.aux_epochs,
        aux_num_minibatches=config.aux_minibatches,
        aux_apply_fn=functools.partial(module.apply, return_aux=True) if phasic else None,
        noise_scale=config.noise_scale or config.batch_schedule == "adaptive",
        member_env_params=has_level_pool(env),
    )
    return static, net_cfg


def _default_family(obs_shape: tuple[int, ...]) -> str:
    if len(obs_shape) == 1:
        return "mlp"
    return "mnist_cnn" if tuple(obs_shape) == (28, 28, 1) else "impala"


@dataclass(frozen=True)
class PreparedRun:
    """A validated config turned into its environment, network and member structure.

    seeds: the members' seeds; static: the chunk structure; hparams: (M,) per field;
    env_params: shared, or with a leading member axis (each member's own level pool) when
    `static.member_env_params` (envs with a refreshed level pool, as the Procgen games);
    chunk_sizes: updates per device call (full chunks, then a shorter remainder if any).
    """

    config: TrainConfig
    seeds: tuple[int, ...]
    env: Any
    env_params: Any
    obs_shape: tuple[int, ...]
    net_cfg: Any
    static: ChunkStatic
    hparams: MemberHparams
    chunk_sizes: tuple[int, ...]

    def initial_state(self) -> MemberState:
        """Freshly initialized members (params from each seed's init stream, envs reset)."""
        from scalelab import networks

        keys = member_root_keys(list(self.seeds))
        # One member at a time, then stacked: a vmapped init of the CNN families hangs on this
        # project's CPU machines (jax 0.10; unbatched it does not). Same keys, same values.
        params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[
            networks.init_params(self.net_cfg, init_key(k), self.obs_shape, self.env.num_actions)
            for k in keys
        ])
        return init_members(self.static, self.hparams, keys, params, self.env_params)

    def compile(self, state: MemberState) -> dict[int, Any]:
        """AOT-compiled chunk functions, one per distinct chunk size:
        (state, hparams, env_params) -> (state, env_params, metrics), the state donated."""
        return {
            n: jax.jit(
                make_chunk_fn(self.static.with_updates_per_chunk(n), carry_env_params=True),
                donate_argnums=0,
            ).lower(state, self.hparams, self.env_params).compile()
            for n in sorted(set(self.chunk_sizes))
        }


def prepare(config: TrainConfig, num_seeds: int = 1) -> PreparedRun:
    """Validate `config` (and num_seeds >= 1), then build env, network and chunk structure."""
    config.validate()
    _check_int("num_seeds", num_seeds, minimum=1)
    import envs_jax

    env, env_params = envs_jax.make(config.env, **config.env_kwargs)
    obs_shape = tuple(env.observation_space(env_params).shape)
    static, net_cfg = build_static(config, env, obs_shape)
    seeds = tuple(range(config.seed, config.seed + num_seeds))
    if static.member_env_params:
        # Every member owns its level pool, filled and refreshed from its own seed (as in
        # sweeps): seeds share no level stream, and a member's levels do not depend on the
        # other members of the run.
        env_params = init_level_pools(static, member_root_keys(list(seeds)), env_params)
    k = static.updates_per_chunk
    sizes = [k] * (config.num_updates // k)
    if config.num_updates % k:
        sizes.append(config.num_updates % k)
    return PreparedRun(
        config=config,
        seeds=seeds,
        env=env,
        env_params=env_params,
        obs_shape=obs_shape,
        net_cfg=net_cfg,
        static=static,
        hparams=MemberHparams.from_config(config, num_seeds),
        chunk_sizes=tuple(sizes),
    )


def train(config: TrainConfig, num_seeds: int = 1, progress: bool = True) -> RunResult:
    """Train seeds config.seed .. config.seed+num_seeds-1 of `config` together, vmapped.

    Validates everything before compiling. Runs config.num_updates updates in chunks of
    updates_per_chunk (a shorter last chunk is compiled separately); the host reads each chunk's
    metrics while the next one runs, and shows a tqdm bar on stderr when `progress`.
    """
    run = prepare(config, num_seeds)
    state = run.initial_state()
    t0 = time.perf_counter()
    compiled = run.compile(state)
    return execute(run, compiled, state, time.perf_counter() - t0, progress)


def execute(
    run: PreparedRun,
    compiled: dict[int, Any],
    state: MemberState,
    compile_seconds: float = math.nan,
    progress: bool = True,
) -> RunResult:
    """Run every chunk of `run` from `state` (donated) with `compiled` (from run.compile).

    With a batch-size schedule (config.batch_schedule != "fixed") the chunks are not known in
    advance: after each one the schedule picks num_envs, the members grow between chunks
    (`grow_members`), and programs for shapes not in `compiled` are compiled on first use
    (added to compile_seconds, not to train_seconds).
    """
    from tqdm.auto import tqdm

    import envs_jax
    from scalelab import networks

    config = run.config
    kind = envs_jax.score_kind(config.env)
    score_name = "reward_per_step" if kind == "reward_per_step" else "episode_return"
    windows: list[dict[str, np.ndarray]] = []
    bar = tqdm(total=config.num_updates * config.batch_size, unit="step", unit_scale=True,
               disable=not progress, desc=f"{config.env} x{len(run.seeds)}")

    def record(n: int, batch: int, metrics: UpdateMetrics) -> None:
        windows.append(window_means(metrics, batch))
        bar.update(n * batch)
        finite = windows[-1][score_name][np.isfinite(windows[-1][score_name])]
        bar.set_postfix(score=f"{finite.mean():.4g}" if finite.size else "n/a")

    t0 = time.perf_counter()
    pending = None
    env_params = run.env_params
    schedule = config.schedule()
    if schedule.kind == "fixed":
        for n in run.chunk_sizes:
            # Dispatch is asynchronous: the previous chunk's metrics are read while this runs.
            state, env_params, metrics = compiled[n](state, run.hparams, env_params)
            if pending is not None:
                record(*pending)
            pending = (n, config.batch_size, metrics)
        record(*pending)
        ends = np.cumsum(run.chunk_sizes, dtype=np.int64) * config.batch_size
        setup_seconds = 0.0
    else:
        state, env_params, ends, setup_seconds = _execute_scheduled(
            run, compiled, state, env_params, schedule, record, windows
        )
        compile_seconds = np.nansum([compile_seconds, setup_seconds])
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - t0 - setup_seconds
    bar.close()

    stacked = {name: np.stack([w[name] for w in windows], axis=1) for name in windows[0]}
    num_actions = run.env.num_actions
    return RunResult(
        config=config,
        seeds=run.seeds,
        interactions=np.asarray(ends, np.int64),
        score=stacked[score_name],
        score_kind=kind,
        network=run.net_cfg.family,
        params=networks.param_count(run.net_cfg, run.obs_shape, num_actions),
        flops_per_interaction=networks.forward_flops(run.net_cfg, run.obs_shape, num_actions),
        metrics=stacked,
        final_params=state.params,
        compile_seconds=compile_seconds,
        train_seconds=train_seconds,
    )


def _execute_scheduled(
    run: PreparedRun,
    compiled: dict[int, Any],
    state: MemberState,
    env_params: Any,
    schedule: BatchSchedule,
    record: Any,
    windows: list[dict[str, np.ndarray]],
) -> tuple[MemberState, Any, list[int], float]:
    """The chunk loop of a batch-size schedule: (state, env_params, chunk ends in interactions,
    seconds spent compiling new shapes and growing members)."""
    config, static = run.config, run.static
    programs = {(static.num_envs, n): fn for n, fn in compiled.items()}
    setup = 0.0
    done, ends = 0, []
    while (n := min(config.updates_per_chunk, (config.total_interactions - done) // (
            batch := static.num_envs * config.rollout_length))) > 0:
        if (static.num_envs, n) not in programs:
            t = time.perf_counter()
            programs[static.num_envs, n] = jax.jit(
                make_chunk_fn(static.with_updates_per_chunk(n), carry_env_params=True),
                donate_argnums=0,
            ).lower(state, run.hparams, env_params).compile()
            setup += time.perf_counter() - t
        state, env_params, metrics = programs[static.num_envs, n](state, run.hparams, env_params)
        done += n * batch
        ends.append(done)
        record(n, batch, metrics)
        w = windows[-1]
        envs = schedule.next_envs(
            static.num_envs, done, float(noise_scale_from_sums(w["noise_g2"], w["noise_trace"])),
            batch // config.num_minibatches,
        )
        if envs != static.num_envs:
            t = time.perf_counter()
            static, state = grow_members(static, state, envs, env_params)
            setup += time.perf_counter() - t
    return state, env_params, ends, setup
