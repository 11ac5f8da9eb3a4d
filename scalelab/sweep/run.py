"""Fused sweep runner: one jitted call advances every group K updates, sharded over devices.

The one driver of the lab: `scalelab.train` and `scalelab sweep run` both run here.

Each group of a plan is a member-vmapped trainer chunk (`scalelab.members.make_chunk_fn`) over
params zero-padded to the group's network; all groups run inside one `jax.jit` program whose
member axes are sharded over a 1-D device mesh ("members"). Between calls the host writes the
metrics of the chunk just done, flags faults in the manifest and, every `checkpoint_every`
chunks, saves an orbax checkpoint; `run_sweep` into an existing run directory resumes from the
last checkpoint that restores.

Faults: after each chunk, a member whose parameters or losses are non-finite is frozen at its
state from the start of that chunk (its slot keeps running the same doomed chunk, which changes
nothing for its neighbours: vmapped members share no arithmetic), flagged `non_finite` in the
manifest with the update where the fault appeared, and its rows from that chunk on get valid = 0.

Level pools: for environments that refresh a level pool inside the program (the Procgen-like
games), every member owns its env params (`ChunkStatic.member_env_params`): its pool is filled
and refreshed from its own seed's key stream, carried in `SweepState.env_params` and saved in the
checkpoints. Per member rather than per group because a group mixes seeds: a pool shared by a
group would make members of different seeds train on the same levels (not independent
replicates), and would make a member's levels depend on its group. Members of the same seed see
the same levels whatever their size or lr (common random numbers across sizes). The cost is one
pool per member in memory (~16 MiB for CoinRun's 1024 levels and their start frames; `sweep
plan` counts it) and the refresh's level generation once per member. Other environments
(MNIST's dataset) keep one shared, replicated copy.

Chunks and batch schedules: a chunk runs (num_envs, updates) of the plan (a shorter last chunk
when the budget ends inside one); one program is compiled per such shape. Between chunks all
members grow together (`scalelab.members.grow_members`, jitted) when the schedule says so: a
"power" schedule from the plan, an "adaptive" one from the noise scale pooled over all members
(allowed only for seed-only sweeps, which is what `scalelab.train` runs). The manifest records the
chunks done and the num_envs of the state after each, which is how a checkpoint is restored.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import struct
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

import envs_jax
from scalelab import members, networks
from scalelab.algos.noise_scale import noise_scale_from_sums
from scalelab.config import TrainConfig
from scalelab.members import MemberHparams, UpdateMetrics
from scalelab.sweep.capacity import check_memory
from scalelab.sweep.integrity import IntegrityError, checkpoint_problem, write_checkpoint_sums
from scalelab.sweep.lock import RunLock, RunLockedError
from scalelab.sweep.plan import Plan, make_plan, member_network
from scalelab.sweep.rundir import RunDir
from scalelab.sweep.spec import SpecError, parse_spec, train_config
from scalelab.tensorboard import TensorBoardWriter
from scalelab.xla_options import compile_lowered, options_for

__all__ = ["COUNTS", "FusedRunner", "Progress", "SweepState", "execute", "run_spec",
           "run_sweep", "window_means"]

_AXIS = "members"
# What the manifest's size columns count (see scalelab.sweep.plan).
COUNTS = {
    "params": "all trained parameters: policy tower + logits head + value tower + value head "
              "(+ auxiliary value head for ppg/ppg_ewma)",
    "policy_params": "policy tower + logits head only (the paper's N: the acting network)",
    "flops_per_interaction": "forward FLOPs of one observation through everything in params "
                             "(2 per multiply-add)",
}
_RENAMED = {"lr": "lr_used"}


class SweepState(struct.PyTreeNode):
    """Everything a sweep carries between chunks (what a checkpoint holds).

    groups: one MemberState per group (leading axis: the group's slots, padded to a multiple of
    the device count). frozen: per group (slots,) bool. fault_update: per group (slots,) int32,
    the update at which a fault was seen (-1: none). chunk: () int32, chunks done; updates: ()
    int32, updates done. env_params: per group the slots' own env params (leading slot axis) for
    envs with a level pool, else ().
    """

    groups: tuple
    frozen: tuple
    fault_update: tuple
    chunk: jax.Array
    updates: jax.Array
    env_params: tuple = ()


class Progress(NamedTuple):
    """What a `progress` callback receives after each chunk."""

    chunks_done: int
    interactions_done: int
    total_interactions: int
    faults: int
    seconds: float
    score: float


def window_means(chunk_metrics: UpdateMetrics, batch_size: int) -> dict[str, np.ndarray]:
    """Host-side reduction of (M, K) per-update metrics to per-member window values (M,)."""
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


def _finite_members(tree: Any) -> jax.Array:
    """(M,) bool: every leaf of a member-leading pytree is finite for that member."""
    ok = [jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1)
          for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.logical_and.reduce(jnp.stack(ok), axis=0)


def _first_bad_update(metrics: Any) -> jax.Array:
    """(M,) int32: index within the chunk of the first update with a non-finite metric (K: none)."""
    leaves = [x for x in jax.tree.leaves(metrics) if jnp.issubdtype(x.dtype, jnp.floating)]
    bad = jnp.any(jnp.stack([~jnp.isfinite(x) for x in leaves]), axis=0)  # (M, K)
    k = bad.shape[1]
    return jnp.where(bad.any(axis=1), jnp.argmax(bad, axis=1), k).astype(jnp.int32)


def _select(frozen: jax.Array, old: jax.Array, new: jax.Array) -> jax.Array:
    """Per member: the old value where frozen, else the new one (member-leading arrays)."""
    return jnp.where(frozen.reshape((-1,) + (1,) * (old.ndim - 1)), old, new)


def _put(tree: Any, sharding: NamedSharding) -> Any:
    """Host arrays (the same on every process) as global arrays of `sharding`, each process
    filling the shards it owns. Not `jax.device_put`: with several processes it checks that the
    values agree, and (jax 0.10.2) that check fails for every 0-d array."""
    return jax.tree.map(lambda x: jax.make_array_from_callback(
        np.shape(x), sharding, lambda idx: np.asarray(x)[idx]), tree)


def _init_padded(cfg: networks.NetworkConfig, group_cfg: networks.NetworkConfig,
                 obs_shape: tuple[int, ...], num_actions: int, key: jax.Array) -> Any:
    """A member's params initialized at its own config from its root key, padded to the group's."""
    own = networks.init_params(cfg, members.init_key(key), obs_shape, num_actions)
    return networks.pad_params(own, cfg, group_cfg, obs_shape, num_actions)


class FusedRunner:
    """The compiled program of a plan: initial state, one fused chunk, growth, shardings.

    devices: the devices to shard members over (default: all of them, every host's).
    """

    def __init__(self, plan: Plan, devices: Sequence[Any] | None = None):
        self.plan = plan
        spec = plan.spec
        devices = list(jax.devices() if devices is None else devices)
        self.mesh = Mesh(np.array(devices), (_AXIS,))
        self.platform = devices[0].platform
        # the XLA compiler options of its chunk programs (scalelab.xla_options), which depend on
        # whether any group's network has a conv layer
        self.compile_options = options_for(self.platform, any(
            layer.kind == "conv" for g in plan.groups
            for layer in networks.encoder_layers(g.network, plan.obs_shape)))
        self.members_sharding = NamedSharding(self.mesh, PartitionSpec(_AXIS))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.env = plan.env
        self._env_params_host = jax.tree.map(np.asarray, plan.env_params)
        self.env_params = _put(self._env_params_host, self.replicated)
        self.member_pools = members.has_level_pool(self.env)
        self.score_kind = envs_jax.score_kind(spec.env)
        n_dev = len(devices)
        # Slots of each group: its members, then inert copies of its first member up to a
        # multiple of the device count (their results are discarded).
        self.slots = [
            list(g.members) + [g.members[0]] * (-len(g.members) % n_dev) for g in plan.groups
        ]
        self.configs: list[TrainConfig] = [
            train_config(spec, network=plan.family, width=m.width, depth=m.depth, seed=m.seed,
                         lr=m.lr, **m.hparams)
            for m in plan.members
        ]
        self.schedule = self.configs[0].schedule()
        self.networks = [member_network(c) for c in self.configs]
        self.statics = [
            members.chunk_static(self.configs[g.members[0]], self.env, g.network,
                                 plan.chunks[0][0], spec.updates_per_chunk)
            for g in plan.groups
        ]
        hparams = [jax.tree.map(lambda *x: np.concatenate(x), *[
            MemberHparams.from_config(self.configs[i], 1) for i in slots]) for slots in self.slots]
        self._hparams_host = tuple(hparams)
        self.hparams = tuple(self._shard(hp) for hp in hparams)
        self.compile_seconds = 0.0
        self._compiled: dict[tuple[int, int], Any] = {}
        self._ahead: dict[tuple[int, int], concurrent.futures.Future] = {}
        self._grow: dict[tuple[int, int], Any] = {}
        self._jitted: dict[tuple, Any] = {}

    def _jit(self, key: tuple, fn: Callable) -> Any:
        """jax.jit(fn), kept under `key` so that a second init_state compiles nothing."""
        if key not in self._jitted:
            self._jitted[key] = jax.jit(fn)
        return self._jitted[key]

    def _static(self, g: int, num_envs: int, updates: int | None = None) -> members.ChunkStatic:
        static = dataclasses.replace(self.statics[g], num_envs=num_envs)
        return static if updates is None else static.with_updates_per_chunk(updates)

    def _shard(self, tree: Any) -> Any:
        return _put(tree, self.members_sharding)

    def _seeds(self) -> tuple[np.ndarray, ...]:
        """Per group its slots' seeds (uint32), the arguments of the init program."""
        return tuple(np.asarray([self.plan.members[i].seed for i in slots], np.uint32)
                     for slots in self.slots)

    def _group_params(self, g: int, keys: jax.Array) -> Any:
        """Fresh params of group g's slots from their root keys (traced inside `_init`): each
        member initialized at its own width from its key, then zero-padded to the group's network.

        The members of each network config are initialized one after another by a `lax.map` over
        their keys (not vmapped: see `init_state`), then put back in slot order.
        """
        plan, group = self.plan, self.plan.groups[g]
        cfgs = [self.networks[i] for i in self.slots[g]]
        distinct = list(dict.fromkeys(cfgs))
        index = [np.asarray([s for s, c in enumerate(cfgs) if c == cfg]) for cfg in distinct]
        to_slots = np.argsort(np.concatenate(index))
        parts = [lax.map(partial(_init_padded, cfg, group.network, plan.obs_shape,
                                 plan.num_actions), keys[idx])
                 for cfg, idx in zip(distinct, index, strict=True)]
        return jax.tree.map(lambda *x: jnp.concatenate(x)[to_slots], *parts)

    def _init(self, hparams: tuple, seeds: tuple, env_params: Any, num_envs: int) -> SweepState:
        """The initial SweepState (unsharded) from per group its slots' hparams and seeds: params
        (`_group_params`), the slots' own level pools if the env has them, then optimizer, env
        resets and counters (`members.init_members`, grown to num_envs envs as the batch
        schedule does)."""
        groups, pools = [], []
        for g, (hp, s) in enumerate(zip(hparams, seeds, strict=True)):
            keys = members.member_root_keys(s)
            static = self.statics[g]
            pool = members.init_level_pools(static, keys, env_params) if self.member_pools else ()
            ep = pool if self.member_pools else env_params
            state = members.init_members(static, hp, keys, self._group_params(g, keys), ep)
            groups.append(members.grow_members(static, state, num_envs, ep)[1])
            pools.append(pool)
        return SweepState(
            groups=tuple(groups),
            frozen=tuple(jnp.zeros(len(s), bool) for s in self.slots),
            fault_update=tuple(jnp.full(len(s), -1, jnp.int32) for s in self.slots),
            chunk=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
            env_params=tuple(pools) if self.member_pools else (),
        )

    def _state_shardings(self, state: Any) -> Any:
        shardings = jax.tree.map(lambda _: self.members_sharding, state)
        return shardings.replace(chunk=self.replicated, updates=self.replicated)

    def init_state(self) -> SweepState:
        """The sweep's initial state, sharded over the mesh.

        One compiled program (`_init`, kept by `_jit`: a second call compiles nothing) computes
        the whole state on this process's first local device from the groups' hparams and seeds
        and the shared env params: every group's params (per network config a `lax.map` over
        its members, not vmapped), the slots' level pools if the env has them, their member
        state (optimizer, env resets, counters), the fault flags and the counters. The result is
        copied through the host into the member sharding (each process fills the shards it
        owns, `_put`); its shapes are read from the result (no separate `jax.eval_shape`
        trace). On this XLA:CPU (jax 0.10.2) a vmapped `networks.init_params` of the MNIST CNN
        (4 keys) hangs reproducibly (batched QR of the orthogonal init), and initializing
        straight into the sharding hung too.
        """
        envs = self.plan.chunks[0][0]
        device = jax.local_devices()[0]
        args = jax.device_put((self._hparams_host, self._seeds(), self._env_params_host), device)
        state = self._jit(("init", envs), partial(self._init, num_envs=envs))(*args)
        host = jax.tree.map(np.asarray, state)
        return jax.tree.map(_put, host, self._state_shardings(host))

    def _fused(self, state: SweepState, hparams: tuple, env_params: Any, num_envs: int,
               updates: int) -> tuple[SweepState, tuple]:
        groups, pools, frozen, faults, metrics = [], [], [], [], []
        for g, (s, h, fr, fu) in enumerate(zip(state.groups, hparams, state.frozen,
                                               state.fault_update, strict=True)):
            ep = state.env_params[g] if self.member_pools else env_params
            new, new_ep, m = members.make_chunk_fn(
                self._static(g, num_envs, updates), carry_env_params=True)(s, h, ep)
            first_bad = _first_bad_update(m)
            ok = _finite_members(new.params) & (first_bad == updates)
            newly = ~ok & ~fr
            fr_next = fr | ~ok
            groups.append(jax.tree.map(partial(_select, fr_next), s, new))
            if self.member_pools:
                pools.append(jax.tree.map(partial(_select, fr_next), ep, new_ep))
            frozen.append(fr_next)
            faults.append(jnp.where(
                newly, state.updates + jnp.minimum(first_bad, updates - 1) + 1, fu))
            metrics.append(m)
        new_state = SweepState(tuple(groups), tuple(frozen), tuple(faults), state.chunk + 1,
                               state.updates + updates, tuple(pools))
        return new_state, tuple(metrics)

    def _grown(self, state: SweepState, env_params: Any, num_envs: int) -> SweepState:
        """The state with every group grown from its current num_envs to `num_envs`."""
        groups = []
        for g, s in enumerate(state.groups):
            ep = state.env_params[g] if self.member_pools else env_params
            groups.append(members.grow_members(
                self._static(g, s.episode_return.shape[1]), s, num_envs, ep)[1])
        return state.replace(groups=tuple(groups))

    def lower_chunk(self, state: SweepState, updates: int | None = None) -> Any:
        """The fused chunk program of `updates` updates (default: updates_per_chunk) lowered
        for `state`'s shapes (a SweepState of arrays or of `jax.ShapeDtypeStruct`s: nothing is
        allocated): jax's Lowered, to compile."""
        n = self.plan.spec.updates_per_chunk if updates is None else updates
        fused = partial(self._fused, num_envs=state_envs(state), updates=n)
        return jax.jit(fused, donate_argnums=0).lower(state, self.hparams, self.env_params)

    def compile_ahead(self, num_envs: int | None = None, updates: int | None = None) -> None:
        """Start compiling the chunk program of `num_envs` envs and `updates` updates (default:
        the first chunk's) in a background thread, from the state's abstract shapes
        (`abstract_state`), so that it overlaps `init_state` (whose own compile is most of its
        time); `compiled_chunk` then waits for it. With two or more cores the two compiles can run
        side by side. The program is the one `compiled_chunk` would compile from the real state
        (the same lowered text, tested)."""
        first_envs, first_updates = self.plan.chunks[0]
        key = (first_envs if num_envs is None else num_envs,
               first_updates if updates is None else updates)
        if key in self._compiled or key in self._ahead:
            return
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="scalelab-compile")
        self._ahead[key] = pool.submit(lambda: compile_lowered(
            self.lower_chunk(self.abstract_state(key[0]), key[1]), self.compile_options))
        pool.shutdown(wait=False)

    def compiled_chunk(self, state: SweepState, updates: int) -> Any:
        """The compiled fused chunk program for `state`'s batch shape and `updates` (cached):
        (state, hparams, env_params) -> (state, metrics), the state donated. `compile_seconds`
        adds the time this call spent compiling or waiting for a `compile_ahead`."""
        key = (state_envs(state), updates)
        if key not in self._compiled:
            t = time.perf_counter()
            ahead = self._ahead.pop(key, None)
            self._compiled[key] = (ahead.result() if ahead is not None else compile_lowered(
                self.lower_chunk(state, updates), self.compile_options))
            self.compile_seconds += time.perf_counter() - t
        return self._compiled[key]

    def step(self, state: SweepState, updates: int) -> tuple[SweepState, tuple]:
        """Advance every group `updates` updates. Returns the new state (the old one is
        donated) and per group its UpdateMetrics, fields (slots, updates)."""
        return self.compiled_chunk(state, updates)(state, self.hparams, self.env_params)

    def grow(self, state: SweepState, num_envs: int) -> SweepState:
        """Every member grown to num_envs envs (the old state is donated)."""
        envs = state_envs(state)
        if envs == num_envs:
            return state
        if (envs, num_envs) not in self._grow:
            t = time.perf_counter()
            target = self.abstract_state(num_envs)
            self._grow[envs, num_envs] = compile_lowered(jax.jit(
                partial(self._grown, num_envs=num_envs), donate_argnums=0,
                out_shardings=jax.tree.map(lambda x: x.sharding, target),
            ).lower(state, self.env_params), self.compile_options)
            self.compile_seconds += time.perf_counter() - t
        return self._grow[envs, num_envs](state, self.env_params)

    def abstract_state(self, num_envs: int | None = None) -> Any:
        """Shapes, dtypes and shardings of a SweepState with `num_envs` envs (default: the first
        chunk's): the restore target of checkpoints."""
        envs = self.plan.chunks[0][0] if num_envs is None else num_envs
        shape = jax.eval_shape(partial(self._init, num_envs=envs), self.hparams, self._seeds(),
                               self.env_params)
        return jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            shape, self._state_shardings(shape))

    def next_chunk(self, done: Sequence[tuple[int, int]], num_envs: int) -> tuple[int, int] | None:
        """(num_envs, updates) of the chunk after the chunks `done`, for a state with num_envs
        envs; None when the budget is spent."""
        plan = self.plan
        if not plan.adaptive:
            return plan.chunks[len(done)] if len(done) < plan.num_chunks else None
        spent = sum(e * n for e, n in done) * plan.rollout_length
        n = min(plan.spec.updates_per_chunk,
                (plan.spec.interactions - spent) // (num_envs * plan.rollout_length))
        return (num_envs, n) if n > 0 else None

    def next_envs(self, done: Sequence[tuple[int, int]], outputs: tuple) -> int:
        """num_envs after the chunks `done`, the last of which produced host `outputs`: the
        plan's, or (adaptive) the schedule's choice from the noise scale pooled over members."""
        plan = self.plan
        if not plan.adaptive:
            return plan.state_envs(len(done))
        g2 = np.concatenate([np.asarray(m.noise_g2, np.float64)[:len(plan.groups[g].members)]
                             .mean(1) for g, m in enumerate(outputs)])
        trace = np.concatenate([np.asarray(m.noise_trace, np.float64)[
            :len(plan.groups[g].members)].mean(1) for g, m in enumerate(outputs)])
        envs = done[-1][0]
        batch = envs * plan.rollout_length
        return self.schedule.next_envs(
            envs, sum(e * n for e, n in done) * plan.rollout_length,
            float(noise_scale_from_sums(g2, trace)), batch // self.configs[0].num_minibatches)


def state_envs(state: SweepState) -> int:
    """num_envs of a sweep state."""
    return state.groups[0].episode_return.shape[1]


def _to_host(tree: Any) -> Any:
    """Fetch a (possibly multi-host sharded) pytree as NumPy arrays on every process."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)


def _agree(flag: bool) -> bool:
    """Process 0's `flag` on every process (decisions read from the shared run directory, which
    process 0 may change at any moment, must be the same everywhere)."""
    if jax.process_count() == 1:
        return flag
    return bool(int(multihost_utils.broadcast_one_to_all(np.int32(flag))))


def _windows(n: int, log_interval: int) -> list[tuple[int, int]]:
    """Update ranges [a, b) of a chunk's log points: every log_interval updates, and its end."""
    ends = [*range(log_interval, n, log_interval), n]
    return list(zip([0, *ends[:-1]], ends, strict=True))


class _Checkpoints:
    """Orbax checkpoints of SweepState under DIR/checkpoints, step = chunks done, each with the
    checksums of its files in DIR/checkpoint_sums (scalelab.sweep.integrity)."""

    def __init__(self, rd: RunDir, runner: FusedRunner):
        self.rd = rd
        self.runner = runner
        self.manager = ocp.CheckpointManager(
            rd.checkpoint_dir.absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=3, create=True),
        )

    def _sums(self, step: int) -> Path:
        return self.rd.checkpoint_sums_dir / f"{step}.json"

    def save(self, state: SweepState) -> None:
        """Save `state` and, once orbax has finished writing it, record its checksums."""
        step = int(np.asarray(state.chunk))
        self.manager.save(step, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()
        if jax.process_index() != 0:
            return
        kept = set(self.manager.all_steps())
        if step in kept:
            write_checkpoint_sums(self.rd.checkpoint_dir / str(step), self._sums(step))
        for f in self.rd.checkpoint_sums_dir.glob("*.json"):
            if not f.stem.isdigit() or int(f.stem) not in kept:
                f.unlink()

    def restore_latest(self, envs_at: Callable[[int], int | None] | None = None
                       ) -> SweepState | None:
        """The newest checkpoint that verifies and restores (`envs_at(step)`: its num_envs, None
        if it cannot be used; default: the plan's); others newer than it are reported and moved
        to DIR/corrupt_checkpoints (a newer step left in place would make orbax skip saves)."""
        for step in sorted(self.manager.all_steps(), reverse=True):
            envs = (self.runner.plan.state_envs if envs_at is None else envs_at)(step)
            problem = ("the run's manifest or metrics journal does not reach this step"
                       if envs is None else
                       checkpoint_problem(self.rd.checkpoint_dir / str(step), self._sums(step)))
            if not _agree(problem is None):
                problem = problem or "process 0 found it unusable"
            if problem is None:
                try:
                    target = self.runner.abstract_state(envs)
                    return self.manager.restore(step, args=ocp.args.StandardRestore(target))
                except Exception as exc:  # noqa: BLE001 -- any failure to read means "corrupt"
                    problem = f"it failed to restore ({type(exc).__name__}: {exc})"
            self._move_aside(step, problem)
        return None

    def _move_aside(self, step: int, problem: str) -> None:
        aside = self.rd.path / "corrupt_checkpoints" / str(step)
        if jax.process_index() == 0:
            print(f"warning: checkpoint {step} in {self.rd.checkpoint_dir} is not used: "
                  f"{problem}; moved to {aside}, trying the previous one", file=sys.stderr)
            aside.parent.mkdir(exist_ok=True)
            shutil.rmtree(aside, ignore_errors=True)
            shutil.move(str(self.rd.checkpoint_dir / str(step)), aside)
            self._sums(step).unlink(missing_ok=True)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"scalelab checkpoint {step} moved aside")
        self.manager.reload()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _manifest(runner: FusedRunner, state_host: SweepState | None,
              done: Sequence[tuple[int, int]], envs: Sequence[int]) -> dict[str, Any]:
    """The manifest after the chunks `done` (envs: num_envs of the state after each of 0..)."""
    plan = runner.plan
    status = {}
    if state_host is not None:
        for g, slots in enumerate(runner.slots):
            for s, i in enumerate(slots[:len(plan.groups[g].members)]):
                fu = int(state_host.fault_update[g][s])
                status[i] = ("non_finite", fu) if bool(state_host.frozen[g][s]) else ("ok", None)
    rows = []
    for m, cfg in zip(plan.members, runner.configs, strict=True):
        st, fu = status.get(m.index, ("ok", None))
        rows.append({**m.row(plan.spec.env, plan.family), "gamma": cfg.gamma,
                     "gae_lambda": cfg.gae_lambda, "status": st, "fault_update": fu})
    updates = sum(n for _, n in done)
    return {
        "name": plan.spec.name,
        "family": plan.family,
        "score_kind": runner.score_kind,
        "updates_done": updates,
        "total_updates": None if plan.adaptive else plan.num_updates,
        "interactions_per_update": plan.interactions_per_update,
        "interactions_done": sum(e * n for e, n in done) * plan.rollout_length,
        "complete": runner.next_chunk(done, envs[-1]) is None,
        "chunks": [list(c) for c in done],
        "state_envs": list(envs),
        "counts": COUNTS,
        "members": rows,
    }


def _metric_rows(runner: FusedRunner, manifest_rows: list[dict], outputs: tuple,
                 done: Sequence[tuple[int, int]]) -> tuple[list[dict[str, Any]], list[str]]:
    """metrics.csv rows of the last chunk of `done` from its host outputs (per group)."""
    plan = runner.plan
    envs, n = done[-1]
    first = sum(k for _, k in done[:-1])
    start = sum(e * k for e, k in done[:-1]) * plan.rollout_length
    batch = envs * plan.rollout_length
    rows: list[dict[str, Any]] = []
    extra: list[str] = []
    for g, metrics in enumerate(outputs):
        points = []
        for a, b in _windows(n, plan.spec.log_interval):
            means = window_means(jax.tree.map(lambda x, a=a, b=b: np.asarray(x)[:, a:b], metrics),
                                 batch)
            points.append((b, {_RENAMED.get(k, k): v for k, v in means.items()}))
        extra = sorted(points[0][1])
        for s, i in enumerate(runner.slots[g][:len(plan.groups[g].members)]):
            m = manifest_rows[i]
            # frozen now (before or during this chunk): this chunk's training was undone
            valid = m["status"] == "ok"
            for b, values in points:
                rows.append({
                    "run": i, **{c: m[c] for c in ("member", "group", "params",
                                                   "flops_per_interaction", "seed", "lr",
                                                   "gamma", "gae_lambda", "width", "depth")},
                    "update": first + b,
                    "interactions": start + b * batch,
                    "score": float(values[runner.score_kind][s]),
                    "valid": valid,
                    **{name: float(values[name][s]) for name in extra},
                })
    return rows, extra


def _progress_bar(runner: FusedRunner) -> Callable[[Progress], None]:
    """The default progress display: a tqdm bar on stderr, updated after each chunk."""
    plan = runner.plan
    bar = tqdm(total=plan.total_interactions if not plan.adaptive else plan.spec.interactions,
               unit="step", unit_scale=True, dynamic_ncols=True,
               desc=f"{plan.spec.name}: {len(plan.members)} members/{len(plan.groups)} groups")

    def show(p: Progress) -> None:
        bar.update(p.interactions_done - bar.n)
        bar.set_postfix(faults=p.faults, score=f"{p.score:.4g}", chunks=p.chunks_done)
        if p.interactions_done >= bar.total:
            bar.close()

    return show


def execute(runner: FusedRunner, state: SweepState, *, rd: RunDir | None = None,
            done: Sequence[tuple[int, int]] | None = None, max_chunks: int | None = None,
            progress: bool | Callable[[Progress], None] = False,
            on_rows: Callable[[list[dict[str, Any]]], Any] | None = None,
            ) -> tuple[SweepState, list[dict[str, Any]]]:
    """Run the remaining chunks of `state` (after the chunks `done`: (num_envs, updates) pairs;
    default: the plan's first `state.chunk`), returning the final state and the metrics rows.
    With a run directory `rd`, every chunk's rows and the manifest are written there and
    checkpoints saved every `checkpoint_every` chunks and at the end.

    Stops after `max_chunks` chunks of this call (None: until the budget is spent). `progress`:
    False (silent), True (a bar on stderr), or a function called with a `Progress` after each
    chunk. `on_rows`: called on process 0 with each chunk's metrics rows once they are written
    (e.g. `scalelab.tensorboard.TensorBoardWriter.write`).
    """
    plan = runner.plan
    writer = rd is not None and jax.process_index() == 0
    ckpt = _Checkpoints(rd, runner) if rd is not None else None
    report = _progress_bar(runner) if progress is True else (progress or None)
    if report is not None and jax.process_index() != 0:
        report = None
    if done is None:
        if plan.adaptive and int(np.asarray(state.chunk)):
            raise ValueError("done: an adaptive run's chunks are not planned; pass them")
        done = plan.chunks[:int(np.asarray(state.chunk))]
    done = [tuple(c) for c in done]
    envs = [*(e for e, _ in done), state_envs(state)]  # of the state after 0, 1, ... chunks
    all_rows: list[dict[str, Any]] = []
    t0, ran = time.perf_counter(), 0
    try:
        while max_chunks is None or ran < max_chunks:
            chunk = runner.next_chunk(done, envs[-1])
            if chunk is None:
                break
            state, outputs = runner.step(state, chunk[1])
            host_out, state_host = _to_host((outputs, state.replace(groups=(), env_params=())))
            done.append(chunk)
            envs.append(runner.next_envs(done, host_out))
            state = runner.grow(state, envs[-1])
            manifest = _manifest(runner, state_host, done, envs)
            rows, extra = _metric_rows(runner, manifest["members"], host_out, done)
            all_rows.extend(rows)
            if writer:
                rd.append_metrics(rows, extra, chunk=len(done) - 1)
                rd.write_manifest(manifest)
            if on_rows is not None and jax.process_index() == 0:
                on_rows(rows)
            ran += 1
            if ckpt is not None and (len(done) % plan.spec.checkpoint_every == 0
                                     or manifest["complete"] or ran == max_chunks):
                ckpt.save(state)
            if report is not None:
                scores = np.asarray([r["score"] for r in rows if r["valid"]], np.float64)
                finite = scores[np.isfinite(scores)]
                report(Progress(len(done), manifest["interactions_done"],
                                plan.total_interactions, sum(r["status"] != "ok" for r in
                                                             manifest["members"]),
                                time.perf_counter() - t0,
                                float(finite.mean()) if finite.size else math.nan))
    finally:
        if ckpt is not None:
            ckpt.close()
    return state, all_rows


@contextlib.contextmanager
def _locked(rd: RunDir) -> Iterator[None]:
    """Hold the run directory's writer lock (process 0 takes it for all processes)."""
    lock, error = RunLock(rd.path), None
    if jax.process_index() == 0:
        try:
            lock.acquire()
        except RunLockedError as exc:
            error = exc
    if jax.process_count() > 1:
        ok = multihost_utils.broadcast_one_to_all(np.int32(error is None))
        if error is None and not int(ok):
            error = RunLockedError(f"{rd.path}: process 0 could not lock the run directory "
                                   f"(see its message)")
    if error is not None:
        raise error
    try:
        yield
    finally:
        lock.release()


def _check_reusable(rd: RunDir, text: str, path: str) -> None:
    """Refuse a run directory that holds another run, or one that cannot be identified."""
    if not rd.exists():
        leftovers = [f.name for f in (rd.checkpoint_dir, rd.metrics_file, rd.journal_file)
                     if f.exists() and (not f.is_dir() or any(f.iterdir()))]
        if leftovers:
            raise IntegrityError(
                f"{rd.path} holds {', '.join(leftovers)} but no manifest.json, so which run they "
                f"belong to is unknown; refusing to reuse or overwrite them. Use another output "
                f"directory, or remove them if they are not needed")
        return
    try:
        stored = rd.read_spec_text()
        manifest = rd.read_manifest()
    except (OSError, ValueError) as exc:
        raise IntegrityError(
            f"{rd.path} holds a run whose spec.toml or manifest.json cannot be read ({exc}); "
            f"refusing to reuse it. Use another output directory") from None
    if stored != text:
        raise SpecError(f"{path}: differs from the spec of the run already in {rd.path}; "
                        f"use another output directory")
    if not isinstance(manifest, dict) or manifest.get("name") != parse_spec(text, path).name:
        raise IntegrityError(f"{rd.manifest_file} belongs to another run than its spec.toml; "
                             f"refusing to reuse it. Use another output directory")


def run_spec(text: str, path: str, out: str | Path, *, max_chunks: int | None = None,
             progress: bool | Callable[[Progress], None] = False,
             devices: Sequence[Any] | None = None, tensorboard: str | Path | None = None,
             force: bool = False) -> tuple[FusedRunner, SweepState]:
    """Run (or resume) the sweep of spec `text` (named `path` in errors) into run directory
    `out`; returns the runner and the final state. `tensorboard`: a log directory that gets
    one TensorBoard event stream per member, written from the same rows as metrics.csv (needs
    the `tensorboard` extra; a resumed run hides the points it writes again).

    A fresh DIR: the spec and plan are fully validated, and the plan's memory estimate checked
    against the devices' memory (`force`: run anyway), before anything is written. Then DIR is
    locked against other writers for the whole run (`scalelab.sweep.lock`). An existing run DIR:
    its stored spec must equal `text`; the state comes from the newest checkpoint that verifies
    against its checksums and whose chunks the metrics journal records (none: from scratch);
    metrics.csv is rebuilt from the journal up to it, and training continues. A DIR with
    checkpoints or metrics but no manifest is refused (`IntegrityError`).
    """
    rd = RunDir(out)
    _check_reusable(rd, text, path)
    spec = parse_spec(text, path)
    plan = make_plan(spec)
    devices = list(jax.devices() if devices is None else devices)
    if not force:
        check_memory(plan, devices)
    with _locked(rd):
        _check_reusable(rd, text, path)
        return _run_locked(rd, plan, devices, _agree(rd.exists()), max_chunks=max_chunks,
                           progress=progress, tensorboard=tensorboard)


def _resume_state(rd: RunDir, runner: FusedRunner
                  ) -> tuple[SweepState | None, list[tuple[int, int]], list[int]]:
    """The restored state of the run in `rd` (None: none usable), its chunks done and the
    num_envs after each; metrics.csv and the journal are cut back to those chunks."""
    manifest = rd.read_manifest()
    recorded = [tuple(c) for c in manifest.get("chunks", [])]
    envs = manifest.get("state_envs", [])
    entries, problem = rd.journal.read()
    if problem is not None and jax.process_index() == 0:
        print(f"warning: {problem}; chunks from there on are trained again", file=sys.stderr)
    reach = min(len(envs) - 1, len(entries), len(recorded))
    state = _Checkpoints(rd, runner).restore_latest(
        lambda step: envs[step] if step <= reach else None)
    if state is None:
        return None, [], []
    done = recorded[:int(np.asarray(state.chunk))]
    if jax.process_index() == 0 and rd.restore_metrics(entries[:len(done)]):
        print(f"warning: {rd.metrics_file} did not match the metrics journal up to the "
              f"restored checkpoint (torn, shortened or edited); rebuilt it from "
              f"{rd.journal_file}", file=sys.stderr)
    return state, done, envs[:len(done) + 1]


def _run_locked(rd: RunDir, plan: Plan, devices: list[Any], existing: bool, *,
                max_chunks: int | None,
                progress: bool | Callable[[Progress], None], tensorboard: str | Path | None
                ) -> tuple[FusedRunner, SweepState]:
    """run_spec's work once the run directory is locked and checked."""
    runner = FusedRunner(plan, devices)
    state, done, envs = _resume_state(rd, runner) if existing else (None, [], [])
    if state is None:
        runner.compile_ahead()
        state = runner.init_state()
        if jax.process_index() == 0:
            rd.create(plan.spec.text, plan.to_json(),
                      _manifest(runner, None, [], [state_envs(state)]))
    else:
        flags = _to_host(state.replace(groups=(), env_params=()))  # a collective: every process
        if jax.process_index() == 0:
            rd.write_manifest(_manifest(runner, flags, done, envs))
    board = None
    if tensorboard is not None and jax.process_index() == 0:
        spent = sum(e * n for e, n in done) * plan.rollout_length
        board = TensorBoardWriter(tensorboard, rd.read_manifest()["members"],
                                  purge_step=spent + 1 if done else 0)
    try:
        state, _ = execute(runner, state, rd=rd, done=done, max_chunks=max_chunks,
                           progress=progress, on_rows=None if board is None else board.write)
    finally:
        if board is not None:
            board.close()
    return runner, state


def run_sweep(spec_path: str | Path | None, out: str | Path, *, resume: bool = False,
              max_chunks: int | None = None, progress: bool | Callable[[Progress], None] = True,
              devices: Sequence[Any] | None = None, tensorboard: str | Path | None = None,
              force: bool = False) -> RunDir:
    """Run (or resume) the sweep of `spec_path` into run directory `out`; returns the RunDir.

    `spec_path` None (or `resume`) continues the run already in `out` with its stored spec.
    `force`: run even if the plan's memory estimate exceeds the devices' memory.
    """
    rd = RunDir(out)
    if spec_path is None or (resume and rd.exists()):
        if not rd.exists():
            raise SpecError(f"{out}: no sweep to resume here (no manifest.json)")
        if not rd.spec_file.is_file():
            raise IntegrityError(f"{out}: has a manifest.json but no spec.toml, so the run "
                                 f"cannot be resumed; re-run its spec into another directory")
        if spec_path is not None and _read_spec(spec_path) != rd.read_spec_text():
            raise SpecError(f"{spec_path}: differs from the spec of the sweep already in {out}; "
                            f"use another --out")
        text, path = rd.read_spec_text(), str(rd.spec_file)
    elif resume:
        raise SpecError(f"{out}: no sweep to resume here (no manifest.json)")
    else:
        text, path = _read_spec(spec_path), str(spec_path)
    run_spec(text, path, out, max_chunks=max_chunks, progress=progress, devices=devices,
             tensorboard=tensorboard, force=force)
    return rd


def _read_spec(spec_path: str | Path) -> str:
    """The text of a spec file; unreadable or non-UTF-8 files are a SpecError naming it."""
    try:
        return Path(spec_path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{spec_path}: cannot read spec: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{spec_path}: not a UTF-8 text file (byte {exc.start}: "
                        f"{exc.reason}); a spec is TOML text") from None
