"""FruitBot-v0: a vertically scrolling collector after Procgen's FruitBot, in pure JAX.

Rules (read from the original's fruitbot.cpp / basic-abstract-game.cpp; no code copied):

* World W x 60 units (W = 10 easy, 20 hard). The bot (radius 0.4) starts at the bottom at a
  random x and always drifts up: its velocity mixes toward (a_x, 0.2) with
  v <- 0.9 (0.5 v + 0.5 * 0.85 * a), a_x in {-1, 0, 1}; the side walls block it.
* Walls: 5 (easy) or 10 (hard) horizontal walls, 0.6 thick, spaced 4 + a random partition of the
  leftover height; each has a gap of 20-40% (easy) or 10-30% (hard) of the width at a random
  place. Hard walls with spacing > 5 get, with p = 1/8, a locked door filling a (wider) gap
  beside a lock; key "D" (action 9) throws a key straight up (speed 0.5, radius 0.25, lives 8
  steps, at most one per 8 steps) that opens the door when it hits the lock and breaks on walls.
* 10-19 fruit (+1) and 10-19 non-fruit (-4) objects (radius 0.5) lie at random non-overlapping
  places; a row of presents at the top ends the episode with +10. Touching a wall or a closed
  door ends the episode (no penalty). Time limit 1000 steps.
* The camera follows the bot: a W x W window with the bot 0.8 units above its bottom edge.

Rendering: the static level (walls, doors, locks, fruit shapes, presents, a two-tone checker
background) is rasterised ONCE per level into an id map (uint8 per pixel, 64 pixels across the
width); a frame is a 64-row window of that map (one dynamic slice), a per-id colour/visibility
table (eaten fruit and opened doors vanish) and the bot and keys composited on top.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs_jax.procgen.common import (
    OBS_SIZE,
    SPRITE_RES,
    TEXEL_BITS,
    LevelSlot,
    ProcgenGame,
    ProcgenParams,
    action_xy,
    axis_view,
    box_cover,
    box_overlap,
    mix_velocity,
    pack_rgb,
    shape_mask,
    special_key,
    unpack_rgb,
)
from envs_jax.procgen.draws import randint, uniform_draws

HEIGHT = 60
AGENT_R = 0.4
MIX_RATE = 0.5
MAX_SPEED = 0.85
DRIFT = 0.2  # the vertical action is always 0.2: the bot cannot stop or go back
WALL_RY = 0.3
LOCK_RX, LOCK_RY = 0.25, 0.45
DOOR_ASPECT = 3.25
OBJ_R = 0.5
KEY_R = 0.25
KEY_SPEED = 0.5
KEY_DURATION = 8
GOOD_REWARD, BAD_REWARD, COMPLETION_BONUS = 1.0, -4.0, 10.0
NUM_GOOD_MAX = NUM_BAD_MAX = 19
NUM_OBJECTS = NUM_GOOD_MAX + NUM_BAD_MAX
PLACEMENT_TRIES = 32
VIEW_BELOW = 2 * AGENT_R  # the bot sits this far above the bottom edge of the view
MAP_Y0 = -1.0  # world y of the id map's bottom row

# id map values: low 7 bits an object id, the top bit the background checker shade.
# presents alternate ID_PRESENT, ID_PRESENT + 1 unit by unit; wall i part p: ID_WALL0 + 4 i + p
ID_EMPTY, ID_OUTSIDE, ID_PRESENT, ID_WALL0 = 0, 1, 2, 4
LEFT, RIGHT, DOOR, LOCK = range(4)
MAX_WALLS = 10
ID_OBJ0 = ID_WALL0 + 4 * MAX_WALLS  # object j: ID_OBJ0 + j
NUM_IDS = ID_OBJ0 + NUM_OBJECTS
SHADE_BIT = 128

MODES = {  # walls, fruit themes, door probability, minimum gap fraction, width
    "easy": dict(walls=5, themes=2, door_prob=0.0, min_gap=0.2, width=10),
    "hard": dict(walls=10, themes=6, door_prob=0.125, min_gap=0.1, width=20),
}

GOOD_COLOURS = np.array([[250, 60, 60], [255, 170, 30], [240, 230, 50], [150, 230, 60],
                         [250, 110, 180], [190, 90, 250]], np.uint8)
BAD_COLOURS = np.array([[120, 80, 50], [90, 90, 90], [150, 140, 110], [70, 110, 90],
                        [110, 70, 110], [60, 60, 120]], np.uint8)
FLOOR_COLOURS = np.array([[[70, 120, 70], [60, 105, 60]], [[120, 110, 80], [105, 95, 70]],
                          [[70, 90, 130], [60, 78, 115]], [[130, 80, 80], [115, 70, 70]],
                          [[100, 100, 110], [88, 88, 98]], [[60, 110, 120], [52, 96, 105]]],
                         np.uint8)
WALL_COLOURS = np.array([[200, 200, 210], [210, 190, 150], [170, 200, 220]], np.uint8)
DOOR_COLOUR = (240, 200, 0)
LOCK_COLOUR = (220, 30, 30)
PRESENT_COLOURS = np.array([[230, 60, 200], [60, 200, 230]], np.uint8)
OUTSIDE_COLOUR = (20, 20, 20)
AGENT_COLOUR, AGENT_DETAIL = (60, 120, 255), (10, 20, 90)  # a square robot with eyes
KEY_COLOUR = (255, 40, 40)
# good objects are discs, bad ones framed boxes, so shape alone tells them apart
OBJECT_MASKS = np.stack([shape_mask("disc"), shape_mask("frame")])


def _mode(params: ProcgenParams) -> dict:
    return MODES[params.distribution_mode]


def world_width(params: ProcgenParams) -> int:
    """World width in units: 10 (easy) or 20 (hard)."""
    return _mode(params)["width"]


def map_rows(params: ProcgenParams) -> int:
    """Rows of the id map: it spans world y from -1 to 61 + W at 64 / W pixels per unit."""
    w = world_width(params)
    return int(np.ceil((HEIGHT + w + 1 - MAP_Y0) * OBS_SIZE / w))


@struct.dataclass
class FruitBotParams(ProcgenParams):
    """FruitBot parameters: Procgen's common ones with FruitBot's 1000-step time limit."""

    max_steps_in_episode: int = 1000


@struct.dataclass
class FruitBotLevel:
    """One level. Walls (NW,): y, left/right barrier widths, door (has_door, door_x, door_rx)
    and lock_x; objects (38,): x, y, good, valid; agent_x (); floor, wall_colour int32 ();
    id_map uint32 (map_rows * 16,): the id map's bytes packed four to a word (see
    `_pack_bytes`); obj_colour uint32 (38,) packed RGB."""

    wall_y: jax.Array
    left_w: jax.Array
    right_w: jax.Array
    has_door: jax.Array
    door_x: jax.Array
    door_rx: jax.Array
    lock_x: jax.Array
    obj_x: jax.Array
    obj_y: jax.Array
    obj_good: jax.Array
    obj_valid: jax.Array
    obj_colour: jax.Array
    agent_x: jax.Array
    floor: jax.Array
    wall_colour: jax.Array
    id_map: jax.Array


@struct.dataclass
class FruitBotState:
    """Game state: agent float32 (4,) x, y, vx, vy; eaten bool (38,); door_open bool (NW,);
    keys (2,) active bool, x, y float32, life int32; last_fire int32."""

    time: jax.Array
    level_id: jax.Array
    level: FruitBotLevel
    agent: jax.Array
    eaten: jax.Array
    door_open: jax.Array
    key_active: jax.Array
    key_x: jax.Array
    key_y: jax.Array
    key_life: jax.Array
    last_fire: jax.Array
    level_slot: LevelSlot | None = None  # the self-refreshing form's pool slot (see common)


def _pack_bytes(values: jax.Array) -> jax.Array:
    """Byte values int (R, 64) -> uint32 (R * 16,), four consecutive columns per word, low
    byte first. XLA's CPU gathers move uint8 arrays ~20x slower than uint32 ones."""
    words = values.astype(jnp.uint32).reshape(values.shape[0], -1, 4)
    return (words << jnp.array([0, 8, 16, 24], jnp.uint32)).sum(-1, dtype=jnp.uint32).reshape(-1)


def _unpack_bytes(words: jax.Array) -> jax.Array:
    """uint32 (n * 16,) -> byte values int32 (n, 64): the inverse of `_pack_bytes`."""
    shifts = jnp.array([0, 8, 16, 24], jnp.uint32)
    return ((words.reshape(-1, 16, 1) >> shifts) & 0xFF).reshape(-1, OBS_SIZE).astype(jnp.int32)


def _diamond(texel: jax.Array) -> jax.Array:
    """Texels (row * S + col, non-negative) inside a diamond filling the sprite square:
    |col - (S-1)/2| + |row - (S-1)/2| <= S/2, doubled to stay in integers (and shifts)."""
    ty, tx = texel >> TEXEL_BITS, texel & (SPRITE_RES - 1)
    return jnp.abs(2 * tx - (SPRITE_RES - 1)) + jnp.abs(2 * ty - (SPRITE_RES - 1)) <= SPRITE_RES


def wall_boxes(level: FruitBotLevel, width: float) -> tuple[jax.Array, jax.Array]:
    """Boxes of every wall part: float32 (NW, 4, 4) as (cx, cy, rx, ry) for parts LEFT, RIGHT,
    DOOR, LOCK, and bool (NW, 4) whether the part exists (before doors are opened)."""
    y = level.wall_y
    lock_y = y - LOCK_RY + WALL_RY
    cx = jnp.stack([level.left_w / 2, width - level.right_w / 2, level.door_x, level.lock_x], -1)
    cy = jnp.stack([y, y, y, lock_y], -1)
    rx = jnp.stack([level.left_w / 2, level.right_w / 2, level.door_rx,
                    jnp.full_like(y, LOCK_RX)], -1)
    ry = jnp.stack([jnp.full_like(y, WALL_RY)] * 3 + [jnp.full_like(y, LOCK_RY)], -1)
    exists = jnp.stack([jnp.ones_like(level.has_door)] * 2 + [level.has_door] * 2, -1)
    return jnp.stack([cx, cy, rx, ry], -1), exists


class FruitBot(ProcgenGame):
    """FruitBot-v0 (see the module docstring for the rules)."""

    game_seed = 0xF1
    params_cls = FruitBotParams
    start_frames_in_pool = False  # its frames render faster than a stored frame is selected

    @property
    def name(self) -> str:
        return "FruitBot-v0"

    # ---- level generation ------------------------------------------------------------------
    def generate_level(
        self, key: jax.Array, level_id: jax.Array, params: ProcgenParams
    ) -> FruitBotLevel:
        """Walls with gaps (and doors), non-overlapping objects, and the level's id map."""
        mode = _mode(params)
        w = float(mode["width"])
        nw = mode["walls"]
        spare = HEIGHT - 4 * nw - 4
        u = uniform_draws(key, {
            "part": (spare,), "door": (nw,), "pct": (nw,), "left": (nw,), "side": (nw,),
            "agent": (), "floor": (), "wall": (), "counts": (2,),
            "tries": (NUM_OBJECTS, PLACEMENT_TRIES, 2), "theme": (NUM_OBJECTS,)})

        # Wall heights: 4 apart plus a uniform random partition of the leftover height.
        part = jnp.bincount(randint(u["part"], 0, nw), length=nw)
        dy = 4 + part
        wall_y = jnp.cumsum(dy).astype(jnp.float32)
        has_door = (dy > 5) & (u["door"] < mode["door_prob"])
        pct = mode["min_gap"] + 0.2 * u["pct"]
        lock_pct, door_pct = 2 * LOCK_RX / w, 2 * WALL_RY * DOOR_ASPECT / w
        num_doors = jnp.ceil((pct + 0.1 - 2 * lock_pct) / door_pct)
        pct = jnp.where(has_door, 2 * lock_pct + door_pct * num_doors, pct)
        gap = pct * w
        left_w = u["left"] * (w - gap)
        right_w = w - left_w - gap
        on_right = (u["side"] < 0.5).astype(jnp.float32)
        lock_x = left_w + LOCK_RX + on_right * (gap - 2 * LOCK_RX)
        door_x = left_w + gap / 2 - (2 * on_right - 1) * LOCK_RX
        level = FruitBotLevel(
            wall_y=wall_y, left_w=left_w, right_w=right_w, has_door=has_door, door_x=door_x,
            door_rx=gap / 2 - LOCK_RX, lock_x=lock_x,
            obj_x=jnp.zeros((NUM_OBJECTS,)), obj_y=jnp.zeros((NUM_OBJECTS,)),
            obj_good=jnp.arange(NUM_OBJECTS) < NUM_GOOD_MAX,
            obj_valid=jnp.zeros((NUM_OBJECTS,), bool),
            obj_colour=jnp.zeros((NUM_OBJECTS,), jnp.uint32),
            agent_x=u["agent"] * (w - 2 * AGENT_R) + AGENT_R,
            floor=randint(u["floor"], 0, len(FLOOR_COLOURS)),
            wall_colour=randint(u["wall"], 0, len(WALL_COLOURS)),
            id_map=jnp.zeros((map_rows(params) * OBS_SIZE // 4,), jnp.uint32),
        )

        # Objects: good ones first, then bad, each at the first of PLACEMENT_TRIES uniform
        # positions that touches nothing placed so far (the last try if none does).
        counts = randint(u["counts"], 10, 20)
        valid = jnp.where(level.obj_good, jnp.arange(NUM_OBJECTS) < counts[0],
                          jnp.arange(NUM_OBJECTS) - NUM_GOOD_MAX < counts[1])
        tries = u["tries"] * jnp.array([w - 2 * OBJ_R, HEIGHT - 2 * OBJ_R]) + OBJ_R
        boxes, exists = wall_boxes(level, w)
        boxes = boxes.reshape(-1, 4)
        exists = exists.reshape(-1)

        def place(carry, inputs):
            ox, oy, placed = carry
            j, cand, ok = inputs
            cx, cy = cand[:, 0:1], cand[:, 1:2]
            hits = jnp.any(exists & box_overlap(cx, cy, OBJ_R, OBJ_R, boxes[:, 0], boxes[:, 1],
                                                boxes[:, 2], boxes[:, 3]), axis=1)
            hits |= jnp.any(placed & box_overlap(cx, cy, OBJ_R, OBJ_R, ox, oy, OBJ_R, OBJ_R),
                            axis=1)
            hits |= box_overlap(cx[:, 0], cy[:, 0], OBJ_R, OBJ_R, level.agent_x, AGENT_R,
                                AGENT_R, AGENT_R)
            hits |= cy[:, 0] + OBJ_R > HEIGHT - 1  # the presents' row
            pick = jnp.where(jnp.any(~hits), jnp.argmax(~hits), PLACEMENT_TRIES - 1)
            ox = ox.at[j].set(cand[pick, 0])
            oy = oy.at[j].set(cand[pick, 1])
            return (ox, oy, placed.at[j].set(ok)), None

        zeros = jnp.zeros((NUM_OBJECTS,), jnp.float32)
        (obj_x, obj_y, _), _ = jax.lax.scan(
            place, (zeros, zeros, jnp.zeros((NUM_OBJECTS,), bool)),
            (jnp.arange(NUM_OBJECTS), tries, valid))
        theme = randint(u["theme"], 0, mode["themes"])
        colour = jnp.where(level.obj_good[:, None], jnp.asarray(GOOD_COLOURS)[theme],
                           jnp.asarray(BAD_COLOURS)[theme])
        level = level.replace(obj_x=obj_x, obj_y=obj_y, obj_valid=valid,
                              obj_colour=pack_rgb(colour))
        return level.replace(id_map=self._rasterise(level, params))

    def _rasterise(self, level: FruitBotLevel, params: ProcgenParams) -> jax.Array:
        """The packed id map (R * 16,) of a level, row 0 at the bottom (world y = MAP_Y0).

        Walls: every map row looks up its nearest wall. Objects: a one-hot matrix product
        (no per-pixel gathers, which are slow on CPU).
        """
        w = world_width(params)
        ppu = OBS_SIZE / w
        ys = MAP_Y0 + (jnp.arange(map_rows(params)) + 0.5) / ppu  # (R,)
        xs = (jnp.arange(OBS_SIZE) + 0.5) / ppu  # (64,)
        boxes, exists = wall_boxes(level, float(w))  # (NW, 4, 4)
        nearest = jnp.argmin(jnp.abs(ys[:, None] - level.wall_y[None, :]), axis=1)  # (R,)
        rows = boxes[nearest]  # (R, 4, 4)
        inside = (exists[nearest][:, None, :]
                  & (xs[None, :, None] >= rows[:, None, :, 0] - rows[:, None, :, 2])
                  & (xs[None, :, None] < rows[:, None, :, 0] + rows[:, None, :, 2])
                  & (ys[:, None, None] >= rows[:, None, :, 1] - rows[:, None, :, 3])
                  & (ys[:, None, None] < rows[:, None, :, 1] + rows[:, None, :, 3]))
        part_ids = ID_WALL0 + 4 * nearest[:, None, None] + jnp.arange(4)
        # the last part present wins: a lock lies over its door's edge
        wall = jnp.max(jnp.where(inside, part_ids, 0), axis=2)

        # Object j covers pixel (r, c) iff onehot(ty[j, r]) . mask_j . onehot(tx[j, c]) = 1, so
        # sum_j (j + 1) x that is one matrix product (objects never overlap, see placement).
        lo_x, lo_y = level.obj_x - OBJ_R, level.obj_y - OBJ_R
        tx = jnp.floor((xs[None, :] - lo_x[:, None]) * SPRITE_RES).astype(jnp.int32)  # (J, 64)
        ty = jnp.floor((lo_y[:, None] + 2 * OBJ_R - ys[None, :]) * SPRITE_RES).astype(jnp.int32)
        onehot_x = jax.nn.one_hot(tx, SPRITE_RES)  # zero rows outside the box
        onehot_y = jax.nn.one_hot(ty, SPRITE_RES) * jnp.where(level.obj_valid, 1.0 + jnp.arange(
            NUM_OBJECTS), 0.0)[:, None, None]  # (J, R, S)
        masks = jnp.asarray(OBJECT_MASKS, jnp.float32)[jnp.where(level.obj_good, 0, 1)]
        right = jnp.einsum("jab,jcb->jac", masks, onehot_x)  # (J, S, 64)
        which = jnp.einsum("jra,jac->rc", onehot_y, right, precision=jax.lax.Precision.HIGHEST)
        which = jnp.clip(jnp.round(which).astype(jnp.int32), 0, NUM_OBJECTS)
        obj = jnp.where(which > 0, ID_OBJ0 + which - 1, 0)

        ids = jnp.where(wall > 0, wall, obj)
        present = ID_PRESENT + (jnp.floor(xs).astype(jnp.int32) % 2)[None, :]
        ids = jnp.where((ys >= HEIGHT - 1)[:, None], present, ids)
        ids = jnp.where(((ys < 0) | (ys >= HEIGHT))[:, None], ID_OUTSIDE, ids)
        checker = (jnp.floor(ys / 2)[:, None] + jnp.floor(xs / 2)[None, :]) % 2
        return _pack_bytes(ids + SHADE_BIT * checker.astype(jnp.int32))

    def start_state(
        self, level: FruitBotLevel, level_id: jax.Array, params: ProcgenParams
    ) -> FruitBotState:
        """The bot at the bottom of the level, at rest; every object and door in place."""
        nw = level.wall_y.shape[0]
        return FruitBotState(
            time=jnp.int32(0),
            level_id=jnp.asarray(level_id, jnp.int32),
            level=level,
            agent=jnp.stack([level.agent_x, jnp.float32(AGENT_R), jnp.float32(0),
                             jnp.float32(0)]).astype(jnp.float32),
            eaten=jnp.zeros((NUM_OBJECTS,), bool),
            door_open=jnp.zeros((nw,), bool),
            key_active=jnp.zeros((2,), bool),
            key_x=jnp.zeros((2,), jnp.float32),
            key_y=jnp.zeros((2,), jnp.float32),
            key_life=jnp.zeros((2,), jnp.int32),
            last_fire=jnp.int32(0),
        )

    # ---- dynamics --------------------------------------------------------------------------
    def game_step(
        self, key: jax.Array, state: FruitBotState, action: jax.Array, params: ProcgenParams
    ) -> tuple[FruitBotState, jax.Array, jax.Array]:
        """One step in the original's order: move, collide, throw a key."""
        del key  # FruitBot is deterministic given the level
        w = float(world_width(params))
        t = state.time + 1
        lvl = state.level

        ax, _ = action_xy(action)
        acc = jnp.stack([ax.astype(jnp.float32), jnp.float32(DRIFT)])
        vel = mix_velocity(state.agent[2:], acc, MIX_RATE, MAX_SPEED)
        x = state.agent[0] + vel[0]
        y = state.agent[1] + vel[1]
        cx = jnp.clip(x, AGENT_R, w - AGENT_R)
        vel = vel.at[0].set(jnp.where(cx == x, vel[0], 0.0))
        agent = jnp.stack([cx, y, vel[0], vel[1]])

        # Keys fly up and expire after KEY_DURATION steps.
        key_y = state.key_y + KEY_SPEED
        key_life = state.key_life + 1
        key_active = state.key_active & (key_life <= KEY_DURATION)

        boxes, exists = wall_boxes(lvl, w)
        present = exists & ~jnp.stack([jnp.zeros_like(state.door_open)] * 2
                                      + [state.door_open] * 2, -1)
        on = lambda bx, by, brx, bry, b: (  # noqa: E731
            present & box_overlap(bx, by, brx, bry, b[..., 0], b[..., 1], b[..., 2], b[..., 3]))

        # Collisions of the bot: walls and closed doors kill, objects are eaten, presents win.
        hit = on(cx, y, AGENT_R, AGENT_R, boxes)
        died = jnp.any(hit[:, :DOOR + 1])
        touch = (lvl.obj_valid & ~state.eaten
                 & box_overlap(cx, y, AGENT_R, AGENT_R, lvl.obj_x, lvl.obj_y, OBJ_R, OBJ_R))
        reward = jnp.sum(jnp.where(touch, jnp.where(lvl.obj_good, GOOD_REWARD, BAD_REWARD), 0.0))
        won = y + AGENT_R > HEIGHT - 1
        reward = reward + jnp.where(won, COMPLETION_BONUS, 0.0)

        # Keys: a lock hit opens its door; barriers stop keys, doors do not.
        key_hit = on(state.key_x[:, None, None], key_y[:, None, None], KEY_R, KEY_R,
                     boxes[None]) & key_active[:, None, None]
        door_open = state.door_open | jnp.any(key_hit[..., LOCK], axis=0)
        stopped = key_hit[..., LEFT] | key_hit[..., RIGHT] | key_hit[..., LOCK]
        key_active = key_active & ~jnp.any(stopped, axis=1)

        # Throw a key: only "D", at most once per KEY_DURATION steps.
        throw = (special_key(action) == 1) & (t - state.last_fire >= KEY_DURATION)
        slot = jnp.argmin(key_active)
        put = throw & (jnp.arange(2) == slot)
        key_active = key_active | put
        key_x = jnp.where(put, cx, state.key_x)
        key_y = jnp.where(put, y, key_y)
        key_life = jnp.where(put, 0, key_life)

        new = state.replace(
            agent=agent, eaten=state.eaten | touch, door_open=door_open,
            key_active=key_active, key_x=key_x, key_y=key_y, key_life=key_life,
            last_fire=jnp.where(throw, t, state.last_fire),
        )
        return new, reward, died | won

    # ---- observation -----------------------------------------------------------------------
    def _view_rows(self, state: FruitBotState, params: ProcgenParams) -> jax.Array:
        """First id-map row of the view (int32): the bot sits VIEW_BELOW above its bottom."""
        ppu = OBS_SIZE / world_width(params)
        r0 = jnp.floor((state.agent[1] - VIEW_BELOW - MAP_Y0) * ppu).astype(jnp.int32)
        return jnp.clip(r0, 0, map_rows(params) - OBS_SIZE)

    def _colour_table(self, state: FruitBotState) -> jax.Array:
        """Packed colour uint32 (256,) of every id-map byte in the current state.

        Byte v = id + 128 * shade. Ids that are gone (eaten objects, opened doors and their
        locks) and the empty id show the floor shade, so a frame needs one lookup per pixel.
        """
        lvl = state.level
        nw = lvl.wall_y.shape[0]
        wall = jnp.asarray(WALL_COLOURS)[lvl.wall_colour]
        parts = jnp.stack([wall, wall, jnp.array(DOOR_COLOUR, jnp.uint8),
                           jnp.array(LOCK_COLOUR, jnp.uint8)])
        fixed = jnp.concatenate([
            jnp.zeros((1, 3), jnp.uint8), jnp.array([OUTSIDE_COLOUR], jnp.uint8),
            jnp.asarray(PRESENT_COLOURS),
            jnp.broadcast_to(parts, (MAX_WALLS, 4, 3)).reshape(-1, 3)])
        shown = jnp.concatenate([pack_rgb(fixed), lvl.obj_colour])  # (NUM_IDS,)
        opened = jnp.stack([jnp.zeros((nw,), bool)] * 2 + [state.door_open] * 2, -1)
        gone = jnp.concatenate([jnp.array([True, False, False, False]), opened.reshape(-1),
                                jnp.zeros((4 * (MAX_WALLS - nw),), bool), state.eaten])
        floor = pack_rgb(jnp.asarray(FLOOR_COLOURS)[lvl.floor])  # (2,)
        table = jnp.where(gone[None, :], floor[:, None], shown[None, :])  # (2, NUM_IDS)
        pad = jnp.broadcast_to(floor[:, None], (2, SHADE_BIT - NUM_IDS))
        return jnp.concatenate([table, pad], axis=1).reshape(-1)

    def render(self, state: FruitBotState, params: ProcgenParams) -> jax.Array:
        """Observation uint8 (64, 64, 3): a W x W window scrolling up with the bot."""
        w = world_width(params)
        r0 = self._view_rows(state, params)
        words = OBS_SIZE // 4
        window = jax.lax.dynamic_slice(state.level.id_map, (r0 * words,), (OBS_SIZE * words,))
        image = self._colour_table(state)[_unpack_bytes(window)[::-1]]

        centre = MAP_Y0 + r0.astype(jnp.float32) * (w / OBS_SIZE) + w / 2
        xs = axis_view(jnp.float32(w / 2), float(w), flip=False)
        ys = axis_view(centre, float(w), flip=True)
        for i in range(2):
            cover, texel = box_cover(state.key_x[i], state.key_y[i], KEY_R, KEY_R, xs, ys)
            key = _diamond(texel) & cover & state.key_active[i]
            image = jnp.where(key, pack_rgb(jnp.array(KEY_COLOUR, jnp.uint8)), image)
        cover, texel = box_cover(state.agent[0], state.agent[1], AGENT_R, AGENT_R, xs, ys)
        ty, tx = texel >> TEXEL_BITS, texel & (SPRITE_RES - 1)
        edge = (tx == 0) | (tx == SPRITE_RES - 1) | (ty == 0) | (ty == SPRITE_RES - 1)
        eyes = (ty == 2) & ((tx == 2) | (tx == SPRITE_RES - 3))
        agent = jnp.where(edge | eyes, pack_rgb(jnp.array(AGENT_DETAIL, jnp.uint8)),
                          pack_rgb(jnp.array(AGENT_COLOUR, jnp.uint8)))
        return unpack_rgb(jnp.where(cover, agent, image))

    def symbolic(self, state: FruitBotState) -> dict[str, jax.Array]:
        """Small arrays: bot (x, y, vx, vy); objects (38, 4) x, y, good, present; walls."""
        lvl = state.level
        return {
            "time": state.time,
            "level_id": state.level_id,
            "agent": state.agent,
            "objects": jnp.stack([lvl.obj_x, lvl.obj_y, lvl.obj_good.astype(jnp.float32),
                                  (lvl.obj_valid & ~state.eaten).astype(jnp.float32)], -1),
            "walls": jnp.stack([lvl.wall_y, lvl.left_w, lvl.right_w,
                                (lvl.has_door & ~state.door_open).astype(jnp.float32)], -1),
            "keys": jnp.stack([state.key_x, state.key_y,
                               state.key_active.astype(jnp.float32)], -1),
        }


_ENV = FruitBot()  # stateless; one instance shares compiled code across make() calls


def make_fruitbot(**overrides: Any) -> tuple[FruitBot, FruitBotParams]:
    """Registry factory: (env, params) with `overrides` applied to FruitBotParams."""
    return _ENV, _ENV.make_params(**overrides)
