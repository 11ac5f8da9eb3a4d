"""Sweep planner: expand a spec into members, pack them into vmapped groups, estimate memory.

Members whose networks have the same shapes share a group (one vmapped program each). Members of
different widths can share a group too, zero-padded to the group's width (exact: see
`scalelab.networks.pad_params`), at the price of padded FLOPs. The planner picks, per depth, the
fewest groups whose padded FLOPs stay within `max_padding_overhead` of the unpadded total.

Sizes reported per member: `params` counts every parameter the member trains (policy tower and
logits head, value tower and value head, and PPG's auxiliary value head);
`policy_params` counts only the policy tower and its logits head, the acting network (the
paper's N); `flops_per_interaction` is the forward pass of everything in `params` for one
observation (`scalelab.networks.forward_flops`).

Memory (`memory_per_member`, what `scalelab sweep plan` prints): the bytes one more member adds
to its group's compiled chunk program, as XLA accounts for it (`scalelab.sweep.xla_memory`:
arguments + outputs + temporaries - donated, 2 members minus 1). It is an analytic model, instant,
whose terms come from XLA:CPU's buffer assignment of the chunk program (read from
`--xla_dump_to` dumps while varying one factor at a time): the state (parameters, gradients, Adam
moments), the rollout's transitions, PPG's buffer, level pools (twice: a refresh writes a copy),
and the peak of a minibatch update, which dominates for CNNs and is linear in the minibatch size:
per observation, 2.6 float32 buffers per conv output (its value and gradient, pre-pool), 0.28 per
shifted input slice of a "taps" convolution (`scalelab.networks.conv_taps`, the CPU default for
few-channel layers), 2.0 per dense output; the max-pools (dense-gradient, `scalelab.maxpool`) and
the observation floats add nothing measurable beyond these. The coefficients were refitted
(non-negative least squares on estimate / XLA) on 9 CPU configs (mnist_cnn widths 1/64-1/8,
impala 1/32-1/8 at depth 1-2, mlp; ppo, ppo_ewma, ppg; 8-32 envs) when the kernel gradients went
by rows and the conv programs lost XLA:CPU's YNNPACK fusions (`scalelab.xla_options`), which cut
the MNIST members' bytes to about a third: estimate / XLA 0.84-1.10.
Stated tolerance: within a factor 1.5 of XLA:CPU (`tests/test_sweep_memory.py`). `sweep plan
--compile` prints XLA's exact number per group instead (two compiles per group, no allocation).
On a GPU the buffer assignment differs (library convolutions, native max-pool gradients, other
fusions), so the estimate there is a CPU-calibrated guide, likely high for CNNs; `--compile` on
the GPU host gives the GPU's own number.

Budget and chunks: every member runs the budget rounded down to whole updates, in chunks of
`updates_per_chunk` updates and a shorter last chunk if needed. The members of a sweep share one
batch schedule (`[train] batch_schedule`): "fixed" and "power" are functions of the interactions
done, so `Plan.chunks` lists (num_envs, updates) of every chunk in advance and the whole sweep
grows together at chunk boundaries; "adaptive" (allowed when the members differ only by seed,
as in `scalelab.train`) grows from the noise scale measured over all members, so its chunks are
decided by the runner as it goes (`Plan.chunks` is then only the first chunk's plan).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

import envs_jax
from envs_jax.data import MnistDataError
from scalelab import networks
from scalelab.algos import decoupled
from scalelab.algos.ppg import aux_buffer_bytes
from scalelab.config import TrainConfig, default_family
from scalelab.members import has_level_pool
from scalelab.sweep.spec import SpecError, SweepSpec, train_config

if TYPE_CHECKING:  # gymnax imported at start-up would start XLA before jax.distributed
    from gymnax.environments.environment import Environment, EnvParams

__all__ = [
    "Group", "Member", "Plan", "choose_partition", "interactions_after", "make_plan",
    "member_network", "memory_per_member",
]

# Floats kept per transition in the rollout buffer besides observations (action, log-prob, value,
# reward, done flags, advantage, return, ...), and copies of the parameters alive at the peak of
# an update besides the optimizer moments and the EWMA (params, gradients, the update itself).
_FLOATS_PER_TRANSITION = 12
_PARAM_COPIES = 3
# float32 buffers per float of these layer kinds (see `networks.activation_floats`; its "pool"
# floats and the observation's fitted to 0 and are left out), alive at the peak of a minibatch
# update: fitted to XLA:CPU's buffer assignment (module docstring).
_PER_LAYER_KIND = {"conv": 2.6, "taps": 0.28, "dense": 2.0}


@dataclasses.dataclass(frozen=True)
class Member:
    """One training run of the sweep and where it lives (group, slot within the group)."""

    index: int
    width: float
    depth: int | None
    param_ratio: float | None
    seed: int
    lr: float
    lr_scale: float
    hparams: Mapping[str, float]
    params: int
    policy_params: int
    flops_per_interaction: int
    group: int
    slot: int

    def row(self, env: str, family: str) -> dict[str, Any]:
        """This member as a flat manifest row (JSON-safe)."""
        return {
            "member": self.index,
            "group": self.group,
            "slot": self.slot,
            "env": env,
            "family": family,
            "width": self.width,
            "depth": self.depth,
            "param_ratio": self.param_ratio,
            "params": self.params,
            "policy_params": self.policy_params,
            "flops_per_interaction": self.flops_per_interaction,
            "seed": self.seed,
            "lr": self.lr,
            "lr_scale": self.lr_scale,
            **dict(self.hparams),
        }


@dataclasses.dataclass(frozen=True)
class Group:
    """Members vmapped together, all padded to `network` (a NetworkConfig)."""

    index: int
    network: networks.NetworkConfig
    members: tuple[int, ...]
    unpadded_flops: int
    padded_flops: int
    memory_per_member: int

    @property
    def memory_bytes(self) -> int:
        """Estimated device memory of the whole group (bytes)."""
        return self.memory_per_member * len(self.members)


def interactions_after(chunks: Sequence[tuple[int, int]], rollout_length: int, updates: Any
                       ) -> Any:
    """Interactions per member after `updates` updates (int, or an int array of them) of a run
    whose chunks are (num_envs, updates) pairs: E(u) = Σ over updates done of num_envs · T."""
    envs = np.asarray([e for e, _ in chunks], np.int64)
    sizes = np.asarray([n for _, n in chunks], np.int64)
    first = np.concatenate([[0], np.cumsum(sizes)])
    starts = np.concatenate([[0], np.cumsum(sizes * envs * rollout_length)])
    u = np.asarray(updates, np.int64)
    c = np.clip(np.searchsorted(first, u, side="right") - 1, 0, len(chunks) - 1)
    out = starts[c] + (u - first[c]) * envs[c] * rollout_length
    return int(out) if out.ndim == 0 else out


@dataclasses.dataclass(frozen=True)
class Plan:
    """The expanded sweep: members, groups and the update/chunk schedule.

    family: the network family (the spec's, or `default_family` of the observations).
    chunks[c]: (num_envs, updates) of chunk c: every member runs `updates` updates of
    num_envs * rollout_length interactions in it (see the module docstring). env, env_params:
    the built environment (shared by the runner).
    """

    spec: SweepSpec
    family: str
    members: tuple[Member, ...]
    groups: tuple[Group, ...]
    obs_shape: tuple[int, ...]
    num_actions: int
    rollout_length: int
    chunks: tuple[tuple[int, int], ...]
    env: Environment | None = dataclasses.field(repr=False, compare=False, default=None)
    env_params: EnvParams | None = dataclasses.field(repr=False, compare=False, default=None)

    @property
    def adaptive(self) -> bool:
        """Whether the batch schedule is "adaptive" (chunks decided while running)."""
        return self.spec.train.get("batch_schedule") == "adaptive"

    @property
    def chunk_envs(self) -> tuple[int, ...]:
        """num_envs of each planned chunk."""
        return tuple(e for e, _ in self.chunks)

    @property
    def num_chunks(self) -> int:
        """Chunks (compiled calls) of the whole sweep."""
        return len(self.chunks)

    @property
    def interactions_per_update(self) -> int:
        """Interactions per update of the first chunk (of every chunk without a schedule)."""
        return self.chunks[0][0] * self.rollout_length

    @property
    def num_updates(self) -> int:
        """Updates per member over the whole sweep."""
        return sum(n for _, n in self.chunks)

    @property
    def total_interactions(self) -> int:
        """Interactions per member actually run (the budget rounded down to whole updates)."""
        return self.interactions_after(self.num_updates)

    def state_envs(self, chunks_done: int) -> int:
        """num_envs of the sweep state after `chunks_done` chunks (the next chunk's; the last
        chunk's once all are done)."""
        return self.chunks[min(chunks_done, self.num_chunks - 1)][0]

    def interactions_after(self, updates: Any) -> Any:
        """Interactions per member after `updates` updates (see `interactions_after`)."""
        return interactions_after(self.chunks, self.rollout_length, updates)

    @property
    def padding_overhead(self) -> float:
        """Padded FLOPs over unpadded FLOPs, minus one, over all groups."""
        unpadded = sum(g.unpadded_flops for g in self.groups)
        return sum(g.padded_flops for g in self.groups) / unpadded - 1.0

    def describe(self) -> str:
        """A human-readable summary: schedule, then one line per group."""
        s = self.spec
        lines = [
            f"sweep {s.name!r}: {len(self.members)} members in {len(self.groups)} groups, "
            f"env {s.env}, network {self.family}"
            + ("" if s.family else " (default for its observations)"),
            f"  {self.total_interactions:,} interactions per member = {self.num_updates} updates "
            f"in {self.num_chunks} chunks of <= {s.updates_per_chunk}, "
            + (f"{self.interactions_per_update} interactions each" if len(set(self.chunk_envs))
               == 1 else f"{self.rollout_length} steps x num_envs growing "
               f"{' -> '.join(str(e) for e in sorted(set(self.chunk_envs)))}")
            + (f" (budget {s.interactions:,} rounded down)"
               if self.total_interactions != s.interactions else "")
            + (" (adaptive batch: chunks decided while running)" if self.adaptive else ""),
            f"  padded-FLOP overhead {100 * self.padding_overhead:.1f}% "
            f"(allowed {100 * s.max_padding_overhead:.0f}%)",
        ]
        for g in self.groups:
            widths = sorted({self.members[i].width for i in g.members})
            lines.append(
                f"  group {g.index}: {len(g.members):3d} members, width {g.network.width:.4g}"
                f" (members' widths {', '.join(f'{w:.4g}' for w in widths)})"
                + (f", depth {g.network.depth}" if g.network.depth is not None else "")
                + f", padding +{100 * (g.padded_flops / g.unpadded_flops - 1):.1f}%"
                f" FLOPs, ~{_mib(g.memory_bytes)} ({_mib(g.memory_per_member)}/member)"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON-safe data (written as plan.json in a run directory)."""
        return {
            "name": self.spec.name,
            "family": self.family,
            "obs_shape": list(self.obs_shape),
            "num_actions": self.num_actions,
            "interactions_per_update": self.interactions_per_update,
            "rollout_length": self.rollout_length,
            "chunks": [list(c) for c in self.chunks],
            "num_chunks": self.num_chunks,
            "updates_per_chunk": self.spec.updates_per_chunk,
            "total_interactions": self.total_interactions,
            "padding_overhead": self.padding_overhead,
            "groups": [
                {
                    "group": g.index,
                    "network": dataclasses.asdict(g.network),
                    "members": list(g.members),
                    "unpadded_flops": g.unpadded_flops,
                    "padded_flops": g.padded_flops,
                    "memory_per_member": g.memory_per_member,
                }
                for g in self.groups
            ],
            "members": [m.row(self.spec.env, self.family) for m in self.members],
        }


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def choose_partition(
    counts: Sequence[int], group_cost: Callable[[int, int], float], max_overhead: float
) -> list[tuple[int, int]]:
    """Fewest contiguous groups of sizes (sorted ascending) within a padded-cost budget.

    Sizes i = 0..n-1 hold counts[i] members; `group_cost(i, j)` is the per-member cost of a group
    padded to size j holding sizes i..j (increasing in j). A partition into groups [i, j] costs
    Σ_groups (Σ_{i..j} counts) · group_cost(i, j). Among partitions whose cost is at most
    (1 + max_overhead) × the unpadded cost Σ_i counts[i] · group_cost(i, i), return one with the
    fewest groups, ties broken by lower cost, as a list of inclusive (i, j) ranges.
    Dynamic programming over (groups, prefix): O(n³) cost evaluations at most.
    """
    n = len(counts)
    prefix = list(itertools.accumulate(counts, initial=0))
    cost = {(i, j): (prefix[j + 1] - prefix[i]) * group_cost(i, j)
            for i in range(n) for j in range(i, n)}
    budget = (1.0 + max_overhead) * sum(cost[(i, i)] for i in range(n))
    # best[j] = (cost, ranges) of the cheapest split of sizes 0..j-1 into k groups
    best: list[tuple[float, list[tuple[int, int]]] | None] = [(0.0, [])] + [None] * n
    for _ in range(n):
        nxt: list[tuple[float, list[tuple[int, int]]] | None] = [None] * (n + 1)
        for j in range(1, n + 1):
            for i in range(j):
                if best[i] is None:
                    continue
                c = best[i][0] + cost[(i, j - 1)]
                if nxt[j] is None or c < nxt[j][0]:
                    nxt[j] = (c, best[i][1] + [(i, j - 1)])
        best = nxt
        if best[n] is not None and best[n][0] <= budget * (1 + 1e-12):
            return best[n][1]
    raise AssertionError("one group per size always meets the budget")


def memory_per_member(
    network: networks.NetworkConfig, obs_shape: tuple[int, ...], obs_dtype: Any, num_actions: int,
    train_cfg: TrainConfig,
    num_envs: int | None = None, env_params_bytes: int = 0,
) -> int:
    """Estimated device bytes one more member adds to a group padded to `network` (the
    analytic model of the module docstring; `scalelab.sweep.xla_memory` gives XLA's number).

    bytes = 4·P·(3 + m + w)                       parameters, gradients, update, m Adam moment
                                                  copies (2; PPG's three Adams: 4), w = 1 for
                                                  the -EWMA average
          + n·(2·obs_bytes + 48)                  the rollout: observations, final observations
                                                  and 12 floats per transition, n = T·E
          + PPG: N_π·n·(obs_bytes + 4)            the auxiliary buffer
          + 2·env_params_bytes                    a member-owned level pool, if any, and the
                                                  refreshed copy an update writes
          + 4·b·(c_conv·C + c_taps·S + c_dense·D)   the minibatch update

    with P parameters, b = n / num_minibatches the minibatch, and per observation: C the conv
    layers' output floats (both towers), S the shifted input slices of the "taps" convolutions
    (k²·H_out·W_out·C_in per layer; the first layer's, slices of the shared observation, counted
    once), D the dense layers' output floats; the c's are _PER_LAYER_KIND. T rollout length, E envs
    (`num_envs`, default train_cfg.num_envs: pass a batch schedule's largest).
    """
    envs = train_cfg.num_envs if num_envs is None else num_envs
    batch = envs * train_cfg.rollout_length
    minibatch = batch // train_cfg.num_minibatches
    obs_bytes = math.prod(obs_shape) * np.dtype(jnp.dtype(obs_dtype)).itemsize
    phasic = decoupled.is_phasic(train_cfg.algo)
    copies = _PARAM_COPIES + (4 if phasic else 2) + (1 if decoupled.is_ewma(train_cfg.algo) else 0)
    aux = aux_buffer_bytes(train_cfg.ppg_n_pi, batch, obs_shape, obs_dtype) if phasic else 0
    layers = networks.activation_floats(network, obs_shape)
    update = 4 * minibatch * sum(c * layers[kind] for kind, c in _PER_LAYER_KIND.items())
    return int(
        4 * networks.param_count(network, obs_shape, num_actions) * copies
        + batch * (2 * obs_bytes + 4 * _FLOATS_PER_TRANSITION)
        + aux + 2 * env_params_bytes + update
    )


def member_network(config: TrainConfig) -> networks.NetworkConfig:
    """The NetworkConfig a member trains at its own width: its family and activation, plus the
    auxiliary value head when the algorithm is PPG or PPG-EWMA (`config.network` resolved)."""
    return networks.NetworkConfig(
        config.network, width=config.width, depth=config.depth, activation=config.activation,
        aux_value_head=decoupled.is_phasic(config.algo),
    )


def _chunks(spec: SweepSpec, base_cfg: TrainConfig) -> tuple[tuple[int, int], ...]:
    """(num_envs, updates) of each chunk: chunks of updates_per_chunk updates while the budget
    allows, then a shorter one; the batch schedule applied after each chunk (an adaptive one,
    which needs measured noise scales, is planned as if it never grew: see the module docstring).
    """
    schedule = base_cfg.schedule()
    k, t = spec.updates_per_chunk, base_cfg.rollout_length
    envs, done, out = base_cfg.num_envs, 0, []
    while (n := min(k, (spec.interactions - done) // (envs * t))) > 0:
        out.append((envs, n))
        done += n * envs * t
        envs = schedule.next_envs(envs, done, math.nan, envs * t // base_cfg.num_minibatches)
    return tuple(out)


def _member_grid(spec: SweepSpec) -> list[dict[str, Any]]:
    """The cartesian product of the spec's axes, in AXIS_NAMES order (last axis fastest)."""
    names = list(spec.axes)
    combos = itertools.product(*spec.axes.values())
    return [dict(zip(names, combo, strict=True)) for combo in combos]


def _check_distinct(spec: SweepSpec, rows: list[dict[str, Any]],
                    net: Callable[[float, int | None], networks.NetworkConfig]) -> None:
    """SpecError if two members would train identically: the same network after rounding
    widths to whole units, the same seed, and the same lr and hyperparameters in float32 (what
    the trainer computes with)."""
    seen: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        cfg = net(r["width"], r["depth"])
        key = (networks.shape_key(cfg), r["depth"], r["seed"], np.float32(r["lr"]),
               tuple((k, np.float32(v)) for k, v in sorted(r["hparams"].items())))
        if key in seen:
            a = seen[key]
            diff = {k: (a[k], r[k]) for k in ("width", "param_ratio", "lr", "lr_scale")
                    if a[k] != r[k]}
            diff.update({k: (a["hparams"][k], v) for k, v in r["hparams"].items()
                         if a["hparams"][k] != v})
            said = "; ".join(f"{k} {x!r} and {y!r}" for k, (x, y) in diff.items())
            raise SpecError(
                f"{spec.path}: [axes]: two members would train identically ({said or 'same values'}"
                f", seed {r['seed']}): they round to the same network "
                f"and the same float32 settings; drop one of the values")
        seen[key] = r


def make_plan(spec: SweepSpec) -> Plan:
    """Expand `spec` into members and groups. Builds the env (a bad `[env.kwargs]` is a
    SpecError), resolves the network family, and uses the networks' exact parameter and FLOP
    counts; compiles nothing."""
    try:
        env, env_params = envs_jax.make(spec.env, **spec.env_kwargs)
    except MnistDataError as exc:  # the data file, not the spec, is at fault
        raise SpecError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{spec.path}: [env.kwargs]: {exc}") from None
    if has_level_pool(env) and "level_refresh" not in spec.env_kwargs:
        # the trainer manages the pool itself: every member owns one and refreshes it once per
        # update (`scalelab.members`), so the env's own per-step refresh is switched off
        env_params = env_params.replace(level_refresh="caller")
    space = env.observation_space(env_params)
    obs_shape = tuple(space.shape)
    num_actions = int(env.num_actions)
    family = spec.family or default_family(obs_shape)
    base_cfg = train_config(spec, network=family, width=1.0, seed=0, lr=spec.lr_rule.base)

    def net(width: float, depth: int | None) -> networks.NetworkConfig:
        return member_network(dataclasses.replace(base_cfg, width=width, depth=depth))

    grid = _member_grid(spec)
    rows = []
    for combo in grid:
        depth = combo.get("depth")
        ratio = combo.get("param_ratio")
        width = (
            networks.width_for_param_ratio(family, ratio, obs_shape, num_actions, depth)
            if ratio is not None else combo["width"]
        )
        scale = combo.get("lr_scale", 1.0)
        hp = {k: v for k, v in combo.items()
              if k not in ("width", "param_ratio", "depth", "seed", "lr_scale")}
        rows.append(dict(width=float(width), depth=depth, param_ratio=ratio, seed=combo["seed"],
                         lr=spec.lr_rule.lr(width, depth) * scale, lr_scale=scale, hparams=hp))
    _check_distinct(spec, rows, net)
    chunks = _chunks(spec, base_cfg)
    # a member-owned level pool per member (see scalelab.sweep.run)
    pool_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(env_params)) if (
        has_level_pool(env)) else 0

    counts = {}
    for r in rows:
        cfg = net(r["width"], r["depth"])
        counts[cfg] = counts.get(cfg, 0) + 1
    groups_cfgs: list[tuple[Any, list[Any]]] = []
    for depth in sorted({c.depth for c in counts}, key=lambda d: -1 if d is None else d):
        sizes = sorted((c for c in counts if c.depth == depth), key=lambda c: c.width)

        def per_member(i: int, j: int, sizes: list = sizes) -> float:
            return networks.forward_flops(networks.group_config(sizes[i:j + 1]), obs_shape,
                                          num_actions)

        for i, j in choose_partition([counts[c] for c in sizes], per_member,
                                     spec.max_padding_overhead):
            groups_cfgs.append((networks.group_config(sizes[i:j + 1]), sizes[i:j + 1]))

    member_of: dict[Any, tuple[int, Any]] = {}
    for gi, (gcfg, cfgs) in enumerate(groups_cfgs):
        for c in cfgs:
            member_of[c] = (gi, gcfg)
    slots = [0] * len(groups_cfgs)
    members = []
    policy_counts = {c: networks.policy_param_count(c, obs_shape, num_actions) for c in counts}
    for index, r in enumerate(rows):
        cfg = net(r["width"], r["depth"])
        gi, _ = member_of[cfg]
        members.append(Member(
            index=index, **r,
            params=networks.param_count(cfg, obs_shape, num_actions),
            policy_params=policy_counts[cfg],
            flops_per_interaction=networks.forward_flops(cfg, obs_shape, num_actions),
            group=gi, slot=slots[gi],
        ))
        slots[gi] += 1
    groups = []
    for gi, (gcfg, _) in enumerate(groups_cfgs):
        idx = tuple(m.index for m in members if m.group == gi)
        groups.append(Group(
            index=gi, network=gcfg, members=idx,
            unpadded_flops=sum(members[i].flops_per_interaction for i in idx),
            padded_flops=len(idx) * networks.forward_flops(gcfg, obs_shape, num_actions),
            memory_per_member=memory_per_member(gcfg, obs_shape, space.dtype, num_actions,
                                                base_cfg, max(e for e, _ in chunks),
                                                pool_bytes),
        ))
    return Plan(spec=spec, family=family, members=tuple(members), groups=tuple(groups),
                obs_shape=obs_shape, num_actions=num_actions,
                rollout_length=base_cfg.rollout_length, chunks=chunks, env=env,
                env_params=env_params)
