"""Shared machinery of the Procgen-like games: level pool, auto-reset, actions, rendering helpers.

How a game plugs in
-------------------
A game subclasses `ProcgenGame` and provides:

* `game_seed` (class attribute, int): level i is generated from
  `jax.random.fold_in(jax.random.PRNGKey(game_seed), i)`, so it is the same level on every run.
* `generate_level(key, level_id, params) -> Level`: a pure, jittable function of the level key
  (a pytree of fixed-shape arrays; it must carry everything the start state needs). It may
  read only `params.distribution_mode`: generators are compiled once per mode.
* `start_state(level, level_id, params) -> State`: the first state of an episode on `level`.
  `State` is a `flax.struct.dataclass` with at least `time: jnp.int32`, `level_id: jnp.int32`
  and, last, `level_slot: LevelSlot | None = None` (set by the base class, see below).
* `game_step(key, state, action, params) -> (state, reward float32, terminated bool)`: one step
  of the dynamics WITHOUT auto-reset and without touching `time` (the base class counts time,
  truncates at `params.max_steps_in_episode` and resets from the pool).
* `render(state, params) -> uint8 (64, 64, 3)` and `symbolic(state) -> dict[str, jax.Array]`.
* a params class deriving from `ProcgenParams` (set the game's time limit as default) and a
  factory for the registry: `params = game.make_params(**overrides)` fills the level pool.

Levels and resets
-----------------
`params.pool_levels` holds `pool_size` pre-generated levels (a Level pytree with a leading pool
axis); with `start_frames_in_pool` (the default), `params.pool_frames` holds each slot's start
frame, so a step renders ONE frame per env (the stepped state's, which is also
`info["final_observation"]`) and takes a reset's observation from a stored frame; `start_state`
and `render` may therefore read only `distribution_mode` too. A game whose frames cost less to
render than to copy sets it False and renders the post-reset state instead.

When `0 < num_levels <= pool_size` the pool holds every level of the split (slot j holds level
`start_level + j` for j < num_levels), resets draw a uniformly random slot and nothing is ever
refreshed. Otherwise (unlimited levels, `num_levels = 0`, or a split larger than the pool) the
levels played must keep changing, and `params.level_refresh` says who changes them:

* "step" (the default, what `envs_jax.make` returns): the env refreshes itself, so any gymnax
  loop that drives it only through `reset` and `step` keeps meeting new levels. `reset` gives
  each state a `level_slot` (a level, its id and start frame; initially a random pool entry).
  Under `vmap` the B envs' slots form one pool of B levels: a reset starts from a uniformly
  random one of them, and every step call regenerates `step_refresh_size` (default 1) of them
  from fresh ids, keyed by the key the step already has. Cost per batched step, whatever B:
  that many level generations and start-frame renders (one level, compiled alone, measured on
  the shared 2-core CPU under load ~18: CoinRun 1.0 ms, StarPilot 0.3 ms, FruitBot 0.8 ms), a
  gather of B slots, and B slots of state (a level and a 12 KiB frame per env). An env stepped
  alone (no vmap) plays its slot's level at each reset and regenerates the slot then (a
  `lax.cond`: one generation per episode, as in Procgen).
* "caller": resets draw a uniformly random slot of the pool in params, and the caller refreshes
  it with `refresh_levels(key, params)`, which regenerates `refresh_size` slots (a ring cursor);
  scalelab's trainer calls it once per rollout inside the compiled program. Driven without that
  call, the env plays the `pool_size` levels of `make` forever: ask for this form only if you
  refresh.

Either way the level of each reset is marginally distributed exactly as a freshly drawn level
(which slots are refreshed and which slot a reset takes never depend on the levels), and new
levels keep arriving at a fixed rate; `refresh_levels` keeps working in the "step" form, where
it refreshes the entries that `reset` hands out. States built by hand (`start_state`,
`sample_start`) carry no slot and reset from the pool in params.

Rendering helpers work separably: a view maps each output column to a world x (tile index and
sub-tile sprite texel) and each row to a world y, and colours come from one packed RGBA table
(`pack_sprites`). No per-pixel Python, no scatter. Cost model on XLA CPU (measured): XLA fuses
everything a pixel needs into one scalar loop and recomputes cheap producers per pixel, so
(1) do per-row / per-column / per-tile-row work on small arrays and keep it out of the pixel
loop (`once`, or a loop whose result is materialized), (2) use `lookup` (no bounds handling:
several times faster than NumPy-style indexing), (3) do about one table gather per pixel, with
opacity from bit masks (`texel_opaque`) rather than a second lookup, (4) avoid integer // and %
on signed values (shifts and masks), and (5) unpack colours with a bitcast (`unpack_rgb`).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Generic, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

# Procgen's 15 actions, in the original's `combos` order. Index a < 9 is a move with
# x = a // 3 - 1 and y = a % 3 - 1; indices 9..14 are special keys (no move).
COMBOS: tuple[tuple[str, ...], ...] = (
    ("LEFT", "DOWN"),
    ("LEFT",),
    ("LEFT", "UP"),
    ("DOWN",),
    (),
    ("UP",),
    ("RIGHT", "DOWN"),
    ("RIGHT",),
    ("RIGHT", "UP"),
    ("D",),
    ("A",),
    ("W",),
    ("S",),
    ("Q",),
    ("E",),
)
NUM_ACTIONS = len(COMBOS)
OBS_SIZE = 64
SPRITE_RES = 8  # sprites are SPRITE_RES x SPRITE_RES texels, stretched over their box
TEXEL_BITS = 3  # SPRITE_RES = 2 ** TEXEL_BITS
LEVEL_ID_MAX = 2**31 - 1  # num_levels = 0 draws ids uniformly from [0, LEVEL_ID_MAX)
DISTRIBUTION_MODES = ("easy", "hard")
# "step": the env refreshes its levels inside step (the gymnax contract, the default);
# "caller": the caller refreshes the pool in params with `refresh_levels` (scalelab's trainer).
LEVEL_REFRESH_MODES = ("step", "caller")
GENERATE_CHUNK = 32  # levels per compiled generator call outside traced code


def action_xy(action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Movement of a Procgen action: (x, y) in {-1, 0, 1} each, int32; special keys give (0, 0).

    action: int scalar (or array) in [0, 15). y = +1 is UP.
    """
    action = jnp.asarray(action, jnp.int32)
    move = jnp.where(action < 9, action, 4)
    return move // 3 - 1, move % 3 - 1


def special_key(action: jax.Array) -> jax.Array:
    """Special key of a Procgen action: 0 for moves, 1..6 for D, A, W, S, Q, E (int32)."""
    action = jnp.asarray(action, jnp.int32)
    return jnp.where(action >= 9, action - 8, 0)


@struct.dataclass
class ProcgenParams(environment.EnvParams):
    """Parameters shared by every Procgen-like game.

    Static (Python) fields fix shapes, the level split and who refreshes levels
    (`level_refresh`, see the module docstring); `pool_*` are the shared, read-only level pool
    (passed once to the trainer, never per member), its start frames uint8
    (pool_size, 64, 64, 3) and its ring cursor.
    """

    max_steps_in_episode: int = 1000
    distribution_mode: str = struct.field(pytree_node=False, default="easy")
    num_levels: int = struct.field(pytree_node=False, default=0)
    start_level: int = struct.field(pytree_node=False, default=0)
    pool_size: int = struct.field(pytree_node=False, default=1024)
    refresh_size: int = struct.field(pytree_node=False, default=128)
    pool_seed: int = struct.field(pytree_node=False, default=0)
    level_refresh: str = struct.field(pytree_node=False, default="step")
    step_refresh_size: int = struct.field(pytree_node=False, default=1)
    pool_levels: Any = None
    pool_ids: Any = None
    pool_frames: Any = None
    pool_cursor: Any = None


def validate_params(params: ProcgenParams) -> None:
    """Raise ValueError naming the first bad field of `params`."""
    if params.distribution_mode not in DISTRIBUTION_MODES:
        raise ValueError(
            f"distribution_mode must be one of {DISTRIBUTION_MODES}, "
            f"got {params.distribution_mode!r}"
        )
    for name in ("num_levels", "start_level", "pool_seed"):
        value = getattr(params, name)
        if not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if params.start_level + params.num_levels > LEVEL_ID_MAX:
        raise ValueError(
            f"start_level + num_levels must be <= {LEVEL_ID_MAX}, "
            f"got {params.start_level} + {params.num_levels}"
        )
    if not isinstance(params.pool_size, int | np.integer) or params.pool_size < 1:
        raise ValueError(f"pool_size must be a positive int, got {params.pool_size!r}")
    if (
        not isinstance(params.refresh_size, int | np.integer)
        or params.refresh_size < 1
        or params.pool_size % params.refresh_size
    ):
        raise ValueError(
            f"refresh_size must be a positive divisor of pool_size={params.pool_size}, "
            f"got {params.refresh_size!r}"
        )
    if params.level_refresh not in LEVEL_REFRESH_MODES:
        raise ValueError(
            f"level_refresh must be one of {LEVEL_REFRESH_MODES}, got {params.level_refresh!r}"
        )
    if not isinstance(params.step_refresh_size, int | np.integer) or (
        params.step_refresh_size < 1
    ):
        raise ValueError(
            f"step_refresh_size must be a positive int, got {params.step_refresh_size!r}"
        )
    if not isinstance(params.max_steps_in_episode, int | np.integer) or (
        params.max_steps_in_episode < 1
    ):
        raise ValueError(
            f"max_steps_in_episode must be a positive int, got {params.max_steps_in_episode!r}"
        )


def pool_holds_all_levels(params: ProcgenParams) -> bool:
    """True when the pool stores the whole finite level split (refresh is then a no-op)."""
    return 0 < params.num_levels <= params.pool_size


def refreshes_in_step(params: ProcgenParams) -> bool:
    """True when `reset` hands each state a pool slot that `step` keeps refreshing (the
    default "step" form, unless the pool already holds the whole finite split)."""
    return params.level_refresh == "step" and not pool_holds_all_levels(params)


def draw_level_ids(key: jax.Array, n: int, params: ProcgenParams) -> jax.Array:
    """n level ids (int32): `start_level + U{0..num_levels-1}`, or U{0..2^31-2} if num_levels=0."""
    if params.num_levels > 0:
        return params.start_level + jax.random.randint(key, (n,), 0, params.num_levels)
    return jax.random.randint(key, (n,), 0, LEVEL_ID_MAX)


S = TypeVar("S")
L = TypeVar("L")


@struct.dataclass
class LevelSlot:
    """One slot of the level pool that the self-refreshing form spreads over its states.

    level: a game's Level pytree; level_id: int32; frame: the level's start frame uint8
    (64, 64, 3), or None for a game that renders its resets (`start_frames_in_pool` False).
    """

    level: Any
    level_id: jax.Array
    frame: jax.Array | None = None


class ProcgenGame(environment.Environment, Generic[S, L]):
    """Base class of the Procgen-like games: pool-based auto-reset, spaces, time limit."""

    game_seed: int = 0
    params_cls: type[ProcgenParams] = ProcgenParams
    # Reset observations from stored start frames (one render per step, see the module
    # docstring), or by rendering the post-reset state (False: cheaper for cheap renderers).
    start_frames_in_pool: bool = True

    # ---- to be provided by each game -------------------------------------------------------
    def generate_level(self, key: jax.Array, level_id: jax.Array, params: ProcgenParams) -> L:
        """A level from its key (see `level_key`); pure and jittable."""
        raise NotImplementedError

    def start_state(self, level: L, level_id: jax.Array, params: ProcgenParams) -> S:
        """First state of an episode on `level`."""
        raise NotImplementedError

    def game_step(
        self, key: jax.Array, state: S, action: jax.Array, params: ProcgenParams
    ) -> tuple[S, jax.Array, jax.Array]:
        """(next state, reward float32, terminated bool); no reset, no time counting."""
        raise NotImplementedError

    def render(self, state: S, params: ProcgenParams) -> jax.Array:
        """Observation uint8 (64, 64, 3)."""
        raise NotImplementedError

    def symbolic(self, state: S) -> dict[str, jax.Array]:
        """The state as small arrays, for debugging."""
        raise NotImplementedError

    # ---- levels and the pool ---------------------------------------------------------------
    def level_key(self, level_id: jax.Array) -> jax.Array:
        """PRNG key of level `level_id`: fold_in(PRNGKey(game_seed), level_id)."""
        return jax.random.fold_in(jax.random.PRNGKey(self.game_seed), level_id)

    def level(self, level_id: jax.Array, params: ProcgenParams) -> L:
        """Generate level `level_id` (the same on every run and device)."""
        level_id = jnp.asarray(level_id, jnp.int32)
        return self.generate_level(self.level_key(level_id), level_id, params)

    def _generate_many(self, ids: jax.Array, params: ProcgenParams) -> L:
        static = ProcgenParams(distribution_mode=params.distribution_mode)
        return jax.vmap(lambda i: self.level(i, static))(ids)

    def _pool_entries(self, ids: jax.Array, params: ProcgenParams) -> tuple[L, jax.Array | None]:
        """Levels for ids (n,) and their start frames uint8 (n, 64, 64, 3) (None unless
        `start_frames_in_pool`); traceable."""
        static = ProcgenParams(distribution_mode=params.distribution_mode)
        levels = self._generate_many(ids, static)
        if not self.start_frames_in_pool:
            return levels, None
        frames = jax.vmap(lambda lv, i: self.render(self.start_state(lv, i, static), static))(
            levels, ids)
        return levels, frames

    def _check_frames(self, params: ProcgenParams) -> None:
        if self.start_frames_in_pool and params.pool_frames is None:
            raise ValueError("pool_frames is None: build env params with the game's "
                             "make_params (it fills pool_levels, pool_ids and pool_frames)")

    def _chunked(self, fn: Any, ids: jax.Array, params: ProcgenParams) -> Any:
        """fn(ids, params) over ids int (n,) in compiled chunks of GENERATE_CHUNK (host side).

        fn may read only `distribution_mode` (never the split or pool fields), so one compiled
        chunk serves every split and pool size.
        """
        static = ProcgenParams(distribution_mode=params.distribution_mode)
        cache = self.__dict__.setdefault("_generate_cache", {})
        if (fn.__name__, static) not in cache:
            cache[fn.__name__, static] = jax.jit(partial(fn, params=static))
        ids = np.asarray(ids, np.int32).reshape(-1)
        padded = np.resize(ids, -(-len(ids) // GENERATE_CHUNK) * GENERATE_CHUNK)
        chunks = [cache[fn.__name__, static](c) for c in padded.reshape(-1, GENERATE_CHUNK)]
        return jax.tree.map(lambda *c: jnp.concatenate(c)[: len(ids)], *chunks)

    def generate_levels(self, ids: jax.Array, params: ProcgenParams) -> L:
        """Levels for ids int (n,), stacked on a leading axis (host-side helper, not traced).

        Generation may depend only on `distribution_mode` (never on the split or pool fields),
        so one compiled generator of GENERATE_CHUNK levels serves every split and pool size.
        """
        return self._chunked(self._generate_many, ids, params)

    def make_params(self, **overrides: Any) -> ProcgenParams:
        """Default params with `overrides` applied, validated, with the level pool filled."""
        fields = self.params_cls.__dataclass_fields__
        pool_fields = {"pool_levels", "pool_ids", "pool_frames", "pool_cursor"}
        unknown = sorted(set(overrides) - set(fields) - pool_fields)
        bad = unknown or sorted(pool_fields & set(overrides))
        if bad:
            raise ValueError(f"{self.name}: unknown or non-settable env params {bad}")
        params = self.params_cls(**overrides)
        validate_params(params)
        if pool_holds_all_levels(params):
            slots = jnp.arange(params.pool_size, dtype=jnp.int32) % params.num_levels
            ids = params.start_level + slots
        else:
            key = jax.random.fold_in(jax.random.PRNGKey(self.game_seed + 1), params.pool_seed)
            ids = draw_level_ids(key, params.pool_size, params)
        ids = ids.astype(jnp.int32)
        levels, frames = self._chunked(self._pool_entries, ids, params)
        return params.replace(pool_levels=levels, pool_ids=ids, pool_frames=frames,
                              pool_cursor=jnp.int32(0))

    @property
    def default_params(self) -> ProcgenParams:
        # Generating the pool is costly; cache the default on the instance.
        if getattr(self, "_default_params", None) is None:
            self._default_params = self.make_params()
        return self._default_params

    def refresh_levels(self, key: jax.Array, params: ProcgenParams) -> ProcgenParams:
        """Regenerate `refresh_size` pool slots (a ring) from fresh level ids, with their start
        frames if kept; pure, jittable.

        No-op when the pool already holds every level of a finite split.
        """
        if pool_holds_all_levels(params):
            return params
        self._check_frames(params)
        n = params.refresh_size
        ids = draw_level_ids(key, n, params).astype(jnp.int32)
        fresh, frames = self._pool_entries(ids, params)
        start = params.pool_cursor

        def put(pool: jax.Array, new: jax.Array) -> jax.Array:
            index = (start,) + (0,) * (pool.ndim - 1)
            return jax.lax.dynamic_update_slice(pool, new.astype(pool.dtype), index)

        return params.replace(
            pool_levels=jax.tree.map(put, params.pool_levels, fresh),
            pool_ids=put(params.pool_ids, ids),
            pool_frames=None if frames is None else put(params.pool_frames, frames),
            pool_cursor=(start + n) % params.pool_size,
        )

    def _num_slots(self, params: ProcgenParams) -> int:
        return params.num_levels if pool_holds_all_levels(params) else params.pool_size

    def _sample_slot(self, key: jax.Array, params: ProcgenParams) -> jax.Array:
        return jax.random.randint(key, (), 0, self._num_slots(params))

    def _start_at(self, slot: jax.Array, params: ProcgenParams) -> S:
        level = jax.tree.map(lambda a: a[slot], params.pool_levels)
        return self.start_state(level, params.pool_ids[slot], params)

    def sample_start(self, key: jax.Array, params: ProcgenParams) -> S:
        """Start state on a uniformly random pool slot (a gather, no generation).

        The state carries no `level_slot`: stepped, it resets from the pool in params (as in
        the "caller" form). `reset` adds the slot of the self-refreshing form.
        """
        return self._start_at(self._sample_slot(key, params), params)

    def _pool_slot(self, index: jax.Array, params: ProcgenParams) -> LevelSlot:
        """Pool entry `index` of params as a LevelSlot (a gather)."""
        frame = lookup(params.pool_frames, index) if self.start_frames_in_pool else None
        level = jax.tree.map(lambda a: lookup(a, index), params.pool_levels)
        return LevelSlot(level, lookup(params.pool_ids, index), frame)

    def _fresh_slots(self, key: jax.Array, n: int, params: ProcgenParams) -> LevelSlot:
        """n newly generated slots (leading axis n) of ids drawn from the split."""
        ids = draw_level_ids(key, n, params).astype(jnp.int32)
        levels, frames = self._pool_entries(ids, params)
        return LevelSlot(levels, ids, frames)

    def _trade_slots(
        self, key: jax.Array, done: jax.Array, slot: LevelSlot, params: ProcgenParams
    ) -> tuple[LevelSlot, LevelSlot]:
        """(the slot a reset of this step starts from, the env's slot after the step).

        Alone, an env's slot is its next level: a reset starts from it and regenerates it
        (a `lax.cond`, so generation costs only at episode ends). Under `vmap` the B envs'
        slots form one pool of B levels: a reset starts from a uniformly random one of them
        and `step_refresh_size` slots (evenly spaced from a random offset) are regenerated per
        call, keyed by env 0's key, whether or not any episode ended (a bounded cost).
        """
        static = ProcgenParams(distribution_mode=params.distribution_mode,
                               num_levels=params.num_levels, start_level=params.start_level)
        refresh_size = params.step_refresh_size

        @jax.custom_batching.custom_vmap
        def trade(key: jax.Array, done: jax.Array, slot: LevelSlot) -> tuple[LevelSlot,
                                                                             LevelSlot]:
            def fresh() -> LevelSlot:
                one = self._fresh_slots(jax.random.fold_in(key, 1), 1, static)
                return jax.tree.map(lambda a: a[0], one)

            return slot, jax.lax.cond(done, fresh, lambda: slot)

        @trade.def_vmap
        def trade_batched(
            axis_size: int, in_batched: list[Any], key: jax.Array, done: jax.Array,
            slot: LevelSlot,
        ) -> tuple[tuple[LevelSlot, LevelSlot], Any]:
            def batched(a: jax.Array, is_batched: bool) -> jax.Array:
                return a if is_batched else jnp.broadcast_to(a, (axis_size,) + a.shape)

            key, done, slot = jax.tree.map(batched, (key, done, slot), tuple(in_batched))
            n = min(refresh_size, axis_size)
            k_at, k_ids = jax.random.split(jax.random.fold_in(key[0], 1))
            offset = jax.random.randint(k_at, (), 0, axis_size)
            at = (offset + np.arange(n) * axis_size // n) % axis_size
            new = self._fresh_slots(k_ids, n, static)
            slot = jax.tree.map(
                lambda a, b: a.at[at].set(b.astype(a.dtype), unique_indices=True,
                                          mode="promise_in_bounds"),
                slot, new)
            # resets read the refreshed slots: reading the old ones after the in-place
            # update made XLA copy every slot array at every step
            choice = jax.vmap(lambda k: jax.random.randint(k, (), 0, axis_size))(key)
            picked = jax.tree.map(lambda a: lookup(a, choice), slot)
            out = (picked, slot)
            return out, jax.tree.map(lambda _: True, out)

        return trade(key, done, slot)

    # ---- gymnax API ------------------------------------------------------------------------
    def reset_env(self, key: jax.Array, params: ProcgenParams) -> tuple[jax.Array, S]:
        """A start state on a uniformly random pool slot; in the self-refreshing form it also
        carries a `level_slot` holding another uniformly random pool entry."""
        state = self.sample_start(key, params)
        if refreshes_in_step(params):
            index = self._sample_slot(jax.random.fold_in(key, 1), params)
            state = state.replace(level_slot=self._pool_slot(index, params))
        return self.render(state, params), state

    def step_env(self, key, state, action, params):
        nxt, reward, terminated = self.game_step(key, state, action, params)
        nxt = nxt.replace(time=state.time + 1)
        return self.render(nxt, params), nxt, reward, terminated, {}

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: S,
        action: jax.Array,
        params: ProcgenParams | None = None,
    ) -> tuple[jax.Array, S, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        """One step with auto-reset from the pool.

        Returns (obs, state, reward, terminated, truncated, info); `info["final_observation"]`
        is the observation of the pre-reset state (equal to obs unless the episode ended).
        Truncation means the time limit was hit without a natural termination. With
        `start_frames_in_pool` one frame is rendered per call (a reset's observation is the
        pool slot's stored start frame); else obs renders the post-reset state. A state with a
        `level_slot` (from `reset` in the "step" form) resets from the slots and refreshes
        them (`_trade_slots`); one without resets from the pool in params.
        """
        if params is None:
            params = self.default_params
        self._check_frames(params)
        k_game, k_reset = jax.random.split(key)
        nxt, reward, terminated = self.game_step(k_game, state, action, params)
        nxt = nxt.replace(time=state.time + 1)
        terminated = jnp.asarray(terminated, jnp.bool_)
        truncated = jnp.logical_and(nxt.time >= params.max_steps_in_episode, ~terminated)
        done = jnp.logical_or(terminated, truncated)
        if state.level_slot is None:
            slot = self._sample_slot(k_reset, params)
            start = self._start_at(slot, params)
            frame = lookup(params.pool_frames, slot) if self.start_frames_in_pool else None
            own = None
        else:
            picked, own = self._trade_slots(k_reset, done, state.level_slot, params)
            start = self.start_state(picked.level, picked.level_id, params)
            frame = picked.frame
        new_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), start,
                                 nxt.replace(level_slot=None)).replace(level_slot=own)
        final_obs = self.render(nxt, params)
        if self.start_frames_in_pool:
            obs = jnp.where(done, frame, final_obs)
        else:
            obs = self.render(new_state, params)
        info = {"terminated": terminated, "truncated": truncated, "final_observation": final_obs}
        return obs, new_state, jnp.asarray(reward, jnp.float32), terminated, truncated, info

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    def action_space(self, params: ProcgenParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(NUM_ACTIONS)

    def observation_space(self, params: ProcgenParams | None = None) -> spaces.Box:
        return spaces.Box(0, 255, (OBS_SIZE, OBS_SIZE, 3), jnp.uint8)


# ---- shared dynamics -----------------------------------------------------------------------


def box_overlap(ax, ay, arx, ary, bx, by, brx, bry) -> jax.Array:
    """Procgen's box collision of boxes centred at (a.x, a.y), (b.x, b.y) with half-extents
    (arx, ary), (brx, bry): |ax - bx| < arx + brx and |ay - by| < ary + bry (broadcasting)."""
    return (jnp.abs(ax - bx) < arx + brx) & (jnp.abs(ay - by) < ary + bry)


def mix_velocity(vel: jax.Array, acc: jax.Array, mix_rate: float, max_speed: float) -> jax.Array:
    """Procgen's inertia for ships and bots: v' = 0.9 ((1 - mix_rate) v + mix_rate max_speed a).

    vel: (2,) float32 current velocity (world units per step); acc: (2,) float32 action direction.
    """
    return 0.9 * ((1 - mix_rate) * vel + mix_rate * max_speed * acc)


# ---- rendering helpers ---------------------------------------------------------------------


class AxisView(NamedTuple):
    """Per output pixel along one axis: world tile index, sprite texel index, world coordinate.

    tile: int32 (64,); texel: int32 (64,) in [0, SPRITE_RES); coord: float32 (64,).
    """

    tile: jax.Array
    texel: jax.Array
    coord: jax.Array


def axis_view(center: jax.Array, visibility: float, flip: bool) -> AxisView:
    """Map the 64 pixels of one screen axis to world coordinates around `center`.

    Pixel p covers world coordinate w(p) = center - v/2 + (p + 1/2) v / 64 (v = visibility in
    tiles); with `flip` (the vertical axis: row 0 at the top, world y up) w(p) = center + v/2 -
    (p + 1/2) v / 64 and texels count from the tile's top edge.
    """
    p = jnp.arange(OBS_SIZE, dtype=jnp.float32) + 0.5
    scale = visibility / OBS_SIZE
    coord = center + visibility / 2 - p * scale if flip else center - visibility / 2 + p * scale
    tile = jnp.floor(coord)
    frac = coord - tile
    if flip:
        frac = 1.0 - frac
    texel = jnp.clip(jnp.floor(frac * SPRITE_RES), 0, SPRITE_RES - 1).astype(jnp.int32)
    return AxisView(tile.astype(jnp.int32), texel, coord)


def lookup(table: jax.Array, index: jax.Array) -> jax.Array:
    """table[index] for indices known to lie in bounds (shape of index + table.shape[1:]).

    No bounds handling is added (XLA clamps gather indices anyway) and unsigned indices skip
    the wrap-around of negative ones: on XLA CPU this gather is several times faster than
    NumPy-style indexing, which adds a fill mask.
    """
    return table.at[index.astype(jnp.uint32)].get(mode="promise_in_bounds")


@jax.custom_batching.custom_vmap
def once(a: jax.Array) -> jax.Array:
    """`a` itself, kept as its own array instead of being recomputed by every consumer.

    XLA fuses cheap producers into their consumers, so a per-row or per-column value used by
    every pixel is recomputed per pixel (and a frame is recomputed for each colour byte and
    each consumer); a gather counts as expensive and is not duplicated that way. This is an
    identity gather of a's leading axis; under vmap, of the batch axis (whole contiguous
    slices, the natural layout), so the work happens once.
    """
    return lookup(a, jnp.arange(a.shape[0]))


@once.def_vmap
def _once_vmap(axis_size: int, in_batched: list[bool], a: jax.Array) -> tuple[jax.Array, bool]:
    return once(a), in_batched[0]


def take_rows(a: jax.Array, rows: jax.Array) -> jax.Array:
    """Whole rows a[rows] (rows int (n,) in bounds): a gather of contiguous slices."""
    return lookup(a, rows)


def grid_lookup(grid: jax.Array, rows: jax.Array, cols: jax.Array, outside: int) -> jax.Array:
    """Tile types grid[rows][:, cols]: int32 (len(rows), len(cols)), `outside` off the grid.

    grid: (H, W) int tile types indexed [y, x] (y up); rows, cols: int tile indices (any
    values). A row gather and one lookup per output element, no scatter.
    """
    h, w = grid.shape
    picked = take_rows(grid, jnp.clip(rows, 0, h - 1))
    types = lookup(picked.T, jnp.clip(cols, 0, w - 1)).T.astype(jnp.int32)
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    return jnp.where(inside, types, outside)


def box_texels(
    lo: jax.Array, hi: jax.Array, view: AxisView, flip: bool
) -> tuple[jax.Array, jax.Array]:
    """Which pixels of one axis lie in the world interval [lo, hi), and their sprite texel.

    lo, hi: float (...,) -> (inside bool (..., 64), texel int32 (..., 64)); texels count from
    `hi` downwards when `flip` (screen rows).
    """
    lo = jnp.asarray(lo)[..., None]
    hi = jnp.asarray(hi)[..., None]
    inside = (view.coord >= lo) & (view.coord < hi)
    frac = (view.coord - lo) / (hi - lo)
    if flip:
        frac = 1.0 - frac
    texel = jnp.clip(jnp.floor(frac * SPRITE_RES), 0, SPRITE_RES - 1).astype(jnp.int32)
    return inside, texel


def box_cover(
    x: jax.Array, y: jax.Array, rx: float, ry: float, xs: AxisView, ys: AxisView
) -> tuple[jax.Array, jax.Array]:
    """Pixels covered by the world box [x - rx, x + rx) x [y - ry, y + ry) and their texels.

    Returns (cover bool (64, 64), texel int32 (64, 64) = row * S + col within a sprite that is
    stretched over the box). Separable: one row test and one column test, computed `once` (not
    per pixel).
    """
    in_x, tx = box_texels(x - rx, x + rx, xs, flip=False)
    in_y, ty = box_texels(y - ry, y + ry, ys, flip=True)
    in_x, tx, in_y, ty = once(jnp.stack([in_x, tx, in_y, ty]).astype(jnp.int32))
    return (in_y[:, None] & in_x[None, :]) == 1, (ty << TEXEL_BITS)[:, None] + tx[None, :]


def pack_sprites(*groups: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Stack RGBA sprite arrays (..., S, S, 4) into one packed colour table.

    Returns (table uint32 (N,), offsets): texel flat index i of group g (over its leading axes
    and S x S) is at row offsets[g] + i, packed as R | G << 8 | B << 16 | A << 24. A packed
    table turns a texel lookup into one 4-byte gather instead of four 1-byte ones.
    """
    flat = [np.asarray(g, np.uint8).reshape(-1, 4) for g in groups]
    offsets = np.cumsum([0] + [len(f) for f in flat[:-1]]).tolist()
    table = np.concatenate(flat).astype(np.uint32)
    packed = table[:, 0] | table[:, 1] << 8 | table[:, 2] << 16 | table[:, 3] << 24
    return packed.astype(np.uint32), offsets


def opacity_masks(sprites: np.ndarray) -> np.ndarray:
    """Bit masks uint32 (..., 2) of the opaque texels of RGBA sprites (..., S, S, 4).

    Texel (row, col) is bit k = row * S + col of the 64-bit mask: word k // 32, bit k % 32.
    """
    sprites = np.asarray(sprites)
    if sprites.shape[-3:] != (8, 8, 4):
        raise ValueError(f"sprites must be (..., 8, 8, 4) (64 texels), got {sprites.shape}")
    opaque = (sprites[..., 3] != 0).reshape(sprites.shape[:-3] + (2, 32)).astype(np.uint64)
    return (opaque << np.arange(32, dtype=np.uint64)).sum(-1).astype(np.uint32)


def texel_opaque(masks: np.ndarray, texel: jax.Array) -> jax.Array:
    """Whether sprite texels are opaque, from `opacity_masks` (n, 2): bool, texel's shape.

    texel: non-negative int32 flat index sprite * S^2 + row * S + col. Selects and shifts only
    (no gather): cheap per pixel for the few sprites a game masks. Sprites that share one mask
    (mirror-symmetric shapes facing either way) cost one select, not one per word.
    """
    texel = texel.astype(jnp.uint32)
    pairs = np.asarray(masks, np.uint32).reshape(-1, 2)
    if (pairs == pairs[0]).all():
        word = jnp.where(texel >> 5 & 1 == 1, jnp.uint32(pairs[0, 1]), jnp.uint32(pairs[0, 0]))
    else:
        word = jnp.uint32(0)
        for n, pair in enumerate(pairs):
            for w in range(2):  # texel >> 5 = (sprite, word) pair index
                word = jnp.where(texel >> 5 == 2 * n + w, jnp.uint32(pair[w]), word)
    return (word >> (texel & 31)) & 1 == 1


def pack_rgb(rgb: jax.Array) -> jax.Array:
    """Opaque packed colour(s) uint32 from RGB uint8 (..., 3)."""
    c = rgb.astype(jnp.uint32)
    return c[..., 0] | c[..., 1] << 8 | c[..., 2] << 16 | jnp.uint32(255 << 24)


def over(top: jax.Array, bottom: jax.Array) -> jax.Array:
    """Composite packed colours: `top` where its alpha is non-zero, else `bottom`."""
    return jnp.where(top >> 24 != 0, top, bottom)


def unpack_rgb(packed: jax.Array) -> jax.Array:
    """RGB uint8 (..., 3) from packed colours uint32 (...).

    A bitcast to bytes (little-endian, as on CPU and GPU: byte 0 is R) and a slice: shifting
    out each channel made XLA CPU recompute the packed image once per channel. (The output
    is still written byte by byte, so a frame should end in materialized work: a gather or a
    loop's result, not a long chain of cheap per-pixel ops.)
    """
    return jax.lax.bitcast_convert_type(packed, jnp.uint8)[..., :3]


def shade(rgb: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """An RGB colour scaled by `factor` and clipped to [0, 255]."""
    return tuple(int(np.clip(round(c * factor), 0, 255)) for c in rgb)


def shape_mask(shape: str) -> np.ndarray:
    """A bool (SPRITE_RES, SPRITE_RES) mask of a simple shape, row 0 at the top.

    Shapes: box, frame (box border), disc, diamond, saw (half disc with teeth), triangle,
    half (lower half box), blob (rounded lower body with two eye holes), person.
    """
    n = SPRITE_RES
    c = (np.arange(n) + 0.5) / n
    y, x = np.meshgrid(c, c, indexing="ij")
    masks = {
        "box": np.ones((n, n), bool),
        "frame": (x < 0.2) | (x > 0.8) | (y < 0.2) | (y > 0.8) | (np.abs(x - y) < 0.13),
        "disc": (x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.22,
        "diamond": np.abs(x - 0.5) + np.abs(y - 0.5) < 0.5,
        "saw": ((x - 0.5) ** 2 + (y - 1.0) ** 2 < 0.36)
        & ~((y < 0.6) & (np.floor(x * 4) % 2 == 1)),
        "triangle": (y > 0.15) & (np.abs(x - 0.5) < 0.5 * (y - 0.1)),
        "half": y >= 0.5,
        "blob": ((x - 0.5) ** 2 / 0.25 + (y - 1.0) ** 2 / 0.49 < 1.0)
        & ~((np.abs(x - 0.3) < 0.08) & (np.abs(y - 0.56) < 0.08))
        & ~((np.abs(x - 0.7) < 0.08) & (np.abs(y - 0.56) < 0.08)),
        "person": ((x - 0.5) ** 2 + (y - 0.25) ** 2 < 0.07)
        | ((np.abs(x - 0.5) < 0.34) & (y > 0.3) & (y < 0.8))
        | ((np.abs(x - 0.28) < 0.13) & (y >= 0.8))
        | ((np.abs(x - 0.72) < 0.13) & (y >= 0.8)),
    }
    if shape not in masks:
        raise ValueError(f"unknown shape {shape!r}; known: {sorted(masks)}")
    return masks[shape]


def make_sprite(
    shape: str, rgb: tuple[int, int, int], detail: tuple[int, int, int] | None = None
) -> np.ndarray:
    """RGBA uint8 (SPRITE_RES, SPRITE_RES, 4): `rgb` inside the shape, transparent outside.

    With `detail`, texels on the shape's outline get that colour (helps tell shapes apart).
    """
    mask = shape_mask(shape)
    out = np.zeros((SPRITE_RES, SPRITE_RES, 4), np.uint8)
    out[mask, :3] = rgb
    out[mask, 3] = 255
    if detail is not None:
        padded = np.pad(mask, 1)
        interior = (
            padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
        )
        out[mask & ~interior, :3] = detail
    return out


def frames_to_file(frames: np.ndarray, path: str, fps: int = 15) -> None:
    """Write frames uint8 (T, 64, 64, 3) to `path`: an animated GIF (.gif) or a PNG strip.

    Frames are upscaled 4x (nearest); a PNG strip lays them side by side (at most 16 per
    row) with a 2-pixel gap.
    """
    from PIL import Image

    frames = np.asarray(frames, np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got shape {frames.shape}")
    scale = 4
    big = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    if str(path).lower().endswith(".gif"):
        images = [Image.fromarray(f) for f in big]
        images[0].save(
            path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
        )
        return
    t, h, w, _ = big.shape
    cols = min(t, 16)
    rows = -(-t // cols)
    gap = 2
    sheet = np.full((rows * (h + gap), cols * (w + gap), 3), 255, np.uint8)
    for i, frame in enumerate(big):
        r, c = divmod(i, cols)
        sheet[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = frame
    Image.fromarray(sheet).save(path)


def rollout_frames(
    env: ProcgenGame, params: ProcgenParams, key: jax.Array, num_steps: int, policy: str = "random"
) -> np.ndarray:
    """Frames uint8 (num_steps + 1, 64, 64, 3) of one environment under a policy (auto-reset on).

    policy: "random" (uniform actions) or "right" (hold RIGHT+UP: a crude platformer probe).
    """
    if policy not in ("random", "right"):
        raise ValueError(f"policy must be 'random' or 'right', got {policy!r}")
    k_reset, k_run = jax.random.split(key)
    obs, state = env.reset(k_reset, params)

    def body(carry, k):
        state = carry
        k_act, k_step = jax.random.split(k)
        if policy == "random":
            action = jax.random.randint(k_act, (), 0, NUM_ACTIONS)
        else:
            action = jnp.int32(8)
        obs, state, *_ = env.step(k_step, state, action, params)
        return state, obs

    _, frames = jax.lax.scan(body, state, jax.random.split(k_run, num_steps))
    return np.concatenate([np.asarray(obs)[None], np.asarray(frames)], axis=0)
