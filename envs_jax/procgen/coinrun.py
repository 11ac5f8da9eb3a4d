"""CoinRun-v0: a Procgen-like platformer in pure JAX: run right, reach the coin, avoid dangers.

Rules (after openai/procgen's coinrun.cpp, re-implemented from its description):
* The world is a tile grid, y up. The agent (box half-extents 0.5 x 0.5787) starts at the left
  on the floor; the coin sits at the right end of the level. Touching the coin gives reward 10
  and ends the episode; overlapping lava or a saw, or touching a walking enemy, ends it with 0.
  Episodes are truncated after 1000 steps.
* Physics per step: horizontal velocity mixes toward 0.5 * action_x at rate 0.2 on the ground
  (0.03 in the air), snapping to 0 below the mix step; UP on the ground sets vy = 1.5 (a jump),
  otherwise gravity subtracts 0.2 and |vy| <= 1.5. Movement runs in max(4, int(4 |v|)) sub-steps
  against solid walls; a blocked axis keeps the unblocked fraction of its velocity. Crates are
  one-way platforms: they hold the agent when it falls onto them from above unless DOWN is held.
* Levels: 1 + U{0..2} difficulty d; d + U{0..d-1} sections, each rising or falling by up to 5
  tiles and 3..(2d+3) tiles long; long sections may be pits filled (one danger type per level)
  with lava, saws or walking enemies, with an optional stepping platform; flat sections may hold a
  saw, an enemy (hard mode only) and crate piles. Walking enemies pace left and right (speed
  0.15) and turn at walls and at invisible section barriers.
* easy vs hard, as in the original: hard mode allows walking enemies on flat sections and varies
  the wall theme and the agent's colour; backgrounds vary with the level in both modes.

Simplifications: saws and crates are grid tiles (they never move in the original either);
enemies move one sub-step per step; all graphics are flat-colour sprites.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs_jax.procgen.common import (
    SPRITE_RES,
    TEXEL_BITS,
    AxisView,
    LevelSlot,
    ProcgenGame,
    ProcgenParams,
    action_xy,
    axis_view,
    box_texels,
    grid_lookup,
    lookup,
    make_sprite,
    once,
    opacity_masks,
    over,
    pack_sprites,
    shade,
    take_rows,
    texel_opaque,
    unpack_rgb,
)

# ---- world constants (the original's values) --------------------------------------------------
WIDTH, HEIGHT = 64, 48  # tiles; the original's world is 64 x 64 but levels stay below y = 32
VISIBILITY = 13.0  # tiles across the 64-pixel view
AGENT_RX, AGENT_RY = 0.5, 0.5787
GRAVITY, MAX_JUMP, AIR_CONTROL, MAX_SPEED, MIXRATE = 0.2, 1.5, 0.15, 0.5, 0.2
ENEMY_SPEED = 0.15
GOAL_REWARD = 10.0
TIME_LIMIT = 1000
COLLIDE_MARGIN = -0.001  # overlaps must exceed 1e-3 to count (touching is not colliding)
CORNER_MARGIN = 0.98  # walls are probed at the corners of the box shrunk by this factor
MAX_SUBSTEPS = 6  # max(4, int(4 |v|)) with |v| <= sqrt(0.5^2 + 1.5^2)
MAX_DIFFICULTY = 3
MAX_SECTIONS = 2 * MAX_DIFFICULTY - 1
MAX_DY = int(MAX_JUMP * MAX_JUMP / (2 * GRAVITY) - 0.5)  # 5 tiles: highest reachable step
MAX_DX = int(MAX_SPEED * 2 * MAX_JUMP / GRAVITY - 0.5)  # 7 tiles: widest jumpable pit
ENEMY_SLOTS_PER_SECTION = MAX_DX + 1  # a pit full of enemies, or one enemy on a flat section
MAX_ENEMIES = MAX_SECTIONS * ENEMY_SLOTS_PER_SECTION
DRAWN_ENEMIES = 8  # enemies drawn per frame: the nearest visible ones

# ---- tile types ------------------------------------------------------------------------------
EMPTY, WALL_MID, WALL_TOP, LAVA_MID, LAVA_TOP, SAW, CRATE, GOAL, BARRIER = range(9)
NUM_TILE_TYPES = 9

# ---- themes and sprites ----------------------------------------------------------------------
WALL_THEMES = (  # dirt, grass, planet, sand, snow, stone
    (122, 84, 50),
    (70, 140, 60),
    (120, 80, 150),
    (205, 175, 110),
    (200, 215, 235),
    (110, 110, 120),
)
AGENT_THEMES = ((30, 80, 230), (20, 170, 200), (40, 160, 40), (230, 60, 150), (120, 40, 200))
BACKGROUNDS = (
    (150, 200, 240),
    (190, 225, 250),
    (250, 215, 180),
    (200, 190, 240),
    (170, 230, 210),
    (240, 190, 200),
    (120, 150, 200),
    (220, 235, 190),
)
ENEMY_RGB = (200, 40, 160)


def _tile_atlas() -> np.ndarray:
    """RGBA atlas uint8 (themes, NUM_TILE_TYPES, S, S, 4); empty and barrier are transparent."""
    atlas = np.zeros((len(WALL_THEMES), NUM_TILE_TYPES, SPRITE_RES, SPRITE_RES, 4), np.uint8)
    for t, rgb in enumerate(WALL_THEMES):
        atlas[t, WALL_MID] = make_sprite("box", shade(rgb, 0.8), detail=shade(rgb, 0.65))
        top = make_sprite("box", rgb)
        top[:2, :, :3] = shade(rgb, 1.3)
        atlas[t, WALL_TOP] = top
        atlas[t, LAVA_MID] = make_sprite("box", (230, 80, 20))
        atlas[t, LAVA_TOP] = make_sprite("half", (250, 120, 30), detail=(255, 200, 60))
        atlas[t, SAW] = make_sprite("saw", (160, 160, 170), detail=(60, 60, 70))
        atlas[t, CRATE] = make_sprite("frame", (170, 110, 40))
        atlas[t, GOAL] = make_sprite("disc", (255, 200, 0), detail=(200, 130, 0))
    return atlas


def _agent_sprites() -> np.ndarray:
    """RGBA uint8 (agent themes, 2 facings (right, left), S, S, 4)."""
    out = np.zeros((len(AGENT_THEMES), 2, SPRITE_RES, SPRITE_RES, 4), np.uint8)
    for t, rgb in enumerate(AGENT_THEMES):
        right = make_sprite("person", rgb, detail=shade(rgb, 0.5))
        right[2, 5, :3] = (255, 255, 255)  # an eye on the facing side
        right[2, 5, 3] = 255
        out[t, 0] = right
        out[t, 1] = right[:, ::-1]
    return out


def _enemy_sprites() -> np.ndarray:
    """RGBA uint8 (2 facings (right, left), S, S, 4)."""
    right = make_sprite("blob", ENEMY_RGB, detail=shade(ENEMY_RGB, 0.5))
    return np.stack([right, right[:, ::-1]])


SKY = np.array([(rgb, shade(rgb, 0.9)) for rgb in BACKGROUNDS], np.uint8)  # (B, 2 shades, 3)
# packed once here: packing gathered bytes in the frame's last fusion redid it per output byte
SKY_PACKED = (SKY.astype(np.uint32) << np.arange(0, 24, 8, dtype=np.uint32)).sum(
    -1, dtype=np.uint32) | np.uint32(255 << 24)  # uint32 (B, 2 shades), as pack_rgb
COLORS, (TILE_OFFSET, ENEMY_OFFSET, AGENT_OFFSET) = pack_sprites(
    _tile_atlas(), _enemy_sprites(), _agent_sprites()
)
ENEMY_MASKS = opacity_masks(_enemy_sprites())  # (2 facings, 2) uint32
AGENT_MASKS = opacity_masks(_agent_sprites()[0])  # the same shape for every agent theme


@struct.dataclass
class CoinRunParams(ProcgenParams):
    """CoinRun parameters: the shared Procgen ones with the original's 1000-step limit."""

    max_steps_in_episode: int = TIME_LIMIT


@struct.dataclass
class Level:
    """One generated level. grid int8 (HEIGHT, WIDTH) [y, x]; enemies in MAX_ENEMIES slots."""

    grid: jax.Array
    enemy_x: jax.Array  # float32 (E,) centre x
    enemy_row: jax.Array  # int32 (E,) tile row (centre y = row + 0.5)
    enemy_vx: jax.Array  # float32 (E,)
    enemy_on: jax.Array  # bool (E,)
    wall_theme: jax.Array  # int32
    agent_theme: jax.Array  # int32
    background: jax.Array  # int32
    difficulty: jax.Array  # int32 in 1..3
    num_sections: jax.Array  # int32, sections actually built
    goal_x: jax.Array  # int32 tile of the coin
    goal_y: jax.Array  # int32


@struct.dataclass
class CoinRunState:
    """Episode state: the level's grid and enemies, the agent's box centre and velocity."""

    time: jax.Array
    level_id: jax.Array
    grid: jax.Array
    enemy_x: jax.Array
    enemy_row: jax.Array
    enemy_vx: jax.Array
    enemy_on: jax.Array
    x: jax.Array
    y: jax.Array
    vx: jax.Array
    vy: jax.Array
    on_crate: jax.Array
    facing_left: jax.Array
    wall_theme: jax.Array
    agent_theme: jax.Array
    background: jax.Array
    level_slot: LevelSlot | None = None  # the self-refreshing form's pool slot (see common)


# ---- level generation ------------------------------------------------------------------------


def _fill(grid: jax.Array, x: jax.Array, y: jax.Array, dx: jax.Array, dy: jax.Array,
          value: int, when: jax.Array) -> jax.Array:
    """Set tiles [x, x+dx) x [y, y+dy) to `value` where `when` (a mask op, no scatter)."""
    cols = jnp.arange(WIDTH)[None, :]
    rows = jnp.arange(HEIGHT)[:, None]
    inside = (cols >= x) & (cols < x + dx) & (rows >= y) & (rows < y + dy) & when
    return jnp.where(inside, jnp.int8(value), grid)


def _fill_block(grid, x, y, dx, dy, mid: int, top: int, when):
    """A block whose top row is `top` tiles and the rest `mid` (dy >= 1)."""
    grid = _fill(grid, x, y, dx, dy - 1, mid, when)
    return _fill(grid, x, y + dy - 1, dx, 1, top, when)


def _randn(u: jax.Array, n: jax.Array) -> jax.Array:
    """Uniform int in [0, n) from a uniform [0, 1) draw `u`, for a traced n >= 1 (int32)."""
    return jnp.minimum(jnp.floor(u * jnp.maximum(n, 1)), jnp.maximum(n, 1) - 1).astype(jnp.int32)


DRAWS_PER_SECTION = 21 + ENEMY_SLOTS_PER_SECTION  # uniforms consumed by one section


def _section(carry, inputs, dif, danger, num_sections, hard: bool):
    """Build one section to the right of curr_x (a lax.scan body); see the module docstring."""
    grid, curr_x, curr_y, going, built = carry
    s, k = inputs
    slot = jnp.arange(ENEMY_SLOTS_PER_SECTION)
    going = going & (s < num_sections) & (curr_x + 15 < WIDTH)
    built = built + going
    dy = jnp.minimum(_randn(k[0], 4) + 1 + dif // 3, MAX_DY)
    flip = (curr_y >= 20) | ((curr_y >= 5) & (_randn(k[1], 2) == 1))
    dy = jnp.where(flip, -dy, dy)
    dx = _randn(k[2], 2 * dif) + 3 + dif // 3
    curr_y = jnp.where(going, jnp.maximum(curr_y + dy, 1), curr_y)
    pit = going & (dx > 7) & (curr_y > 3) & (_randn(k[3], 20) >= dif)
    flat = going & ~pit

    # A pit: ground on both sides, a danger at the bottom, maybe a stepping platform.
    x1 = _randn(k[4], 3) + 1
    x2 = _randn(k[5], 3) + 1
    pit_w = dx - x1 - x2
    x2 = jnp.where(pit_w > MAX_DX, dx - x1 - MAX_DX, x2)
    pit_w = jnp.minimum(pit_w, MAX_DX)
    grid = _fill_block(grid, curr_x, 0, x1, curr_y, WALL_MID, WALL_TOP, pit)
    grid = _fill_block(grid, curr_x + dx - x2, 0, x2, curr_y, WALL_MID, WALL_TOP, pit)
    lava_h = _randn(k[6], curr_y - 3) + 1
    grid = _fill_block(grid, curr_x + x1, 1, pit_w, lava_h, LAVA_MID, LAVA_TOP,
                       pit & (danger == 0))
    grid = _fill(grid, curr_x + x1, 1, pit_w, 1, SAW, pit & (danger == 1))
    x3 = jnp.where(pit_w == 5, 1, 2) + _randn(k[7], 2)
    w1 = jnp.where(pit_w <= 6, 1 + _randn(k[8], 2), pit_w - x3 - 2 - _randn(k[9], 2))
    grid = _fill_block(grid, curr_x + x1 + x3, curr_y - 1, w1, 1, WALL_MID, WALL_TOP,
                       pit & (pit_w > 4))
    pit_enemy = pit & (danger == 2) & (slot < pit_w)

    # A flat section: ground, maybe a saw, an enemy (hard only) and two crate piles.
    grid = _fill_block(grid, curr_x, 0, dx, curr_y, WALL_MID, WALL_TOP, flat)
    has_saw = flat & (_randn(k[11], 10) < 2 * dif) & (dx > 3)
    ob1 = jnp.where(has_saw, curr_x + _randn(k[10], dx - 2) + 1, -1)
    grid = _fill(grid, ob1, curr_y, 1, 1, SAW, has_saw)
    has_enemy = flat & (_randn(k[13], 10) < dif) & (dx > 3) & hard
    ob2 = jnp.where(has_enemy, curr_x + _randn(k[12], dx - 2) + 1, -1)
    for i in range(2):
        crate_x = curr_x + _randn(k[14 + 3 * i], dx - 2) + 1
        pile = flat & (_randn(k[15 + 3 * i], 2) == 1) & (crate_x != ob1) & (crate_x != ob2)
        grid = _fill(grid, crate_x, curr_y, 1, _randn(k[16 + 3 * i], 3) + 1, CRATE, pile)

    enemies = (
        jnp.where(pit_enemy, curr_x + x1 + slot, ob2).astype(jnp.float32) + 0.5,
        jnp.where(pit_enemy, 1, curr_y) * jnp.ones_like(slot),
        ENEMY_SPEED * jnp.where(k[21:] < 0.5, 1.0, -1.0),
        pit_enemy | ((slot == ENEMY_SLOTS_PER_SECTION - 1) & has_enemy),
    )

    # Invisible barriers at both ends of the section's surface turn walking enemies.
    left = grid[curr_y, curr_x - 1]
    barrier_left = going & (left != WALL_MID) & (left != WALL_TOP)
    grid = _fill(grid, curr_x - 1, curr_y, 1, 1, BARRIER, barrier_left)
    curr_x = jnp.where(going, curr_x + dx, curr_x)
    grid = _fill(grid, curr_x, curr_y, 1, 1, BARRIER, going)
    return (grid, curr_x, curr_y, going, built), enemies


def generate_level(key: jax.Array, hard: bool) -> Level:
    """Generate a CoinRun level from `key` (pure, fixed shapes; a scan over sections)."""
    k_level, k_sections = jax.random.split(key)
    u = jax.random.uniform(k_level, (6,))
    dif = _randn(u[0], MAX_DIFFICULTY) + 1
    num_sections = _randn(u[1], dif) + dif
    danger = _randn(u[2], 3)
    wall_theme = _randn(u[3], len(WALL_THEMES)) if hard else jnp.int32(0)
    agent_theme = _randn(u[4], len(AGENT_THEMES)) if hard else jnp.int32(0)
    background = _randn(u[5], len(BACKGROUNDS))

    grid = jnp.zeros((HEIGHT, WIDTH), jnp.int8)
    true = jnp.bool_(True)
    grid = _fill(grid, 0, 0, WIDTH, 1, WALL_TOP, true)
    grid = _fill(grid, 0, 0, 1, HEIGHT, WALL_MID, true)
    grid = _fill(grid, WIDTH - 1, 0, 1, HEIGHT, WALL_MID, true)
    grid = _fill(grid, 0, HEIGHT - 1, WIDTH, 1, WALL_MID, true)

    carry = (grid, jnp.int32(5), jnp.int32(1), true, jnp.int32(0))
    draws = jax.random.uniform(k_sections, (MAX_SECTIONS, DRAWS_PER_SECTION))
    body = partial(_section, dif=dif, danger=danger, num_sections=num_sections, hard=hard)
    (grid, curr_x, curr_y, _, built), (ex, erow, evx, eon) = jax.lax.scan(
        body, carry, (jnp.arange(MAX_SECTIONS), draws)
    )
    grid = _fill(grid, curr_x, curr_y, 1, 1, GOAL, true)
    grid = _fill_block(grid, curr_x, 0, 1, curr_y, WALL_MID, WALL_TOP, true)
    grid = _fill(grid, curr_x + 1, 0, WIDTH, HEIGHT, WALL_MID, true)
    return Level(
        grid=grid,
        enemy_x=ex.reshape(-1),
        enemy_row=erow.reshape(-1).astype(jnp.int32),
        enemy_vx=evx.reshape(-1).astype(jnp.float32),
        enemy_on=eon.reshape(-1),
        wall_theme=wall_theme,
        agent_theme=agent_theme,
        background=background,
        difficulty=dif,
        num_sections=built,
        goal_x=curr_x,
        goal_y=curr_y,
    )


# ---- dynamics --------------------------------------------------------------------------------


def _tile_at(grid: jax.Array, fx: jax.Array, fy: jax.Array) -> jax.Array:
    """Tile type at world point(s) (fx, fy); outside the grid counts as wall (int32)."""
    ix = jnp.floor(fx).astype(jnp.int32)
    iy = jnp.floor(fy).astype(jnp.int32)
    inside = (ix >= 0) & (ix < WIDTH) & (iy >= 0) & (iy < HEIGHT)
    t = grid[jnp.clip(iy, 0, HEIGHT - 1), jnp.clip(ix, 0, WIDTH - 1)].astype(jnp.int32)
    return jnp.where(inside, t, WALL_MID)


def _is_wall(t: jax.Array) -> jax.Array:
    return (t == WALL_MID) | (t == WALL_TOP)


def _corners(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    sx = jnp.array([-1.0, 1.0, -1.0, 1.0]) * AGENT_RX * CORNER_MARGIN
    sy = jnp.array([-1.0, -1.0, 1.0, 1.0]) * AGENT_RY * CORNER_MARGIN
    return x + sx, y + sy


def _move_x(grid, x, y, d):
    """Agent sub-step along x by d: (new x, blocked). Walls stop it flush with the tile edge."""
    nx = x + d
    cx, cy = _corners(nx, y)
    blocked = jnp.any(_is_wall(_tile_at(grid, cx, cy))) & (d != 0)
    snapped = jnp.where(d > 0, jnp.floor(nx + AGENT_RX) - AGENT_RX,
                        jnp.ceil(nx - AGENT_RX) + AGENT_RX)
    return jnp.where(blocked, snapped, nx), blocked


def _move_y(grid, x, y, d, start_y, down_held):
    """Agent sub-step along y by d: (new y, blocked, landed on a crate).

    Crates hold a falling agent whose bottom was at or above the crate's top at the start of
    the step, unless DOWN is held.
    """
    ny = y + d
    cx, cy = _corners(x, ny)
    types = _tile_at(grid, cx, cy)
    wall = jnp.any(_is_wall(types))
    crate_top = jnp.floor(cy[:2]) + 1.0
    crate = jnp.any(
        (types[:2] == CRATE) & (start_y - AGENT_RY >= crate_top - 1e-4)
    ) & (d < 0) & ~down_held
    blocked = (wall | crate) & (d != 0)
    snapped = jnp.where(d > 0, jnp.floor(ny + AGENT_RY) - AGENT_RY,
                        jnp.ceil(ny - AGENT_RY) + AGENT_RY)
    return jnp.where(blocked, snapped, ny), blocked, crate & blocked


def _step_enemies(grid, ex, erow, evx):
    """Walking enemies advance by vx and bounce off walls and barriers (mirrored position)."""
    nx = ex + evx
    edge = nx + jnp.sign(evx) * 0.5 * CORNER_MARGIN
    t = _tile_at(grid, edge, erow.astype(jnp.float32) + 0.5)
    bounce = _is_wall(t) | (t == BARRIER)
    delta = jnp.where(evx < 0, jnp.ceil(nx - 0.5) - (nx - 0.5), jnp.floor(nx + 0.5) - (nx + 0.5))
    return jnp.where(bounce, nx + 2 * delta, nx), jnp.where(bounce, -evx, evx)


def _touching_tiles(grid, x, y) -> jax.Array:
    """Types (9,) of the tiles the agent's box overlaps by more than 1e-3 (else EMPTY)."""
    lo_x = jnp.floor(x - (AGENT_RX + COLLIDE_MARGIN))
    hi_x = jnp.floor(x + (AGENT_RX + COLLIDE_MARGIN))
    lo_y = jnp.floor(y - (AGENT_RY + COLLIDE_MARGIN))
    hi_y = jnp.floor(y + (AGENT_RY + COLLIDE_MARGIN))
    off = jnp.arange(3, dtype=jnp.float32)
    tx = (lo_x + off)[None, :]
    ty = (lo_y + off)[:, None]
    types = _tile_at(grid, tx + 0.5, ty + 0.5)
    return jnp.where((tx <= hi_x) & (ty <= hi_y), types, EMPTY).reshape(-1)


def physics_step(state: CoinRunState, action: jax.Array) -> tuple[CoinRunState, jax.Array,
                                                                   jax.Array]:
    """One CoinRun step without reset or time: (state, reward float32, terminated bool)."""
    grid = state.grid
    ax, ay = action_xy(action)
    below = _tile_at(grid, state.x + jnp.array([-1.0, 1.0]) * (AGENT_RX - 0.01),
                     state.y - (AGENT_RY + 0.01))
    support = (state.on_crate | jnp.any(_is_wall(below))) & (state.vy == 0)
    jump = (ay > 0) & support
    ay = jnp.where((ay > 0) & ~support, 0, ay)

    mix = jnp.where(support, MIXRATE, MIXRATE * AIR_CONTROL)
    vx = (1 - mix) * state.vx + mix * MAX_SPEED * ax
    vx = jnp.where(jnp.abs(vx) < mix * MAX_SPEED, 0.0, vx)
    vy = jnp.where(support, state.vy + 0.2 * ay, state.vy)
    vy = jnp.where(jump, MAX_JUMP, jnp.clip(vy - GRAVITY, -MAX_JUMP, MAX_JUMP))

    ex, evx = _step_enemies(grid, state.enemy_x, state.enemy_row, state.enemy_vx)

    n = jnp.maximum(4, jnp.floor(4 * jnp.sqrt(vx * vx + vy * vy)).astype(jnp.int32))
    x_first = jnp.where(ay != 0, False, jnp.where(ax != 0, True, jnp.abs(vx) > jnp.abs(vy)))
    dx, dy = vx / n, vy / n
    down_held = ay < 0

    def sub(s, carry):
        x, y, free_x, free_y, on_crate, stopped = carry
        active = (s < n) & ~stopped
        # x then y, or y then x; both computed, one kept (cheap next to rendering)
        xa, bxa = _move_x(grid, x, y, dx)
        ya, bya, ca = _move_y(grid, xa, y, dy, state.y, down_held)
        yb, byb, cb = _move_y(grid, x, y, dy, state.y, down_held)
        xb, bxb = _move_x(grid, x, yb, dx)
        nx, ny = jnp.where(x_first, xa, xb), jnp.where(x_first, ya, yb)
        bx, by = jnp.where(x_first, bxa, bxb), jnp.where(x_first, bya, byb)
        crate = jnp.where(x_first, ca, cb)
        return (
            jnp.where(active, nx, x),
            jnp.where(active, ny, y),
            free_x + (active & ~bx),
            free_y + (active & ~by),
            on_crate | (active & crate),
            stopped | (active & bx & by),
        )

    zero = jnp.int32(0)
    x, y, free_x, free_y, on_crate, _ = jax.lax.fori_loop(
        0, MAX_SUBSTEPS, sub, (state.x, state.y, zero, zero, jnp.bool_(False), jnp.bool_(False))
    )
    vx = vx * free_x / n
    vy = vy * free_y / n

    touched = _touching_tiles(grid, x, y)
    got_coin = jnp.any(touched == GOAL)
    burnt = jnp.any((touched == LAVA_MID) | (touched == LAVA_TOP) | (touched == SAW))
    eaten = jnp.any(
        state.enemy_on
        & (jnp.abs(x - ex) < AGENT_RX + 0.5 + COLLIDE_MARGIN)
        & (jnp.abs(y - (state.enemy_row + 0.5)) < AGENT_RY + 0.5 + COLLIDE_MARGIN)
    )
    facing_left = jnp.where(ax > 0, False, jnp.where(ax < 0, True, state.facing_left))
    new = state.replace(
        x=x, y=y, vx=vx, vy=vy, on_crate=on_crate, enemy_x=ex, enemy_vx=evx,
        facing_left=facing_left,
    )
    reward = jnp.where(got_coin, GOAL_REWARD, 0.0).astype(jnp.float32)
    return new, reward, got_coin | burnt | eaten


# ---- rendering -------------------------------------------------------------------------------


VIEW_ROWS = int(np.ceil(VISIBILITY)) + 2  # tile rows a view can touch, counted from its bottom


def _with_enemy_rows(state: CoinRunState, xs: AxisView, row0: jax.Array, base: jax.Array
                     ) -> jax.Array:
    """`base` int32 (VIEW_ROWS, 64) < 2^16 with every (view tile row, pixel column)'s enemy code
    in the high half-word: 0 = no enemy, else 1 + texel column + S * facing_left.

    Only the DRAWN_ENEMIES nearest visible enemies are drawn (ties: the lower slot), found by
    `lax.top_k` (which puts the lower index first among equals; a rank from all pairwise
    comparisons cost more). Enemies occupy exactly one tile row, so per-row coverage is all a
    frame needs; where drawn enemies overlap the larger code wins. The loop over the drawn
    enemies also keeps XLA CPU from recomputing these rows inside the per-pixel fusion.
    """
    half = VISIBILITY / 2 + 1
    near_x = jnp.abs(state.enemy_x - state.x)
    visible = (
        state.enemy_on & (near_x < half) & (jnp.abs(state.enemy_row + 0.5 - state.y) < half)
    )
    slot = jnp.arange(near_x.shape[0])
    nearest = jax.lax.top_k(-jnp.where(visible, near_x, jnp.inf), DRAWN_ENEMIES)[1]
    rows = row0 + jnp.arange(VIEW_ROWS)

    def draw(k, packed):
        # the k-th nearest visible enemy, picked by a one-hot sum (no gather)
        pick = (slot == nearest[k]) & visible
        ex = jnp.sum(jnp.where(pick, state.enemy_x, 0.0))
        row = jnp.sum(jnp.where(pick, state.enemy_row, 0))
        left = jnp.any(pick & (state.enemy_vx < 0)).astype(jnp.int32)
        rel = xs.coord - (ex - 0.5)  # (64,) position inside the enemy box
        in_x = (rel >= 0) & (rel < 1) & jnp.any(pick)
        u = jnp.clip(jnp.floor(rel * SPRITE_RES), 0, SPRITE_RES - 1).astype(jnp.int32)
        code = jnp.where(in_x & (rows == row)[:, None], 1 + u + SPRITE_RES * left, 0)
        return jnp.maximum(packed >> 16, code) << 16 | (packed & 0xFFFF)

    return jax.lax.fori_loop(0, DRAWN_ENEMIES, draw, base)


def render_state(state: CoinRunState) -> jax.Array:
    """Agent-centred 64x64 RGB view, uint8 (64, 64, 3): 13 tiles across, world y up.

    Layers (back to front): sky (level colour, darker bands every 4 tiles so that scrolling
    shows on open stretches), tiles, then one sprite layer holding the agent where its box
    covers the pixel and enemies elsewhere (they only overlap when the episode ends); a
    transparent sprite texel shows the layers below.

    Cost model (XLA CPU): tile types and enemy codes are found per (view tile row, column), a
    VIEW_ROWS x 64 gather, and copied to pixel rows whole; sprite opacity comes from bit masks;
    so each pixel does ONE table gather (tile, agent or enemy texel) plus elementwise work.
    """
    xs = axis_view(state.x, VISIBILITY, flip=False)
    ys = axis_view(state.y, VISIBILITY, flip=True)
    row0 = ys.tile[-1]  # lowest visible tile row (screen bottom)
    agent_x, agent_u = box_texels(state.x - AGENT_RX, state.x + AGENT_RX, xs, flip=False)
    agent_y, agent_v = box_texels(state.y - AGENT_RY, state.y + AGENT_RY, ys, flip=True)
    # per pixel row: view tile row, tile texel row, agent cover and texel row (computed once)
    band, tile_v, agent_y, agent_v = once(jnp.stack([
        jnp.clip(ys.tile - row0, 0, VIEW_ROWS - 1), ys.texel, agent_y, agent_v])).astype(
            jnp.int32)[:, :, None]
    # per pixel column: agent cover and texel column, sky band shade ((tile // 4) % 2)
    agent_x, agent_u, shade = once(jnp.stack([agent_x, agent_u, xs.tile >> 2 & 1])).astype(
        jnp.int32)[:, None, :]
    types = grid_lookup(state.grid, row0 + jnp.arange(VIEW_ROWS), xs.tile, outside=WALL_MID)
    theme = TILE_OFFSET + state.wall_theme * NUM_TILE_TYPES * SPRITE_RES**2
    tile_base = theme + types * SPRITE_RES**2 + xs.texel[None, :]  # (R, 64)
    # one row gather serves both per-row layers
    rows = take_rows(_with_enemy_rows(state, xs, row0, tile_base), band[:, 0])  # (64, 64)
    tile = (rows & 0xFFFF) + (tile_v << TEXEL_BITS)
    enemy = jnp.maximum((rows >> 16) - 1, 0)  # S * facing + texel column where code > 0
    # shifts and masks, not // and %: S is a power of two and the operands are non-negative
    enemy_texel = (enemy >> TEXEL_BITS << 2 * TEXEL_BITS) + (tile_v << TEXEL_BITS) + (
        enemy & (SPRITE_RES - 1)
    )
    enemy_shows = (rows >= 1 << 16) & texel_opaque(ENEMY_MASKS, enemy_texel)
    cover = (agent_y & agent_x) == 1
    texel = (agent_v << TEXEL_BITS) + agent_u
    facing = state.facing_left.astype(jnp.int32)
    agent_shows = cover & texel_opaque(AGENT_MASKS, facing * SPRITE_RES**2 + texel)
    agent = AGENT_OFFSET + (2 * state.agent_theme + facing) * SPRITE_RES**2 + texel
    index = jnp.where(agent_shows, agent,
                      jnp.where(~cover & enemy_shows, ENEMY_OFFSET + enemy_texel, tile))
    sky_pair = lookup(jnp.asarray(SKY_PACKED), state.background)
    sky = jnp.where(shade == 1, sky_pair[1], sky_pair[0])
    return unpack_rgb(over(lookup(jnp.asarray(COLORS), index), sky))


class CoinRun(ProcgenGame):
    """CoinRun-v0: gymnax environment over the shared Procgen pool machinery."""

    game_seed = 0xC01
    params_cls = CoinRunParams

    @property
    def name(self) -> str:
        return "CoinRun-v0"

    def generate_level(self, key: jax.Array, level_id: jax.Array, params: ProcgenParams) -> Level:
        return generate_level(key, params.distribution_mode == "hard")

    def start_state(self, level: Level, level_id: jax.Array, params: ProcgenParams
                    ) -> CoinRunState:
        return CoinRunState(
            time=jnp.int32(0),
            level_id=jnp.asarray(level_id, jnp.int32),
            grid=level.grid,
            enemy_x=level.enemy_x,
            enemy_row=level.enemy_row,
            enemy_vx=level.enemy_vx,
            enemy_on=level.enemy_on,
            x=jnp.float32(1 + AGENT_RX),
            y=jnp.float32(1 + AGENT_RY),
            vx=jnp.float32(0),
            vy=jnp.float32(0),
            on_crate=jnp.bool_(False),
            facing_left=jnp.bool_(False),
            wall_theme=level.wall_theme,
            agent_theme=level.agent_theme,
            background=level.background,
        )

    def game_step(self, key, state, action, params):
        return physics_step(state, action)

    def render(self, state: CoinRunState, params: ProcgenParams) -> jax.Array:
        return render_state(state)

    def symbolic(self, state: CoinRunState) -> dict[str, jax.Array]:
        return {
            "agent_xy": jnp.stack([state.x, state.y]),
            "agent_v": jnp.stack([state.vx, state.vy]),
            "grid": state.grid,
            "enemy_xy": jnp.stack([state.enemy_x, state.enemy_row + 0.5], axis=-1),
            "enemy_on": state.enemy_on,
            "time": state.time,
            "level_id": state.level_id,
        }


_ENV = CoinRun()  # stateless; one instance shares compiled code across make() calls


def make_coinrun(**overrides) -> tuple[CoinRun, CoinRunParams]:
    """Registry factory: `(env, params)` with `overrides` of CoinRunParams fields."""
    return _ENV, _ENV.make_params(**overrides)
