"""StarPilot-v0: a side-scrolling shooter after Procgen's StarPilot, in pure JAX.

Rules (read from the original's starpilot.cpp / basic-abstract-game.cpp; no code copied):

* World 16 x 16 units, all of it visible (no camera scroll; the starfield scrolls left). The
  ship starts at a uniformly random position, radius 0.4; velocity mixes toward the action
  (v <- 0.9 (0.5 v + 0.5 * 0.75 * a)) and the world edges block it.
* Special keys (actions 9..14) stop the ship's thrust and fire a bullet (speed 0.8, radius 0.4)
  every step they are held: key "A" (action 10) fires left, the others fire right.
* A level is a schedule of spawners: groups every 10..29 steps until t = 500. Easy: flyers only
  (groups of 1..5, speed 0.3, 2 hit points). Hard adds fast flyers (speed 0.6, 1 hp), meteors
  (radius 2, speed 0.2, 500 hp, i.e. shields), clouds (radius 2, harmless, drawn on top, bullets
  pass) and turrets (radius 2, speed 0.2, 5 hp, fire every 20..29 steps); flyers may come from
  the left (p = 0.1) and enemy bullets are faster (0.8 instead of 0.5). Half the flyers fly
  straight, the others at an angle in (-45, 45) degrees. Each flyer fires once, aimed at the
  ship, 10..99 steps after it spawns.
* Reward +1 per enemy destroyed, +10 when the finish line (launched at t = 500 from the right
  edge, speed 0.2, full height) reaches the ship; touching an enemy (except clouds) or an
  enemy bullet ends the episode. Time limit 1000 steps (never reached: the finish line sweeps
  the whole screen by t ~ 580).

Fixed-size state: a level is a sorted table of `NUM_SPAWNERS` spawners; live objects occupy
slots (`NUM_ENEMY_SLOTS` enemies, `NUM_ENEMY_BULLETS`, `NUM_PLAYER_BULLETS`) handed out by a
gather-only allocator. A spawn or enemy bullet that finds no free slot is dropped and counted in
`state.dropped` (tests check that this essentially never happens).

Rendering draws every object as one or two axis-aligned rectangles per class, and finds the
topmost class of each pixel separably: rectangle k holds 1 + class on the pixel rows it covers
and 8 on the columns it covers (uint8), so min(row value, column value) is 1 + class where it
covers a pixel and 0 elsewhere, and the maximum over rectangles is 1 + the topmost class (a
pass of byte-wide max/min per rectangle: vectorizes on CPU, elementwise on GPU).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs_jax.procgen.common import (
    OBS_SIZE,
    LevelSlot,
    ProcgenGame,
    ProcgenParams,
    action_xy,
    axis_view,
    box_overlap,
    mix_velocity,
    pack_rgb,
    special_key,
    unpack_rgb,
)
from envs_jax.procgen.draws import randint, uniform_draws

WORLD = 16.0
AGENT_R = 0.4
BULLET_R = 0.4
PLAYER_BULLET_SPEED = 0.8
V_SCALE = 0.4
SLOW_SPEED = 0.5 * V_SCALE
WIN_TIME = 500
FINISH_RX = 1.0
ENEMY_REWARD = 1.0
COMPLETION_BONUS = 10.0
MIX_RATE = 0.5
MAX_SPEED = 0.75
MAX_GROUPS = 50  # group start times are >= 11 and >= 10 apart, so at most 49 fit before 500
GROUP_MAX = 5
NUM_SPAWNERS = MAX_GROUPS * GROUP_MAX
SPAWN_LOOKAHEAD = 4  # at most 3 spawners share a spawn time (groups start >= 10 steps apart)
NUM_ENEMY_SLOTS = 32  # schedules need <= 23 at once (4000 levels, no kills)
NUM_ENEMY_BULLETS = 16
NUM_PLAYER_BULLETS = 24  # a player bullet leaves the screen within 21 steps
NEVER = 1 << 20

# Enemy kinds, and their per-kind constants.
FLYER, FAST_FLYER, METEOR, CLOUD, TURRET = range(5)
KIND_NAMES = ("flyer", "fast_flyer", "meteor", "cloud", "turret")
KIND_RADIUS = np.array([0.5, 0.5, 2.0, 2.0, 2.0], np.float32)
KIND_HEALTH = np.array([2, 1, 500, 0, 5], np.int32)
KIND_LETHAL = np.array([True, True, True, False, True])
KIND_SHOOTABLE = np.array([True, True, True, False, True])  # clouds let player bullets pass
KIND_WEIGHT = {"easy": (1.0, 0.0, 0.0, 0.0, 0.0), "hard": (3.0, 1.0, 1.0, 1.0, 1.0)}

# Render classes, bottom to top; each adds 8**class to the pixels it covers.
C_FLYER, C_METEOR, C_TURRET, C_ENEMY_BULLET, C_PLAYER_BULLET, C_FINISH, C_AGENT, C_CLOUD = range(8)
KIND_CLASS = np.array([C_FLYER, C_FLYER, C_METEOR, C_CLOUD, C_TURRET], np.int32)
FLYER_COLOURS = np.array(
    [[230, 60, 60], [240, 130, 40], [220, 70, 200], [250, 90, 120], [200, 40, 40],
     [255, 110, 80], [190, 80, 230]], np.uint8)
SKY_COLOURS = np.array(
    [[8, 8, 24], [20, 6, 30], [4, 18, 30], [24, 14, 8], [6, 24, 14], [18, 18, 18]], np.uint8)
CLASS_COLOURS = np.array(
    [[0, 0, 0],  # flyer: from FLYER_COLOURS
     [140, 120, 100],  # meteor
     [90, 200, 90],  # turret
     [255, 230, 40],  # enemy bullet
     [80, 240, 255],  # player bullet
     [250, 250, 250],  # finish line
     [60, 110, 255],  # ship
     [170, 170, 200]], np.uint8)  # cloud
# Rectangles of each enemy kind as fractions (x0, x1, y0, y1) of its bounding box (an empty
# second rectangle is unused): flyers are boxes, fast flyers flat bars, meteors rounded
# crosses, clouds wide ovals, turrets boxes.
KIND_RECTS = np.array(
    [[[0, 1, 0, 1], [0, 0, 0, 0]],
     [[0, 1, 0.25, 0.75], [0, 0, 0, 0]],
     [[0, 1, 0.25, 0.75], [0.25, 0.75, 0, 1]],
     [[0, 1, 0.3, 0.7], [0.2, 0.8, 0.1, 0.9]],
     [[0, 1, 0, 1], [0, 0, 0, 0]]], np.float32)


STAR_PERIOD = 256
RECT_BLOCKS = 2  # loop iterations that draw the rectangles (see `_packed_frame`)


def _star_texture() -> np.ndarray:
    """Star brightness uint8 (2 * 64, 256 + 64): a periodic field, 0 = empty, doubled so any
    64 x 64 window at row < 64, column < 256 can be sliced without wrapping."""
    rng = np.random.default_rng(1912)
    field = np.where(rng.random((OBS_SIZE, STAR_PERIOD)) < 1 / 64,
                     rng.integers(60, 170, (OBS_SIZE, STAR_PERIOD)), 0).astype(np.uint8)
    field = np.concatenate([field, field], axis=0)
    return np.concatenate([field, field[:, :OBS_SIZE]], axis=1)


STARS = _star_texture()


@struct.dataclass
class StarPilotParams(ProcgenParams):
    """StarPilot parameters: Procgen's common ones with StarPilot's 1000-step time limit."""

    max_steps_in_episode: int = 1000


@struct.dataclass
class StarPilotLevel:
    """One level: the spawner schedule, sorted by spawn time (unused rows spawn at NEVER).

    spawn_time int32 (S,); kind int32 (S,); y, vx, vy float32 (S,) (units, units/step);
    fire_time int32 (S,) (steps after spawn; 0 = never); agent_start float32 (2,);
    flyer_colour, sky int32 (); star_offset int32 (2,) (row, column) into the star texture.
    """

    spawn_time: jax.Array
    kind: jax.Array
    y: jax.Array
    vx: jax.Array
    vy: jax.Array
    fire_time: jax.Array
    agent_start: jax.Array
    flyer_colour: jax.Array
    sky: jax.Array
    star_offset: jax.Array


@struct.dataclass
class Movers:
    """A set of slots of moving boxes: active bool (n,); x, y, vx, vy float32 (n,)."""

    active: jax.Array
    x: jax.Array
    y: jax.Array
    vx: jax.Array
    vy: jax.Array


@struct.dataclass
class StarPilotState:
    """Full game state (the level travels with it, so pool refreshes never change it).

    enemies: Movers (E,) plus kind, health, spawn_time, fire_time int32 (E,) and order
    (int32 spawner index, later spawns lie on top). finish_x: float32 (x of the finish line,
    meaningful once time >= WIN_TIME). next_spawn: index of the next spawner in the table.
    dropped: spawns or enemy bullets lost for lack of a free slot.
    """

    time: jax.Array
    level_id: jax.Array
    level: StarPilotLevel
    agent: jax.Array  # float32 (4,): x, y, vx, vy
    enemies: Movers
    kind: jax.Array
    health: jax.Array
    spawn_time: jax.Array
    fire_time: jax.Array
    order: jax.Array
    enemy_bullets: Movers
    player_bullets: Movers
    finish_x: jax.Array
    next_spawn: jax.Array
    dropped: jax.Array
    level_slot: LevelSlot | None = None  # the self-refreshing form's pool slot (see common)


def allocate(free: jax.Array, want: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Hand the k-th free slot to the k-th wanting candidate, with gathers only.

    free: bool (S,); want: bool (M,). Returns (source, take): source int32 (S,) is the candidate
    index slot s receives and take bool (S,) whether it receives one. Candidates beyond the
    number of free slots get none.
    """
    slot_rank = jnp.cumsum(free) - 1
    want_rank = jnp.cumsum(want)
    take = free & (slot_rank < want_rank[-1])
    source = jnp.argmax(want_rank[None, :] > slot_rank[:, None], axis=1)
    return source.astype(jnp.int32), take


def _fill(slots: Movers, take: jax.Array, source: jax.Array, new: Movers) -> Movers:
    return jax.tree.map(lambda old, n: jnp.where(take, n[source], old), slots, new)


def _advance(m: Movers) -> Movers:
    return m.replace(x=m.x + m.vx, y=m.y + m.vy)


def _in_bounds(m: Movers, rx: jax.Array, ry: jax.Array) -> jax.Array:
    return (m.x + rx >= 0) & (m.y + ry >= 0) & (m.x - rx <= WORLD) & (m.y - ry <= WORLD)


class StarPilot(ProcgenGame):
    """StarPilot-v0 (see the module docstring for the rules)."""

    game_seed = 0x5741
    params_cls = StarPilotParams

    @property
    def name(self) -> str:
        return "StarPilot-v0"

    # ---- level generation ------------------------------------------------------------------
    def generate_level(
        self, key: jax.Array, level_id: jax.Array, params: ProcgenParams
    ) -> StarPilotLevel:
        """Spawner schedule of one level: groups of enemies until t = 500, sorted by time."""
        hard = params.distribution_mode == "hard"
        g, m = MAX_GROUPS, GROUP_MAX
        u = uniform_draws(key, {
            "gaps": (g,), "kind": (g,), "size": (g,), "y": (g,), "theta": (g, m),
            "straight": (g, m), "side": (g, m), "fire": (g, m), "turret": (g, m),
            "agent": (2,), "visual": (2,), "stars": (2,)})
        group_t = jnp.cumsum(randint(u["gaps"], 10, 30)) + 1  # first group at 1 + U{10..29}
        weights = np.asarray(KIND_WEIGHT[params.distribution_mode])
        edges = jnp.asarray(np.cumsum(weights) / weights.sum())
        kind = jnp.minimum(jnp.sum(u["kind"][:, None] >= edges[None, :], axis=1), 4)
        is_flyer = (kind == FLYER) | (kind == FAST_FLYER)
        size = jnp.where(is_flyer, randint(u["size"], 1, GROUP_MAX + 1), 1)
        radius = jnp.asarray(KIND_RADIUS)[kind]
        y = u["y"] * (WORLD - 2 * radius) + radius

        j = jnp.arange(m)
        valid = (group_t[:, None] <= WIN_TIME) & (j[None, :] < size[:, None])
        spawn = group_t[:, None] + 5 * j[None, :]
        theta = (u["theta"] - 0.5) * (math.pi / 2)
        theta = jnp.where((u["straight"] < 0.5) | ~is_flyer[:, None], 0.0, theta)
        flyer_speed = 1.0 if hard else 0.75
        speed = jnp.asarray([flyer_speed, 1.5, 0.5, 0.5, 0.5])[kind] * V_SCALE
        vx = -jnp.cos(theta) * speed[:, None]
        vy = jnp.sin(theta) * speed[:, None]
        from_left = is_flyer[:, None] & (u["side"] > 0.9) & hard
        vx = jnp.where(from_left, -vx, vx)
        fire = randint(u["fire"], 10, 100)
        fire = jnp.where(kind[:, None] == TURRET, randint(u["turret"], 20, 30), fire)
        fire = jnp.where((kind[:, None] == METEOR) | (kind[:, None] == CLOUD), 0, fire)

        spawn = jnp.where(valid, spawn, NEVER).reshape(-1)
        order = jnp.argsort(spawn, stable=True)
        flat = lambda a: jnp.broadcast_to(a, (g, m)).reshape(-1)[order]  # noqa: E731
        visual = randint(u["visual"], 0, jnp.array([len(FLYER_COLOURS), len(SKY_COLOURS)]))
        return StarPilotLevel(
            spawn_time=spawn[order].astype(jnp.int32),
            kind=flat(kind[:, None]).astype(jnp.int32),
            y=flat(y[:, None]).astype(jnp.float32),
            vx=flat(vx).astype(jnp.float32),
            vy=flat(vy).astype(jnp.float32),
            fire_time=flat(fire).astype(jnp.int32),
            agent_start=u["agent"] * (WORLD - 2 * AGENT_R) + AGENT_R,
            flyer_colour=visual[0].astype(jnp.int32),
            sky=visual[1].astype(jnp.int32),
            star_offset=randint(u["stars"], 0, jnp.array([OBS_SIZE, STAR_PERIOD])),
        )

    def start_state(
        self, level: StarPilotLevel, level_id: jax.Array, params: ProcgenParams
    ) -> StarPilotState:
        """The ship at the level's start position, nothing else on screen, time 0."""

        def movers(n: int) -> Movers:
            z = jnp.zeros((n,), jnp.float32)
            return Movers(jnp.zeros((n,), bool), z, z, z, z)

        zi = jnp.zeros((NUM_ENEMY_SLOTS,), jnp.int32)
        return StarPilotState(
            time=jnp.int32(0),
            level_id=jnp.asarray(level_id, jnp.int32),
            level=level,
            agent=jnp.concatenate([level.agent_start, jnp.zeros((2,), jnp.float32)]),
            enemies=movers(NUM_ENEMY_SLOTS),
            kind=zi,
            health=zi,
            spawn_time=zi,
            fire_time=zi,
            order=zi,
            enemy_bullets=movers(NUM_ENEMY_BULLETS),
            player_bullets=movers(NUM_PLAYER_BULLETS),
            finish_x=jnp.float32(WORLD + FINISH_RX),
            next_spawn=jnp.int32(0),
            dropped=jnp.int32(0),
        )

    # ---- dynamics --------------------------------------------------------------------------
    def game_step(
        self, key: jax.Array, state: StarPilotState, action: jax.Array, params: ProcgenParams
    ) -> tuple[StarPilotState, jax.Array, jax.Array]:
        """One step in the original's order: move, collide, fire, kill, spawn, shoot."""
        del key  # StarPilot is deterministic given the level
        hard = params.distribution_mode == "hard"
        t = state.time + 1
        lvl = state.level

        # Ship: velocity mixes toward the action, world edges block.
        ax, ay = action_xy(action)
        acc = jnp.stack([ax, ay]).astype(jnp.float32)
        vel = mix_velocity(state.agent[2:], acc, MIX_RATE, MAX_SPEED)
        pos = state.agent[:2] + vel
        clamped = jnp.clip(pos, AGENT_R, WORLD - AGENT_R)
        vel = jnp.where(clamped == pos, vel, 0.0)
        agent = jnp.concatenate([clamped, vel])
        px, py = clamped[0], clamped[1]

        enemies = _advance(state.enemies)
        ebul = _advance(state.enemy_bullets)
        pbul = _advance(state.player_bullets)
        finish_x = jnp.where(t > WIN_TIME, state.finish_x - SLOW_SPEED, state.finish_x)

        # Collisions with the ship.
        er = jnp.asarray(KIND_RADIUS)[state.kind]
        hit_enemy = enemies.active & jnp.asarray(KIND_LETHAL)[state.kind] & box_overlap(
            enemies.x, enemies.y, er, er, px, py, AGENT_R, AGENT_R)
        hit_bullet = ebul.active & box_overlap(ebul.x, ebul.y, BULLET_R, BULLET_R, px, py,
                                            AGENT_R, AGENT_R)
        finished = (t > WIN_TIME) & box_overlap(finish_x, WORLD / 2, FINISH_RX, WORLD / 2, px, py,
                                             AGENT_R, AGENT_R)
        died = jnp.any(hit_enemy) | jnp.any(hit_bullet)

        # Player bullets: each damages the most recently spawned shootable enemy it touches.
        touch = (pbul.active[:, None] & enemies.active[None, :]
                 & jnp.asarray(KIND_SHOOTABLE)[state.kind][None, :]
                 & box_overlap(pbul.x[:, None], pbul.y[:, None], BULLET_R, BULLET_R,
                            enemies.x[None, :], enemies.y[None, :], er[None, :], er[None, :]))
        target = jnp.argmax(jnp.where(touch, state.order[None, :], -1), axis=1)
        spent = jnp.any(touch, axis=1)
        damage = jnp.sum(spent[:, None] & (target[:, None] == jnp.arange(NUM_ENEMY_SLOTS)),
                         axis=0)
        health = state.health - damage
        pbul = pbul.replace(active=pbul.active & ~spent
                            & _in_bounds(pbul, BULLET_R, BULLET_R))
        ebul = ebul.replace(active=ebul.active & _in_bounds(ebul, BULLET_R, BULLET_R))
        enemies = enemies.replace(active=enemies.active & _in_bounds(enemies, er, er))

        # Enemies fire at the ship: flyers once, turrets periodically.
        age = t - state.spawn_time
        periodic = (state.kind == TURRET) & (age > 0) & (age % jnp.maximum(state.fire_time, 1)
                                                         == 0)
        fires = enemies.active & (state.fire_time > 0) & (periodic | (
            (state.kind != TURRET) & (age == state.fire_time)))
        bspeed = jnp.where(state.kind == TURRET, 2.0, 2.0 if hard else 1.25) * V_SCALE
        dx, dy = px - enemies.x, py - enemies.y
        norm = jnp.maximum(jnp.sqrt(dx * dx + dy * dy), 1e-6)
        shots = Movers(fires, enemies.x, enemies.y, dx * bspeed / norm, dy * bspeed / norm)
        src, take = allocate(~ebul.active, fires)
        ebul = _fill(ebul, take, src, shots)
        dropped = state.dropped + jnp.sum(fires) - jnp.sum(take)

        # Kills.
        killed = enemies.active & jnp.asarray(KIND_SHOOTABLE)[state.kind] & (health <= 0)
        reward = ENEMY_REWARD * jnp.sum(killed).astype(jnp.float32)
        enemies = enemies.replace(active=enemies.active & ~killed)

        # Spawns due now (the table is sorted, so they sit at next_spawn onwards).
        idx = state.next_spawn + jnp.arange(SPAWN_LOOKAHEAD)
        idx = jnp.minimum(idx, NUM_SPAWNERS - 1)
        due = (lvl.spawn_time[idx] == t) & (state.next_spawn + jnp.arange(SPAWN_LOOKAHEAD)
                                            < NUM_SPAWNERS)
        kind_new = lvl.kind[idx]
        r_new = jnp.asarray(KIND_RADIUS)[kind_new]
        vx_new = lvl.vx[idx]
        x_new = jnp.where(vx_new < 0, WORLD + r_new, -r_new)
        src, take = allocate(~enemies.active, due)
        enemies = _fill(enemies, take, src, Movers(due, x_new, lvl.y[idx], vx_new, lvl.vy[idx]))
        pick = lambda old, new: jnp.where(take, new[src], old)  # noqa: E731
        kind = pick(state.kind, kind_new)
        health = pick(health, jnp.asarray(KIND_HEALTH)[kind_new])
        spawn_time = pick(state.spawn_time, jnp.full((SPAWN_LOOKAHEAD,), t))
        fire_time = pick(state.fire_time, lvl.fire_time[idx])
        order = pick(state.order, idx)
        dropped = dropped + jnp.sum(due) - jnp.sum(take)
        next_spawn = state.next_spawn + jnp.sum(due)

        # The ship fires while a special key is held ("A" fires left).
        special = special_key(action)
        direction = jnp.where(special == 2, -1.0, 1.0)
        shot = Movers(special[None] != 0, px[None] + AGENT_R * direction, py[None],
                      PLAYER_BULLET_SPEED * direction[None], jnp.zeros((1,)))
        src, take = allocate(~pbul.active, shot.active)
        pbul = _fill(pbul, take, src, shot)

        new = state.replace(
            agent=agent, enemies=enemies, kind=kind, health=health, spawn_time=spawn_time,
            fire_time=fire_time, order=order, enemy_bullets=ebul, player_bullets=pbul,
            finish_x=finish_x, next_spawn=next_spawn, dropped=dropped,
        )
        reward = reward + jnp.where(finished, COMPLETION_BONUS, 0.0)
        return new, reward, died | finished

    # ---- observation -----------------------------------------------------------------------
    def _rects(
        self, state: StarPilotState, params: ProcgenParams
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Every drawable rectangle: boxes float32 (K, 4) as (x0, x1, y0, y1), class int32 (K,),
        visible bool (K,). Easy levels hold flyers only, which need one rectangle each."""
        e = state.enemies
        r = jnp.asarray(KIND_RADIUS)[state.kind]
        parts = 2 if params.distribution_mode == "hard" else 1
        frac = jnp.asarray(KIND_RECTS)[state.kind][:, :parts]  # (E, parts, 4)
        x0 = e.x - r
        y0 = e.y - r
        ebox = jnp.stack([x0[:, None] + 2 * r[:, None] * frac[..., 0],
                          x0[:, None] + 2 * r[:, None] * frac[..., 1],
                          y0[:, None] + 2 * r[:, None] * frac[..., 2],
                          y0[:, None] + 2 * r[:, None] * frac[..., 3]], -1).reshape(-1, 4)
        ecls = jnp.repeat(jnp.asarray(KIND_CLASS)[state.kind], parts)
        evis = jnp.repeat(e.active, parts)

        def boxes(m: Movers, rx: float, ry: float) -> jax.Array:
            return jnp.stack([m.x - rx, m.x + rx, m.y - ry, m.y + ry], -1)

        ax, ay = state.agent[0], state.agent[1]
        single = jnp.stack([
            jnp.stack([ax - AGENT_R, ax + AGENT_R, ay - AGENT_R, ay + AGENT_R]),
            jnp.stack([state.finish_x - FINISH_RX, state.finish_x + FINISH_RX,
                       jnp.float32(0), jnp.float32(WORLD)]),
        ])
        all_boxes = jnp.concatenate([
            ebox, boxes(state.enemy_bullets, BULLET_R, BULLET_R),
            boxes(state.player_bullets, BULLET_R, BULLET_R), single])
        classes = jnp.concatenate([
            ecls, jnp.full((NUM_ENEMY_BULLETS,), C_ENEMY_BULLET),
            jnp.full((NUM_PLAYER_BULLETS,), C_PLAYER_BULLET), jnp.array([C_AGENT, C_FINISH])])
        visible = jnp.concatenate([
            evis, state.enemy_bullets.active, state.player_bullets.active,
            jnp.array([True]), (state.time >= WIN_TIME)[None]])
        return all_boxes, classes.astype(jnp.int32), visible

    def render(self, state: StarPilotState, params: ProcgenParams) -> jax.Array:
        """Observation uint8 (64, 64, 3): the whole 16 x 16 world, 4 pixels per unit."""
        return unpack_rgb(self._packed_frame(state, params))

    def _packed_frame(self, state: StarPilotState, params: ProcgenParams) -> jax.Array:
        """Packed colours uint32 (64, 64) of the frame (see `common.pack_rgb`)."""
        xs = axis_view(jnp.float32(WORLD / 2), WORLD, flip=False)
        ys = axis_view(jnp.float32(WORLD / 2), WORLD, flip=True)
        boxes, classes, visible = self._rects(state, params)
        covered_rows = (ys.coord >= boxes[:, 2:3]) & (ys.coord < boxes[:, 3:4]) & visible[:, None]
        covered_cols = (xs.coord >= boxes[:, 0:1]) & (xs.coord < boxes[:, 1:2])
        num_classes = len(CLASS_COLOURS)
        row_value = jnp.where(covered_rows, classes[:, None] + 1, 0).astype(jnp.uint8)  # (K, 64)
        col_value = jnp.where(covered_cols, num_classes, 0).astype(jnp.uint8)  # (K, 64)
        # Rectangles are drawn in RECT_BLOCKS blocks by a loop: XLA keeps the loop's result as
        # its own array, so the class map is built in vectorized passes, once (fused into its
        # consumers it would be redone for each colour byte and each output, as scalar code).
        # Padding rectangles have value 0 and draw nothing.
        per = -(-boxes.shape[0] // RECT_BLOCKS)
        pad = ((0, RECT_BLOCKS * per - boxes.shape[0]), (0, 0))
        row_value = jnp.pad(row_value, pad).reshape(RECT_BLOCKS, per, OBS_SIZE)
        col_value = jnp.pad(col_value, pad).reshape(RECT_BLOCKS, per, OBS_SIZE)

        def draw_block(b: jax.Array, top: jax.Array) -> jax.Array:
            for k in range(per):
                top = jnp.maximum(top, jnp.minimum(row_value[b, k][:, None],
                                                   col_value[b, k][None, :]))
            return top

        top = jax.lax.fori_loop(0, RECT_BLOCKS, draw_block,
                                jnp.zeros((OBS_SIZE, OBS_SIZE), jnp.uint8))  # 1 + top class
        colours = pack_rgb(jnp.asarray(CLASS_COLOURS).at[C_FLYER].set(
            jnp.asarray(FLYER_COLOURS)[state.level.flyer_colour]))
        image = self._sky(state)
        # a select per class is cheaper than a per-pixel table gather on CPU
        for c in range(num_classes):
            image = jnp.where(top == c + 1, colours[c], image)
        return image

    def _sky(self, state: StarPilotState) -> jax.Array:
        """Level-coloured space (packed uint32 (64, 64)) with stars scrolling left 0.8 pixels
        per step: a window of one fixed star texture at a level-dependent offset."""
        scroll = jnp.floor(0.8 * state.time.astype(jnp.float32)).astype(jnp.int32)
        col = (scroll + state.level.star_offset[1]) % STAR_PERIOD
        stars = jax.lax.dynamic_slice(jnp.asarray(STARS), (state.level.star_offset[0], col),
                                      (OBS_SIZE, OBS_SIZE)).astype(jnp.uint32)
        grey = stars | stars << 8 | stars << 16 | jnp.uint32(255 << 24)
        base = pack_rgb(jnp.asarray(SKY_COLOURS)[state.level.sky])
        return jnp.where(stars > 0, grey, base)

    def symbolic(self, state: StarPilotState) -> dict[str, jax.Array]:
        """Small arrays: ship (x, y, vx, vy); enemies/bullets (n, 4) x, y, kind-or-vx, active."""
        e = state.enemies
        return {
            "time": state.time,
            "level_id": state.level_id,
            "agent": state.agent,
            "enemies": jnp.stack([e.x, e.y, state.kind.astype(jnp.float32),
                                  state.health.astype(jnp.float32)], -1),
            "enemies_active": e.active,
            "enemy_bullets": jnp.stack([state.enemy_bullets.x, state.enemy_bullets.y], -1),
            "enemy_bullets_active": state.enemy_bullets.active,
            "player_bullets": jnp.stack([state.player_bullets.x, state.player_bullets.y], -1),
            "player_bullets_active": state.player_bullets.active,
            "finish_x": jnp.where(state.time >= WIN_TIME, state.finish_x, jnp.nan),
            "dropped": state.dropped,
        }


_ENV = StarPilot()  # stateless; one instance shares compiled code across make() calls


def make_starpilot(**overrides: Any) -> tuple[StarPilot, StarPilotParams]:
    """Registry factory: (env, params) with `overrides` applied to StarPilotParams."""
    return _ENV, _ENV.make_params(**overrides)
