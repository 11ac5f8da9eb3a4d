"""CoinRun-v0: gymnax API, determinism, rules (scripted states), solvability, rendering."""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs_jax
from envs_jax.procgen import coinrun as C
from envs_jax.procgen.common import COMBOS, action_xy, rollout_frames, special_key

RIGHT, RIGHT_UP, LEFT, NOOP, DOWN = 7, 8, 1, 4, 3


@pytest.fixture(scope="module")
def game():
    env, params = envs_jax.make("CoinRun-v0", pool_size=32, refresh_size=8)
    return env, params


step = jax.jit(C.physics_step)
render = jax.jit(C.render_state)


@pytest.fixture(scope="module")
def hard_params(game):
    env, _ = game
    return env.make_params(pool_size=32, refresh_size=8, distribution_mode="hard")


@pytest.fixture(scope="module")
def vstep(game):
    env, _ = game
    return jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))


def flat_state(env, params, **changes):
    """A start state on an empty room: floor at row 0 (top face y = 1), walls around."""
    grid = np.zeros((C.HEIGHT, C.WIDTH), np.int8)
    grid[0, :] = C.WALL_TOP
    grid[:, 0] = grid[:, -1] = grid[-1, :] = C.WALL_MID
    level = jax.tree.map(lambda a: a[0], params.pool_levels)
    state = env.start_state(level, 0, params).replace(
        grid=jnp.asarray(grid), enemy_on=jnp.zeros_like(level.enemy_on)
    )
    return state.replace(**changes)


def with_tiles(state, *tiles):
    grid = np.asarray(state.grid).copy()
    for x, y, t in tiles:
        grid[y, x] = t
    return state.replace(grid=jnp.asarray(grid))


def batch1(tree, n=4):
    """`tree` repeated on a new leading axis of n (the batch the module's vstep compiles for)."""
    return jax.tree.map(lambda a: jnp.repeat(jnp.asarray(a)[None], n, axis=0), tree)


def run(vstep, params, state, actions):
    """Step one env through `actions`; returns per-step (reward, terminated, truncated) and the
    states before auto-reset are not needed: stops at the first done."""
    state = batch1(state)
    out = []
    for i, a in enumerate(actions):
        keys = jax.random.split(jax.random.PRNGKey(i), 4)
        obs, state, r, te, tr, info = vstep(keys, state, jnp.full(4, a, jnp.int32), params)
        out.append((float(r[0]), bool(te[0]), bool(tr[0])))
        if te[0] or tr[0]:
            break
    return out, jax.tree.map(lambda a: a[0], state)


def test_api_shapes_spaces_and_vmap(game, vstep):
    env, params = game
    assert env.num_actions == 15 == env.action_space(params).n
    assert env.observation_space(params).shape == (64, 64, 3)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    assert obs.shape == (4, 64, 64, 3) and obs.dtype == jnp.uint8
    out = vstep(keys, state, jnp.arange(4), params)
    obs2, state2, reward, term, trunc, info = out
    assert obs2.shape == (4, 64, 64, 3) and obs2.dtype == jnp.uint8
    assert reward.shape == term.shape == trunc.shape == (4,)
    assert reward.dtype == jnp.float32 and term.dtype == jnp.bool_
    assert info["final_observation"].shape == (4, 64, 64, 3)
    assert np.all(np.asarray(state2.time) == 1)


def test_determinism_per_key_and_level(game, vstep):
    env, params = game
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    a = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    b = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    # level i is a function of i alone: regenerating the pool's ids (in another batch
    # order, another call) gives the pool's levels back
    ids = params.pool_ids[::-1]
    again = env.generate_levels(ids, params)
    for x, y in zip(jax.tree.leaves(again), jax.tree.leaves(params.pool_levels), strict=True):
        np.testing.assert_array_equal(x, np.asarray(y)[::-1])
    # different ids give different levels (whole content: grid, enemies, themes, background);
    # the simplest levels have few variants, so allow a rare coincidence
    leaves = jax.tree.leaves(again)
    content = np.concatenate([np.asarray(a).reshape(len(ids), -1) * 1.0 for a in leaves], axis=1)
    assert len({row.tobytes() for row in content}) >= len(set(ids.tolist())) - 1


def test_actions_follow_procgen_combos():
    for a, keys in enumerate(COMBOS):
        x, y = action_xy(jnp.int32(a))
        want_x = ("RIGHT" in keys) - ("LEFT" in keys)
        want_y = ("UP" in keys) - ("DOWN" in keys)
        assert (int(x), int(y)) == (want_x, want_y), (a, keys)
        want_key = "DAWSQE".index(keys[0]) + 1 if a >= 9 else 0
        assert int(special_key(jnp.int32(a))) == want_key


def test_run_speed_and_jump_height_match_closed_forms(game):
    env, params = game
    state = flat_state(env, params)
    for t in range(1, 6):
        state, _, _ = step(state, RIGHT)
        # on the ground vx mixes toward 0.5 at rate 0.2: vx_t = 0.5 (1 - 0.8^t)
        assert float(state.vx) == pytest.approx(0.5 * (1 - 0.8**t), rel=1e-5)
        assert float(state.y) == pytest.approx(1 + C.AGENT_RY, abs=1e-6)
    state = flat_state(env, params, x=jnp.float32(20.5))
    y0, peak = float(state.y), float(state.y)
    for _ in range(12):
        state, _, _ = step(state, RIGHT_UP)
        peak = max(peak, float(state.y))
    # jump: vy = 1.5 without gravity on the take-off step, then -0.2 per step
    expected = sum(1.5 - 0.2 * k for k in range(8))
    assert peak - y0 == pytest.approx(expected, abs=1e-4)


def test_walls_block_and_crates_hold_unless_down(game):
    env, params = game
    state = flat_state(env, params)
    for _ in range(10):
        state, _, done = step(state, LEFT)
        assert not done
    assert float(state.x) == pytest.approx(1 + C.AGENT_RX, abs=1e-5)
    # a crate at (10, 1): falling onto it from above holds; holding DOWN drops through
    base = with_tiles(flat_state(env, params, x=jnp.float32(10.5), y=jnp.float32(4.0)),
                      (10, 1, C.CRATE))
    held, dropped = base, base
    for _ in range(15):
        held, _, _ = step(held, NOOP)
        dropped, _, _ = step(dropped, DOWN)
    assert float(held.y) == pytest.approx(2 + C.AGENT_RY, abs=1e-4)
    assert float(dropped.y) == pytest.approx(1 + C.AGENT_RY, abs=1e-4)


def test_coin_gives_ten_and_ends(game, vstep):
    env, params = game
    state = with_tiles(flat_state(env, params), (3, 1, C.GOAL))
    out, after = run(vstep, params, state, [RIGHT] * 20)
    *before, last = out
    assert all(r == 0 and not te and not tr for r, te, tr in before)
    assert last == (10.0, True, False)
    assert int(after.time) == 0, "auto-reset starts a new episode"


@pytest.mark.parametrize("danger", ["saw", "lava", "enemy"])
def test_dangers_end_the_episode_without_reward(game, vstep, danger):
    env, params = game
    state = flat_state(env, params)
    if danger == "saw":
        state = with_tiles(state, (4, 1, C.SAW))
    elif danger == "lava":
        state = with_tiles(state, (4, 0, C.LAVA_TOP), (5, 0, C.LAVA_TOP))
    else:
        on = np.zeros(C.MAX_ENEMIES, bool)
        on[0] = True
        ex = np.zeros(C.MAX_ENEMIES, np.float32)
        ex[0] = 6.5
        state = state.replace(
            enemy_on=jnp.asarray(on), enemy_x=jnp.asarray(ex),
            enemy_row=jnp.ones(C.MAX_ENEMIES, jnp.int32),
            enemy_vx=jnp.full(C.MAX_ENEMIES, -C.ENEMY_SPEED, jnp.float32),
        )
    out, _ = run(vstep, params, state, [RIGHT] * 30)
    assert out[-1] == (0.0, True, False)
    assert len(out) > 1, "the agent starts clear of the danger"


def test_time_limit_truncates_with_final_observation(game, vstep):
    env, params = game
    assert params.max_steps_in_episode == 1000
    state = flat_state(env, params, time=jnp.int32(998))
    out, after = run(vstep, params, state, [NOOP, NOOP])
    assert out == [(0.0, False, False), (0.0, False, True)]
    assert int(after.time) == 0
    # final_observation is the pre-reset frame: the same as rendering the stepped state
    pre = flat_state(env, params, time=jnp.int32(999))
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    _, _, _, _, tr, info = vstep(keys, batch1(pre), jnp.full(4, NOOP, jnp.int32), params)
    stepped, _, _ = step(pre, NOOP)
    assert bool(tr[0])
    np.testing.assert_array_equal(info["final_observation"][0], render(stepped))


def scripted_action(state):
    """Privileged policy: run right; jump when a wall, gap or danger is 1-2 tiles ahead."""
    fx = jnp.floor(state.x)
    feet = jnp.floor(state.y - C.AGENT_RY + 0.01) + 0.5
    ahead = fx + jnp.arange(1, 3) + 0.5
    t_feet = C._tile_at(state.grid, ahead, feet)
    t_below = C._tile_at(state.grid, ahead, feet - 1)
    danger = (t_feet == C.SAW) | (t_feet == C.LAVA_TOP) | (t_feet == C.LAVA_MID)
    wall = C._is_wall(t_feet) | (t_feet == C.CRATE)
    gap = ~C._is_wall(t_below) & (t_below != C.CRATE)
    enemy = jnp.any(
        state.enemy_on & (state.enemy_x > state.x) & (state.enemy_x - state.x < 3)
        & (jnp.abs(state.enemy_row + 0.5 - state.y) < 1.5)
    )
    return jnp.where(jnp.any(danger | wall | gap) | enemy, RIGHT_UP, RIGHT)


def first_episode_returns(env, params, n=64, steps=200):
    """First-episode returns (n,) of envs whose first half plays the script, second random."""
    scripted = jnp.arange(n) < n // 2
    keys = jax.random.split(jax.random.PRNGKey(11), n)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

    def body(carry, k):
        state, ret, done_once, first = carry
        k_act, k_step = jax.random.split(k)
        random = jax.random.randint(k_act, (n,), 0, 15)
        action = jnp.where(scripted, jax.vmap(scripted_action)(state), random)
        _, state, r, te, tr, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_step, n), state, action, params
        )
        done = te | tr
        first = jnp.where(done & ~done_once, ret + r, first)
        return (state, jnp.where(done, 0.0, ret + r), done_once | done, first), None

    zeros = jnp.zeros(n)
    init = (state, zeros, jnp.zeros(n, bool), zeros)
    (_, _, _, first), _ = jax.lax.scan(body, init, jax.random.split(jax.random.PRNGKey(12), steps))
    first = np.asarray(first)
    return first[: n // 2], first[n // 2 :]


def test_privileged_script_beats_random(game):
    env, params = game
    scripted, random = first_episode_returns(env, params)
    assert set(np.unique(np.concatenate([scripted, random]))) <= {0.0, 10.0}
    # success rates: the script must solve most levels and clearly beat random play
    assert scripted.mean() >= 5.0
    assert scripted.mean() >= random.mean() + 3.0


def pixel_of(x_world, y_world, state):
    """Screen (row, col) of a world point in the agent-centred view (13 tiles across)."""
    scale = 64 / C.VISIBILITY
    col = (x_world - float(state.x)) * scale + 32
    row = (float(state.y) - y_world) * scale + 32
    return int(np.floor(row)), int(np.floor(col))


def test_render_objects_at_state_positions(game):
    env, params = game
    on = np.zeros(C.MAX_ENEMIES, bool)
    on[0] = True
    state = with_tiles(
        flat_state(env, params, x=jnp.float32(10.5), y=jnp.float32(1 + C.AGENT_RY)),
        (13, 1, C.GOAL), (7, 1, C.SAW), (12, 3, C.CRATE),
    ).replace(
        enemy_on=jnp.asarray(on), enemy_x=jnp.full(C.MAX_ENEMIES, 8.5, jnp.float32),
        enemy_row=jnp.full(C.MAX_ENEMIES, 4, jnp.int32),
        enemy_vx=jnp.full(C.MAX_ENEMIES, C.ENEMY_SPEED, jnp.float32),
    )
    img = np.asarray(render(state))
    assert img.dtype == np.uint8 and img.shape == (64, 64, 3)

    def colours_in_box(x0, y0, x1, y1):
        (r0, c0), (r1, c1) = pixel_of(x0, y1, state), pixel_of(x1, y0, state)
        return {tuple(v) for v in img[r0 + 1 : r1, c0 + 1 : c1].reshape(-1, 3)}

    gold = (255, 200, 0)
    assert gold in colours_in_box(13, 1, 14, 2), "coin drawn on its tile"
    assert gold not in colours_in_box(7, 1, 8, 2) | colours_in_box(8, 4, 9, 5)
    assert (160, 160, 170) in colours_in_box(7, 1, 8, 2), "saw drawn on its tile"
    assert C.ENEMY_RGB in colours_in_box(8, 4, 9, 5), "enemy drawn at its position"
    assert C.ENEMY_RGB not in colours_in_box(13, 1, 14, 2)
    agent_rgb = C.AGENT_THEMES[int(state.agent_theme)]
    assert agent_rgb in colours_in_box(10.1, 1.1, 10.9, 2.1), "agent at the view centre"
    sky = tuple(C.SKY[int(state.background)][0])
    assert sky in colours_in_box(9, 6, 12, 8)


def reference_frame(state) -> np.ndarray:
    """A slow NumPy painter of one CoinRun frame, uint8 (64, 64, 3), from the unpacked RGBA
    sprites: sky, tiles over it, then the agent's sprite where its box covers a pixel, else the
    sprite of the (at most 8 nearest visible, larger code on overlap) enemy on that pixel.
    Float32 arithmetic in the renderer's order, so that texel boundaries agree exactly."""
    s = jax.tree.map(np.asarray, state)
    f32 = np.float32
    p = np.arange(64, dtype=f32) + f32(0.5)
    step = f32(C.VISIBILITY / 64)
    cx = (s.x - f32(C.VISIBILITY / 2)) + p * step  # world x of each column
    cy = (s.y + f32(C.VISIBILITY / 2)) - p * step  # world y of each row (row 0 at the top)
    tx, ty = np.floor(cx), np.floor(cy)
    ux = np.clip(np.floor((cx - tx) * f32(8)), 0, 7).astype(int)
    uy = np.clip(np.floor((f32(1) - (cy - ty)) * f32(8)), 0, 7).astype(int)
    tx, ty = tx.astype(int), ty.astype(int)
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:] = C.SKY[s.background][(tx // 4) % 2][None, :, :]
    inside = ((ty >= 0) & (ty < C.HEIGHT))[:, None] & ((tx >= 0) & (tx < C.WIDTH))[None, :]
    types = np.where(inside, s.grid[np.clip(ty, 0, C.HEIGHT - 1)][:, np.clip(tx, 0, C.WIDTH - 1)],
                     C.WALL_MID)
    tile = C._tile_atlas()[s.wall_theme][types, uy[:, None], ux[None, :]]
    rgb = np.where(tile[..., 3:] > 0, tile[..., :3], rgb)

    near = np.abs(s.enemy_x - s.x)
    visible = s.enemy_on & (near < C.VISIBILITY / 2 + 1) & (
        np.abs(s.enemy_row + f32(0.5) - s.y) < C.VISIBILITY / 2 + 1)
    order = [int(k) for k in np.argsort(near, kind="stable") if visible[k]][: C.DRAWN_ENEMIES]
    code = np.zeros((64, 64), int)
    for k in order:
        rel = cx - (s.enemy_x[k] - f32(0.5))
        on = (ty[:, None] == s.enemy_row[k]) & ((rel >= 0) & (rel < 1))[None, :]
        u = np.clip(np.floor(rel * f32(8)), 0, 7).astype(int)
        code = np.maximum(code, np.where(on, 1 + u[None, :] + 8 * int(s.enemy_vx[k] < 0), 0))
    enemy = C._enemy_sprites()[np.maximum(code - 1, 0) // 8, uy[:, None],
                                np.maximum(code - 1, 0) % 8]

    def box(lo, hi, coord, flip):
        frac = (coord - lo) / (hi - lo)
        frac = f32(1) - frac if flip else frac
        return (coord >= lo) & (coord < hi), np.clip(np.floor(frac * f32(8)), 0, 7).astype(int)

    in_x, ax = box(s.x - f32(C.AGENT_RX), s.x + f32(C.AGENT_RX), cx, False)
    in_y, ay = box(s.y - f32(C.AGENT_RY), s.y + f32(C.AGENT_RY), cy, True)
    cover = in_y[:, None] & in_x[None, :]
    agent = C._agent_sprites()[s.agent_theme, int(s.facing_left)][ay[:, None], ax[None, :]]
    sprite = np.where(cover[..., None], agent, np.where((code > 0)[..., None], enemy, 0))
    return np.where(sprite[..., 3:] > 0, sprite[..., :3], rgb)


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_render_matches_a_numpy_reference(game, hard_params, mode):
    env, easy_params = game
    params = hard_params if mode == "hard" else easy_params
    n = 24
    keys = jax.random.split(jax.random.PRNGKey(7), 6)
    states = jax.vmap(env.sample_start, in_axes=(0, None))(jax.random.split(keys[0], n), params)
    x = jax.random.uniform(keys[1], (n,), minval=-5.0, maxval=60.0)
    # enemies crowd around the agent: more than 8 visible, overlapping, both facings
    states = states.replace(
        x=x, y=jax.random.uniform(keys[2], (n,), minval=-4.0, maxval=20.0),
        facing_left=jnp.arange(n) % 2 == 1,
        enemy_on=jax.random.bernoulli(keys[3], 0.7, (n, C.MAX_ENEMIES)),
        enemy_x=x[:, None] + jax.random.uniform(keys[4], (n, C.MAX_ENEMIES), minval=-8, maxval=8),
        enemy_row=(states.y[:, None] + jax.random.randint(keys[5], (n, C.MAX_ENEMIES), -3, 4)
                   ).astype(jnp.int32),
    )
    frames = np.asarray(jax.jit(jax.vmap(C.render_state))(states))
    for i in range(n):
        one = jax.tree.map(lambda a, i=i: a[i], states)
        np.testing.assert_array_equal(frames[i], reference_frame(one), err_msg=f"state {i}")


def test_view_scrolls_with_the_agent(game):
    env, params = game
    base = with_tiles(flat_state(env, params, x=jnp.float32(20.5)), (24, 1, C.GOAL),
                      (22, 3, C.CRATE), (17, 1, C.SAW))
    shift = 5  # pixels; 13/64 world units per pixel is exact in binary
    moved = base.replace(x=base.x + shift * C.VISIBILITY / 64)
    a, b = np.asarray(render(base)), np.asarray(render(moved))
    assert not np.array_equal(a, b)
    cols = np.r_[0:24, 40:59]  # away from the agent, which stays at the centre
    np.testing.assert_array_equal(b[:, cols], a[:, cols + shift])


def test_backgrounds_vary_across_levels(game):
    env, params = game
    backgrounds = set(np.asarray(params.pool_levels.background).tolist())
    assert len(backgrounds) >= 3


def test_generated_levels_follow_the_rules(game, hard_params):
    env, easy_params = game
    for mode, params in (("easy", easy_params), ("hard", hard_params)):
        levels = params.pool_levels
        n = len(params.pool_ids)
        grids = np.asarray(levels.grid)
        assert np.all((grids == C.GOAL).sum(axis=(1, 2)) == 1)
        gx, gy = np.asarray(levels.goal_x), np.asarray(levels.goal_y)
        assert np.all(grids[np.arange(n), gy, gx] == C.GOAL)
        assert np.all(grids[:, 1:3, 1] == C.EMPTY), "the start is free"
        assert np.all(grids[np.arange(n), gy - 1, gx] == C.WALL_TOP), "coin on the ground"
        assert len(set(gx.tolist())) >= 6, "level lengths vary"
        dif = np.asarray(levels.difficulty)
        sections = np.asarray(levels.num_sections)
        assert set(dif.tolist()) == {1, 2, 3}
        assert np.all((sections >= 1) & (sections <= 2 * dif - 1))
        # flat-section walking enemies (last slot of each section) exist only in hard mode
        flat_enemies = np.asarray(levels.enemy_on).reshape(n, C.MAX_SECTIONS, -1)[..., -1]
        assert flat_enemies.any() == (mode == "hard")
        themes = set(np.asarray(levels.wall_theme).tolist())
        assert (len(themes) > 1) == (mode == "hard")


@pytest.mark.parametrize("mode, digest", [("easy", "766f790049815f9e"),
                                          ("hard", "2eb57c0900a677d7")])
def test_rollout_frames_are_pinned(mode, digest):
    """Render speed-ups keep every pixel: SHA-256 of a 64-step random rollout's frames (the
    pool-managed form, whose levels and resets do not depend on the step's level refresh),
    pinned from the renderer before its optimisations."""
    env, params = envs_jax.make("CoinRun-v0", pool_size=16, refresh_size=8,
                                level_refresh="caller", distribution_mode=mode)
    frames = rollout_frames(env, params, jax.random.PRNGKey(3), 64)
    assert len({f.tobytes() for f in frames}) > 32
    assert hashlib.sha256(frames.tobytes()).hexdigest()[:16] == digest
