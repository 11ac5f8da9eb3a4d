"""Fused sweep runner: one jitted call advances every group K updates, sharded over devices.

Each group of a plan is a member-vmapped trainer chunk (`scalelab.train.make_chunk_fn`) over
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

Batch schedules: a "power" schedule depends only on the interactions done, so all members grow
together between chunks (`scalelab.members.grow_members`, jitted); one program is compiled per
num_envs; the state of chunk c has `Plan.state_envs(c)` envs, which is also how a checkpoint is
restored.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scalelab import members
from scalelab.sweep.plan import Plan, make_plan
from scalelab.sweep.rundir import RunDir
from scalelab.sweep.spec import SpecError, load_spec, parse_spec, train_config

__all__ = ["COUNTS", "FusedRunner", "SweepState", "execute", "run_sweep"]

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
    the update at which a fault was seen (-1: none). chunk: () int32, chunks done. env_params:
    per group the slots' own env params (leading slot axis) for envs with a level pool, else ().
    """

    groups: tuple
    frozen: tuple
    fault_update: tuple
    chunk: jax.Array
    env_params: tuple = ()


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


def _init_padded(cfg: Any, group_cfg: Any, obs_shape: tuple[int, ...], num_actions: int,
                 key: jax.Array) -> Any:
    """A member's params initialized at its own config from its root key, padded to the group's."""
    from scalelab import networks
    from scalelab.train import init_key

    own = networks.init_params(cfg, init_key(key), obs_shape, num_actions)
    return networks.pad_params(own, cfg, group_cfg, obs_shape, num_actions)


class FusedRunner:
    """The compiled program of a plan: initial state, one fused step, shardings.

    devices: the devices to shard members over (default: all of them, every host's).
    """

    def __init__(self, plan: Plan, devices: Sequence[Any] | None = None):
        import envs_jax
        from scalelab import networks
        from scalelab.sweep.plan import member_network
        from scalelab.train import MemberHparams, build_static

        self.plan = plan
        spec = plan.spec
        devices = list(jax.devices() if devices is None else devices)
        self.mesh = Mesh(np.array(devices), (_AXIS,))
        self.members_sharding = NamedSharding(self.mesh, PartitionSpec(_AXIS))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.env, env_params = envs_jax.make(spec.env, **spec.env_kwargs)
        self._env_params_host = jax.tree.map(np.asarray, env_params)
        self.env_params = jax.device_put(env_params, self.replicated)
        self.member_pools = members.has_level_pool(self.env)
        self.score_kind = envs_jax.score_kind(spec.env)
        n_dev = len(devices)
        # Slots of each group: its members, then inert copies of its first member up to a
        # multiple of the device count (their results are discarded).
        self.slots = [
            list(g.members) + [g.members[0]] * (-len(g.members) % n_dev) for g in plan.groups
        ]
        self.configs = [
            train_config(spec, width=m.width, depth=m.depth, seed=m.seed, lr=m.lr,
                         total_interactions=plan.total_interactions, **m.hparams)
            for m in plan.members
        ]
        self.networks = [member_network(spec, m.width, m.depth) for m in plan.members]
        self.statics, self.hparams = [], []
        for g, slots in zip(plan.groups, self.slots, strict=True):
            static, _ = build_static(self.configs[g.members[0]], self.env, plan.obs_shape)
            module = networks.build(g.network, plan.num_actions)
            self.statics.append(dataclasses.replace(
                static, apply_fn=module.apply, updates_per_chunk=spec.updates_per_chunk,
                aux_apply_fn=None if static.aux_apply_fn is None else partial(
                    module.apply, return_aux=True),
                num_envs=plan.chunk_envs[0], member_env_params=self.member_pools,
            ))
            hp = [MemberHparams.from_config(self.configs[i], 1) for i in slots]
            self.hparams.append(jax.tree.map(lambda *x: np.concatenate(x), *hp))
        self._hparams_host = tuple(self.hparams)
        self.hparams = tuple(self._shard(hp) for hp in self.hparams)
        self._compiled: dict[int, Any] = {}
        self._grow: dict[tuple[int, int], Any] = {}
        self._jitted: dict[tuple, Any] = {}

    def _jit(self, key: tuple, fn: Any) -> Any:
        """jax.jit(fn), kept under `key` so that a second init_state compiles nothing."""
        if key not in self._jitted:
            self._jitted[key] = jax.jit(fn)
        return self._jitted[key]

    def _static(self, g: int, num_envs: int) -> Any:
        return dataclasses.replace(self.statics[g], num_envs=num_envs)

    def _shard(self, tree: Any) -> Any:
        return jax.device_put(tree, self.members_sharding)

    def _group_params(self, g: int) -> Any:
        """Fresh params of group g's slots: each member initialized at its own width from its
        seed, then zero-padded, one member at a time (see `init_state`)."""
        from scalelab.train import member_root_keys

        plan, group = self.plan, self.plan.groups[g]
        keys = member_root_keys([plan.members[i].seed for i in self.slots[g]])
        inits = {cfg: self._jit(("params", cfg, group.network),
                                partial(_init_padded, cfg, group.network, plan.obs_shape,
                                        plan.num_actions))
                 for cfg in {self.networks[i] for i in self.slots[g]}}
        params = [inits[self.networks[i]](key) for i, key in zip(self.slots[g], keys, strict=True)]
        return jax.tree.map(lambda *x: jnp.stack(x), *params)

    def _group_env_params(self, g: int, env_params: Any) -> Any:
        """Group g's slots' own env params (their level pools), or () if shared."""
        from scalelab.members import init_level_pools
        from scalelab.train import member_root_keys

        if not self.member_pools:
            return ()
        keys = member_root_keys([self.plan.members[i].seed for i in self.slots[g]])
        return init_level_pools(self.statics[g], keys, env_params)

    def _group_members(self, g: int, num_envs: int, hparams: Any, params: Any, env_params: Any
                       ) -> Any:
        """Group g's initial MemberState from its params (optimizer, env resets, counters),
        with num_envs envs (grown from the first chunk's as the batch schedule does)."""
        from scalelab.members import grow_members
        from scalelab.train import init_members, member_root_keys

        keys = member_root_keys([self.plan.members[i].seed for i in self.slots[g]])
        state = init_members(self.statics[g], hparams, keys, params, env_params)
        return grow_members(self.statics[g], state, num_envs, env_params)[1]

    def _init(self, hparams: tuple, env_params: Any, num_envs: int) -> SweepState:
        pools = tuple(self._group_env_params(g, env_params) for g in range(len(hparams)))
        return SweepState(
            groups=tuple(self._group_members(g, num_envs, hp, self._group_params(g),
                                             pools[g] if self.member_pools else env_params)
                         for g, hp in enumerate(hparams)),
            frozen=tuple(jnp.zeros(len(s), bool) for s in self.slots),
            fault_update=tuple(jnp.full(len(s), -1, jnp.int32) for s in self.slots),
            chunk=jnp.zeros((), jnp.int32),
            env_params=pools if self.member_pools else (),
        )

    def _state_shardings(self, state: Any) -> Any:
        shardings = jax.tree.map(lambda _: self.members_sharding, state)
        return shardings.replace(chunk=self.replicated)

    def init_state(self) -> SweepState:
        """The sweep's initial state, sharded over the mesh.

        Parameters are initialized member by member (one compiled program per network config,
        not vmapped), the rest of each group's state by one compiled program, on this process's
        first device; the state is then copied through the host into the member sharding (each
        process fills the shards it owns). On this XLA:CPU (jax 0.10.2) a vmapped
        `networks.init_params` of the MNIST CNN (4 keys) hangs reproducibly (batched QR of the
        orthogonal init), and initializing straight into the sharding hung too.
        """
        envs = self.plan.chunk_envs[0]
        shape = jax.eval_shape(partial(self._init, num_envs=envs), self.hparams, self.env_params)
        device = jax.local_devices()[0]
        env_params = jax.device_put(self._env_params_host, device)
        groups, pools = [], []
        for g, hp in enumerate(self._hparams_host):
            with jax.default_device(device):
                params = self._group_params(g)
            pool = self._jit(("pools", g), partial(self._group_env_params, g))(env_params)
            state = self._jit(("members", g, envs), partial(self._group_members, g, envs))(
                jax.device_put(hp, device), params, pool if self.member_pools else env_params)
            groups.append(jax.tree.map(np.asarray, state))
            pools.append(jax.tree.map(np.asarray, pool))
        host = shape.replace(
            groups=tuple(groups),
            env_params=tuple(pools) if self.member_pools else (),
            frozen=tuple(np.zeros(x.shape, bool) for x in shape.frozen),
            fault_update=tuple(np.full(x.shape, -1, np.int32) for x in shape.fault_update),
            chunk=np.zeros((), np.int32),
        )
        return jax.tree.map(
            lambda x, sh: jax.make_array_from_callback(x.shape, sh, lambda idx: x[idx]),
            host, self._state_shardings(shape))

    def _fused(self, state: SweepState, hparams: tuple, env_params: Any, num_envs: int
               ) -> tuple[SweepState, tuple]:
        from scalelab.train import make_chunk_fn

        k = self.plan.spec.updates_per_chunk
        groups, pools, frozen, faults, metrics = [], [], [], [], []
        for g, (s, h, fr, fu) in enumerate(zip(state.groups, hparams, state.frozen,
                                               state.fault_update, strict=True)):
            ep = state.env_params[g] if self.member_pools else env_params
            new, new_ep, m = make_chunk_fn(self._static(g, num_envs), carry_env_params=True)(
                s, h, ep)
            first_bad = _first_bad_update(m)
            ok = _finite_members(new.params) & (first_bad == k)
            newly = ~ok & ~fr
            fr_next = fr | ~ok
            groups.append(jax.tree.map(partial(_select, fr_next), s, new))
            if self.member_pools:
                pools.append(jax.tree.map(partial(_select, fr_next), ep, new_ep))
            frozen.append(fr_next)
            faults.append(jnp.where(newly, state.chunk * k + jnp.minimum(first_bad, k - 1) + 1,
                                    fu))
            metrics.append(m)
        new_state = SweepState(tuple(groups), tuple(frozen), tuple(faults), state.chunk + 1,
                               tuple(pools))
        return new_state, tuple(metrics)

    def _grown(self, state: SweepState, env_params: Any, num_envs: int) -> SweepState:
        """The state with every group grown from its current num_envs to `num_envs`."""
        from scalelab.members import grow_members

        groups = []
        for g, s in enumerate(state.groups):
            ep = state.env_params[g] if self.member_pools else env_params
            groups.append(grow_members(self._static(g, s.episode_return.shape[1]), s, num_envs,
                                       ep)[1])
        return state.replace(groups=tuple(groups))

    def lower_chunk(self, state: SweepState) -> Any:
        """The fused chunk program lowered for `state`'s shapes (a SweepState of arrays or of
        `jax.ShapeDtypeStruct`s: nothing is allocated): jax's Lowered, to compile."""
        envs = state.groups[0].episode_return.shape[1]
        fused = partial(self._fused, num_envs=envs)
        return jax.jit(fused, donate_argnums=0).lower(state, self.hparams, self.env_params)

    def compiled_chunk(self, state: SweepState) -> Any:
        """The compiled fused chunk program for `state`'s batch shape (cached per num_envs):
        (state, hparams, env_params) -> (state, metrics), the state donated."""
        envs = state.groups[0].episode_return.shape[1]
        if envs not in self._compiled:
            self._compiled[envs] = self.lower_chunk(state).compile()
        return self._compiled[envs]

    def step(self, state: SweepState) -> tuple[SweepState, tuple]:
        """Advance every group one chunk, then grow the batch if the schedule says so. Returns
        the new state (the old one is donated) and per group its UpdateMetrics, fields
        (slots, K)."""
        envs = state.groups[0].episode_return.shape[1]
        state, metrics = self.compiled_chunk(state)(state, self.hparams, self.env_params)
        if len(set(self.plan.chunk_envs)) > 1:
            nxt = self.plan.state_envs(int(np.asarray(state.chunk)))
            if nxt != envs:
                if (envs, nxt) not in self._grow:
                    target = self.abstract_state(num_envs=nxt)
                    self._grow[envs, nxt] = jax.jit(
                        partial(self._grown, num_envs=nxt), donate_argnums=0,
                        out_shardings=jax.tree.map(lambda x: x.sharding, target))
                state = self._grow[envs, nxt](state, self.env_params)
        return state, metrics

    def abstract_state(self, chunks_done: int = 0, num_envs: int | None = None) -> Any:
        """Shapes, dtypes and shardings of a SweepState after `chunks_done` chunks (with
        `num_envs` envs if given: the restore target of checkpoints)."""
        envs = self.plan.state_envs(chunks_done) if num_envs is None else num_envs
        shape = jax.eval_shape(partial(self._init, num_envs=envs), self.hparams, self.env_params)
        return jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            shape, self._state_shardings(shape))


def _to_host(tree: Any) -> Any:
    """Fetch a (possibly multi-host sharded) pytree as NumPy arrays on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, tree)


def _log_points(metrics: Any, plan: Plan, chunk: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Window means over each `log_interval` updates: name -> (slots, K/L); update (K/L,)."""
    from scalelab.train import window_means

    k, li = plan.spec.updates_per_chunk, plan.spec.log_interval
    slots = metrics.reward_sum.shape[0]
    windows = jax.tree.map(lambda x: np.asarray(x).reshape(slots * (k // li), li), metrics)
    means = window_means(windows, plan.chunk_envs[chunk] * plan.rollout_length)
    # the trainer's "lr" is the step size used (annealed or not); the member's lr keeps its name
    out = {_RENAMED.get(name, name): v.reshape(slots, k // li) for name, v in means.items()}
    updates = chunk * k + li * np.arange(1, k // li + 1)
    return out, updates


class _Checkpoints:
    """Orbax checkpoints of SweepState under DIR/checkpoints, step = chunks done."""

    def __init__(self, rd: RunDir, runner: FusedRunner):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.rd = rd
        self.runner = runner
        self.manager = ocp.CheckpointManager(
            rd.checkpoint_dir.absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=3, create=True),
        )

    def save(self, state: SweepState) -> None:
        step = int(np.asarray(state.chunk))
        self.manager.save(step, args=self._ocp.args.StandardSave(state))

    def restore_latest(self) -> SweepState | None:
        """The newest checkpoint that restores; corrupt ones are reported and moved aside."""
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                target = self.runner.abstract_state(step)
                return self.manager.restore(step, args=self._ocp.args.StandardRestore(target))
            except Exception as exc:  # noqa: BLE001 -- any failure to read means "corrupt"
                aside = self.rd.path / "corrupt_checkpoints" / str(step)
                print(f"warning: checkpoint {step} in {self.rd.checkpoint_dir} failed to restore "
                      f"({type(exc).__name__}: {exc}); moved to {aside}, trying the previous one",
                      file=sys.stderr)
                aside.parent.mkdir(exist_ok=True)
                shutil.rmtree(aside, ignore_errors=True)
                shutil.move(str(self.rd.checkpoint_dir / str(step)), aside)
                self.manager.reload()
        return None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _manifest(plan: Plan, runner: FusedRunner, state_host: SweepState | None,
              updates_done: int) -> dict[str, Any]:
    rows = []
    status = {}
    if state_host is not None:
        for g, slots in enumerate(runner.slots):
            for s, i in enumerate(slots[:len(plan.groups[g].members)]):
                fu = int(state_host.fault_update[g][s])
                status[i] = ("non_finite", fu) if bool(state_host.frozen[g][s]) else ("ok", None)
    for m, cfg in zip(plan.members, runner.configs, strict=True):
        st, fu = status.get(m.index, ("ok", None))
        rows.append({**m.row(plan.spec), "gamma": cfg.gamma, "gae_lambda": cfg.gae_lambda,
                     "status": st, "fault_update": fu})
    return {
        "name": plan.spec.name,
        "score_kind": runner.score_kind,
        "updates_done": updates_done,
        "total_updates": plan.num_updates,
        "interactions_per_update": plan.interactions_per_update,
        "interactions_done": plan.interactions_after(updates_done),
        "complete": updates_done >= plan.num_updates,
        "counts": COUNTS,
        "members": rows,
    }


def _metric_rows(plan: Plan, runner: FusedRunner, manifest_rows: list[dict], chunk: int,
                 outputs: tuple) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    extra: list[str] = []
    for g, metrics in enumerate(outputs):
        points, updates = _log_points(metrics, plan, chunk)
        extra = sorted(points)
        n = len(plan.groups[g].members)
        for s, i in enumerate(runner.slots[g][:n]):
            m = manifest_rows[i]
            # frozen now (before or during this chunk): this chunk's training was undone
            valid = m["status"] == "ok"
            for j, u in enumerate(updates):
                rows.append({
                    "run": i, **{c: m[c] for c in ("member", "group", "params",
                                                   "flops_per_interaction", "seed", "lr",
                                                   "gamma", "gae_lambda", "width", "depth")},
                    "update": int(u),
                    "interactions": plan.interactions_after(int(u)),
                    "score": float(points[runner.score_kind][s, j]),
                    "valid": valid,
                    **{name: float(points[name][s, j]) for name in extra},
                })
    return rows, extra


def execute(runner: FusedRunner, rd: RunDir, state: SweepState, *,
            max_chunks: int | None = None, progress: bool = True) -> SweepState:
    """Run the remaining chunks of `state`, writing metrics, manifest and checkpoints into `rd`.

    Stops after `max_chunks` chunks of this call (None: until the sweep is done).
    """
    from tqdm.auto import tqdm

    plan = runner.plan
    spec = plan.spec
    writer = jax.process_index() == 0
    ckpt = _Checkpoints(rd, runner)
    start = int(np.asarray(state.chunk))
    end = plan.num_chunks if max_chunks is None else min(plan.num_chunks, start + max_chunks)
    k = spec.updates_per_chunk
    bar = tqdm(total=plan.total_interactions, initial=plan.interactions_after(start * k),
               unit="step",
               unit_scale=True, disable=not (progress and writer), dynamic_ncols=True,
               desc=f"{spec.name}: {len(plan.members)} members/{len(plan.groups)} groups")
    t0 = time.perf_counter()
    try:
        for chunk in range(start, end):
            state, outputs = runner.step(state)
            host_out, state_host = _to_host((outputs, state.replace(groups=(), env_params=())))
            manifest = _manifest(plan, runner, state_host, (chunk + 1) * spec.updates_per_chunk)
            rows, extra = _metric_rows(plan, runner, manifest["members"], chunk, host_out)
            if writer:
                rd.append_metrics(rows, extra)
                rd.write_manifest(manifest)
            done = chunk + 1
            if done % spec.checkpoint_every == 0 or done == plan.num_chunks or done == end:
                ckpt.save(state)
            faults = sum(r["status"] != "ok" for r in manifest["members"])
            bar.update(plan.interactions_after(done * k) - plan.interactions_after(chunk * k))
            bar.set_postfix(faults=faults, chunk=f"{done}/{plan.num_chunks}",
                            s_per_chunk=f"{(time.perf_counter() - t0) / (done - start):.2f}")
    finally:
        ckpt.close()
        bar.close()
    return state


def run_sweep(spec_path: str | Path | None, out: str | Path, *, resume: bool = False,
              max_chunks: int | None = None, progress: bool = True,
              devices: Sequence[Any] | None = None) -> RunDir:
    """Run (or resume) the sweep of `spec_path` into run directory `out`; returns the RunDir.

    A fresh DIR: the spec and plan are fully validated before anything is written. An existing
    DIR (or `resume`): the stored spec is used (a given spec must match it), the state comes
    from the newest checkpoint that restores (none: from scratch), and metrics rows past it are
    dropped before training continues.
    """
    rd = RunDir(out)
    if rd.exists():
        text = rd.read_spec_text()
        if spec_path is not None and Path(spec_path).read_text() != text:
            raise SpecError(f"{spec_path}: differs from the spec of the sweep already in {out}; "
                            f"use another --out")
        spec = parse_spec(text, str(rd.spec_file))
    elif resume or spec_path is None:
        raise SpecError(f"{out}: no sweep to resume here (no manifest.json)")
    else:
        spec = load_spec(spec_path)
    plan = make_plan(spec)
    runner = FusedRunner(plan, devices)
    state = None
    if rd.exists():
        state = _Checkpoints(rd, runner).restore_latest()
    if state is None:
        state = runner.init_state()
        if jax.process_index() == 0:
            rd.create(spec.text, plan.to_json(), _manifest(plan, runner, None, 0))
    else:
        done = int(np.asarray(state.chunk)) * spec.updates_per_chunk
        if jax.process_index() == 0:
            rd.truncate_metrics(done)
            rd.write_manifest(_manifest(plan, runner, _to_host(state.replace(groups=(),
                                                                             env_params=())),
                                        done))
    execute(runner, rd, state, max_chunks=max_chunks, progress=progress)
    return rd

