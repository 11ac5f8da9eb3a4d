"""FruitBot-v0: gymnax API, determinism, level rules, scripted rules, solvability, rendering."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from procgen_helpers import (
    check_gymnax_api,
    check_time_limit_truncates,
    first_episode_returns,
    game_fixtures,
    play,
    pool_and_fresh_starts,
)
from scipy import stats

from envs_jax.procgen import fruitbot as F

LEFT, NOOP, RIGHT, KEY, OTHER_KEY = 1, 4, 7, 9, 10
FAR = 1000.0  # a wall moved out of the way


game, hard, step_fn, vstep, gen = game_fixtures("FruitBot-v0")


def blank(env, params, x=5.0, y=F.AGENT_R, slot=0):
    """A start state of pool level `slot` with no objects, walls moved away, the bot at (x, y)."""
    level = jax.tree.map(lambda a: a[slot], params.pool_levels)
    level = level.replace(obj_valid=jnp.zeros_like(level.obj_valid),
                          wall_y=level.wall_y + FAR, has_door=jnp.zeros_like(level.has_door))
    state = env.start_state(level, 0, params)
    return state.replace(agent=jnp.array([x, y, 0.0, 0.0], jnp.float32))


def with_object(state, j, x, y, good):
    lv = state.level
    return state.replace(level=lv.replace(
        obj_x=lv.obj_x.at[j].set(x), obj_y=lv.obj_y.at[j].set(y),
        obj_valid=lv.obj_valid.at[j].set(True), obj_good=lv.obj_good.at[j].set(good)))


def with_wall(state, i, y, left, right, door=None):
    """Wall i at height y with barrier widths left/right; door = (door_x, door_rx, lock_x)."""
    lv = state.level
    lv = lv.replace(wall_y=lv.wall_y.at[i].set(y), left_w=lv.left_w.at[i].set(left),
                    right_w=lv.right_w.at[i].set(right),
                    has_door=lv.has_door.at[i].set(door is not None))
    if door is not None:
        lv = lv.replace(door_x=lv.door_x.at[i].set(door[0]),
                        door_rx=lv.door_rx.at[i].set(door[1]),
                        lock_x=lv.lock_x.at[i].set(door[2]))
    return state.replace(level=lv)


def drift_heights(y0, steps):
    """Closed form of the bot's height from rest: v <- 0.9 (0.5 v + 0.5 * 0.85 * 0.2)."""
    ys, y, v = [], y0, 0.0
    for _ in range(steps):
        v = 0.9 * (0.5 * v + 0.5 * 0.85 * 0.2)
        y += v
        ys.append(y)
    return np.array(ys)


# ---- API, determinism, levels ----------------------------------------------------------------


def test_api_shapes_spaces_and_vmap(game, vstep):
    env, params = game
    state = check_gymnax_api(env, params, vstep, "FruitBot-v0")
    sym = env.symbolic(jax.tree.map(lambda a: a[0], state))
    assert sym["objects"].shape == (F.NUM_OBJECTS, 4) and sym["walls"].shape == (5, 4)


def test_determinism_per_key_and_level(game, gen):
    env, params = game
    o1, s1 = env.reset(jax.random.PRNGKey(3), params)
    o2, s2 = env.reset(jax.random.PRNGKey(3), params)
    assert np.array_equal(o1, o2)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), s1, s2)
    a = gen(jnp.arange(256), params)
    b = gen(jnp.arange(256)[::-1], params)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y[::-1]), a, b)
    for i in range(4):
        assert not np.array_equal(a.obj_x[i], a.obj_x[i + 1])
        assert not np.array_equal(a.id_map[i], a.id_map[i + 1])
    pooled = gen(jnp.pad(params.pool_ids, (0, 256 - params.pool_size)), params)
    np.testing.assert_array_equal(pooled.id_map[:16], params.pool_levels.id_map)


def boxes_overlap(ax, ay, arx, ary, bx, by, brx, bry):
    return (np.abs(ax - bx) < arx + brx) & (np.abs(ay - by) < ary + bry)


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_level_layouts_follow_the_rules(game, hard, gen, mode):
    params = (hard if mode == "hard" else game)[1]
    m = F.MODES[mode]
    w = m["width"]
    lv = jax.tree.map(np.asarray, gen(jnp.arange(256) + 5000, params))
    dy = np.diff(lv.wall_y, prepend=0.0)
    assert lv.wall_y.shape == (256, m["walls"]) and dy.min() >= 4
    np.testing.assert_allclose(lv.wall_y[:, -1], F.HEIGHT - 4)  # 4 * walls + leftover = 56
    gap = (w - lv.left_w - lv.right_w) / w
    plain = ~lv.has_door
    assert gap[plain].min() >= m["min_gap"] - 1e-5 and gap[plain].max() <= m["min_gap"] + 0.2
    assert lv.left_w.min() >= 0 and lv.right_w.min() >= -1e-5
    if mode == "easy":
        assert not lv.has_door.any()
    else:
        assert np.all(dy[lv.has_door] > 5)
        rate = lv.has_door[dy > 5].mean()
        assert 0.08 < rate < 0.17
        door_gap = gap[lv.has_door] * w
        # doors fill the gap beside a lock: gap = 2 lock widths + whole door segments
        segments = (door_gap - 4 * F.LOCK_RX) / (2 * F.WALL_RY * F.DOOR_ASPECT)
        np.testing.assert_allclose(segments, np.round(segments), atol=1e-4)
    good = (lv.obj_valid & lv.obj_good).sum(1)
    bad = (lv.obj_valid & ~lv.obj_good).sum(1)
    assert good.min() >= 10 and good.max() <= 19 and bad.min() >= 10 and bad.max() <= 19
    assert lv.agent_x.min() >= F.AGENT_R and lv.agent_x.max() <= w - F.AGENT_R
    for i in range(256):
        v = lv.obj_valid[i]
        x, y = lv.obj_x[i][v], lv.obj_y[i][v]
        pair = boxes_overlap(x[:, None], y[:, None], 0.5, 0.5, x[None], y[None], 0.5, 0.5)
        assert pair.sum() == len(x)  # only each object with itself
        assert not boxes_overlap(x, y, 0.5, 0.5, lv.agent_x[i], F.AGENT_R, F.AGENT_R,
                                 F.AGENT_R).any()
        assert (y + 0.5 <= F.HEIGHT - 1).all() and (x >= 0.5).all() and (x <= w - 0.5).all()
        for wy, lw, rw in zip(lv.wall_y[i], lv.left_w[i], lv.right_w[i], strict=True):
            assert not boxes_overlap(x, y, 0.5, 0.5, lw / 2, wy, lw / 2, F.WALL_RY).any()
            assert not boxes_overlap(x, y, 0.5, 0.5, w - rw / 2, wy, rw / 2, F.WALL_RY).any()


def test_pool_resets_are_unbiased(game, hard, gen):
    """Episode statistics of resets from a level pool match freshly generated levels."""
    env, small = game
    starts, fresh, fresh_ids = pool_and_fresh_starts(env, gen, small)
    count = lambda lv: np.asarray(lv.obj_valid.sum(1))  # noqa: E731
    for pooled, ref in [
        (count(starts.level), count(fresh)),
        (starts.agent[:, 0], fresh.agent_x),
        (starts.level.wall_y[:, 0], fresh.wall_y[:, 0]),
        (starts.level.obj_y[:, 0], fresh.obj_y[:, 0]),
    ]:
        assert stats.ks_2samp(np.asarray(pooled), np.asarray(ref)).pvalue > 1e-3
    # the test has power: hard levels' first walls are told apart
    hard_levels = gen(fresh_ids, hard[1])
    assert stats.ks_2samp(np.asarray(starts.level.wall_y[:, 0]),
                          np.asarray(hard_levels.wall_y[:, 0])).pvalue < 1e-6


# ---- rules -----------------------------------------------------------------------------------


def test_bot_motion_matches_closed_form_and_side_walls_block(game, step_fn):
    env, params = game
    states, _, _ = play(step_fn, params, blank(env, params, 2.0), [RIGHT] * 6)
    x, v = 2.0, 0.0
    for k in range(6):
        v = 0.9 * (0.5 * v + 0.5 * 0.85)
        x += v
        np.testing.assert_allclose(states[k].agent[0], x, rtol=1e-6)
    np.testing.assert_allclose([s.agent[1] for s in states], drift_heights(F.AGENT_R, 6),
                               rtol=1e-6)
    states, _, _ = play(step_fn, params, blank(env, params, 1.0), [LEFT] * 8 + [KEY] * 3)
    np.testing.assert_allclose(states[7].agent[0], F.AGENT_R)
    assert float(states[-1].agent[0]) >= F.AGENT_R
    # special keys stop sideways thrust but the bot keeps climbing
    assert float(states[-1].agent[1]) > float(states[-4].agent[1])


@pytest.mark.parametrize("good", [True, False])
def test_objects_give_plus_one_or_minus_four_once(game, step_fn, good):
    env, params = game
    state = with_object(blank(env, params, 5.0, 1.0), 3, 5.0, 2.5, good)
    states, rewards, dones = play(step_fn, params, state, [NOOP] * 20)
    ys = drift_heights(1.0, 20)
    first = int(np.argmax(np.abs(ys - 2.5) < 0.9))  # box overlap: |dy| < 0.4 + 0.5
    expected = [0.0] * 20
    expected[first] = 1.0 if good else -4.0
    assert rewards == expected and not any(dones)
    assert bool(states[first].eaten[3]) and not bool(states[first - 1].eaten[3])


def test_walls_kill_and_gaps_let_through(game, step_fn):
    env, params = game
    state = with_wall(blank(env, params, 2.0, 1.0), 0, 3.0, 4.0, 3.0)  # gap 4..7
    states, rewards, dones = play(step_fn, params, state, [NOOP] * 20)
    ys = drift_heights(1.0, 20)
    first = int(np.argmax(np.abs(ys - 3.0) < F.AGENT_R + F.WALL_RY))
    assert dones.index(True) == first and sum(rewards) == 0.0
    state = with_wall(blank(env, params, 5.5, 1.0), 0, 3.0, 4.0, 3.0)
    _, _, dones = play(step_fn, params, state, [NOOP] * 30)
    assert not any(dones)
    state = with_wall(blank(env, params, 4.3, 1.0), 0, 3.0, 4.0, 3.0)  # grazes the left wall
    _, _, dones = play(step_fn, params, state, [NOOP] * 30)
    assert any(dones)


def test_presents_give_ten_and_end(game, step_fn):
    env, params = game
    state = blank(env, params, 5.0, 57.0)
    states, rewards, dones = play(step_fn, params, state, [NOOP] * 30)
    ys = drift_heights(57.0, 30)
    end = int(np.argmax(ys + F.AGENT_R > F.HEIGHT - 1))
    assert dones.index(True) == end and rewards[end] == 10.0 and sum(rewards[:end]) == 0.0


def test_keys_open_doors_and_barriers_stop_them(hard):
    env, params = hard
    step = jax.jit(env.game_step)
    w = F.MODES["hard"]["width"]
    # gap 8..12.45: lock 8..8.5, door 8.5..12.45 (door_x 10.475, door_rx 1.975)
    door = (10.475, 1.975, 8.25)
    state = with_wall(blank(env, params, 8.25, 1.0), 0, 5.0, 8.0, w - 12.45, door)
    states, rewards, dones = play(step, params, state, [KEY] * 20)
    opened = [bool(s.door_open[0]) for s in states]
    # key thrown at t = 8 from y ~ 1.8 rises 0.5 per step and meets the lock (y 4.4..5.3)
    assert not opened[8] and opened[-1] and not any(dones)
    thrown = [bool(np.any(s.key_active & (s.key_life == 0))) for s in states]
    assert [i + 1 for i, t in enumerate(thrown) if t] == [8, 16]  # from t = 8, every 8 steps
    # through the opened door (without the lock, the bot at the door would die)
    state2 = states[-1].replace(agent=jnp.array([10.0, 3.0, 0.0, 0.0], jnp.float32))
    _, _, dones = play(step, params, state2, [NOOP] * 30)
    assert not any(dones)
    closed = with_wall(blank(env, params, 10.0, 3.0), 0, 5.0, 8.0, w - 12.45, door)
    _, _, dones = play(step, params, closed, [NOOP] * 30)
    assert any(dones)
    # a key thrown under the door passes through it; one under a barrier breaks
    late = closed.replace(time=jnp.int32(20))
    states, _, _ = play(step, params, late.replace(
        agent=jnp.array([10.0, 2.5, 0.0, 0.0], jnp.float32)), [KEY] + [NOOP] * 7)
    assert bool(states[-1].key_active.any()) and float(states[-1].key_y.max()) > 5.5
    states, _, _ = play(step, params, late.replace(
        agent=jnp.array([3.0, 2.5, 0.0, 0.0], jnp.float32)), [KEY] + [NOOP] * 7)
    assert bool(states[0].key_active.any()) and not bool(states[-1].key_active.any())
    # only "D" throws keys
    states, _, _ = play(step, params, late, [OTHER_KEY] * 3)
    assert not any(bool(s.key_active.any()) for s in states)


def test_time_limit_truncates_with_final_observation(game, vstep):
    env, params = game
    check_time_limit_truncates(env, params, vstep, blank(env, params, 5.0))


# ---- solvability -----------------------------------------------------------------------------


def lookahead_policy(env, params, horizon=20):
    """Privileged: simulate "hold LEFT/RIGHT for k steps, then NOOP" plans for `horizon`
    steps; keep the plan with the best reward (death costs 100), ties broken towards the next
    wall's gap centre."""
    w = F.MODES["easy"]["width"]
    ks = jnp.array([0, 1, 2, 4, 8, 16, 1, 2, 4, 8, 16])
    moves = jnp.array([NOOP] + [LEFT] * 5 + [RIGHT] * 5)

    def score(state, move, k):
        def body(carry, t):
            s, total, dead = carry
            a = jnp.where(t < k, move, NOOP)
            s2, r, d = env.game_step(jax.random.PRNGKey(0), s, a, params)
            s2 = s2.replace(time=s.time + 1)
            return (s2, total + jnp.where(dead, 0.0, r), dead | d), None

        (s, total, dead), _ = jax.lax.scan(body, (state, 0.0, False), jnp.arange(horizon))
        died = dead & (s.agent[1] + F.AGENT_R <= F.HEIGHT - 1)
        lv = s.level
        nxt = jnp.argmax(lv.wall_y > s.agent[1])
        centre = lv.left_w[nxt] + (w - lv.left_w[nxt] - lv.right_w[nxt]) / 2
        return total - 100.0 * died - 0.1 * jnp.abs(s.agent[0] - centre)

    def policy(state, key):
        scores = jax.vmap(lambda m, k: score(state, m, k))(moves, ks)
        return moves[jnp.argmax(scores)]

    return policy


def test_privileged_script_beats_random(game):
    env, params = game
    rand_ret, _, _ = first_episode_returns(env, params,
                                           lambda s, k: jax.random.randint(k, (), 0, 15),
                                           steps=500)
    ret, done, _ = first_episode_returns(env, params, lookahead_policy(env, params), steps=500)
    assert np.all(np.asarray(done))
    assert float(ret.mean()) > float(rand_ret.mean()) + 8.0, (ret, rand_ret)


# ---- rendering -------------------------------------------------------------------------------


def pixel_of(state, x, y, w=10):
    """(row, col) of world point (x, y) in the frame: W units across, the view's bottom edge
    at the bot's height - 0.8 rounded down to whole pixels."""
    ppu = 64 / w
    bottom = -1.0 + np.floor((float(state.agent[1]) - 0.8 + 1.0) * ppu) / ppu
    return 63 - int(np.floor((y - bottom) * ppu)), int(np.floor(x * ppu))


def test_render_objects_walls_and_bot_at_state_positions(game):
    env, params = game
    render = jax.jit(env.render)
    level = jax.tree.map(lambda a: a[0], params.pool_levels)
    state = env.start_state(level, 0, params)
    lv = jax.tree.map(np.asarray, state.level)
    ax, ay = float(lv.agent_x), float(lv.wall_y[0]) - 3.0  # the first wall in view
    state = state.replace(agent=jnp.array([ax, ay, 0.0, 0.0], jnp.float32))
    img = np.asarray(render(state, params))
    assert img.dtype == np.uint8 and img.shape == (64, 64, 3)
    unpack = lambda c: np.array([c & 255, (c >> 8) & 255, (c >> 16) & 255])  # noqa: E731
    r, c = pixel_of(state, float(state.agent[0]), float(state.agent[1]))
    np.testing.assert_array_equal(img[r, c], F.AGENT_COLOUR)
    seen = 0
    near_bot = (np.abs(lv.obj_x - ax) < 1) & (np.abs(lv.obj_y - ay) < 1)
    for j in np.flatnonzero(lv.obj_valid & ~near_bot):
        r, c = pixel_of(state, lv.obj_x[j], lv.obj_y[j])
        if 0 <= r < 64:
            np.testing.assert_array_equal(img[r, c], unpack(int(lv.obj_colour[j])))
            seen += 1
            eaten = state.replace(eaten=state.eaten.at[j].set(True))
            assert not np.array_equal(np.asarray(render(eaten, params))[r, c], img[r, c])
    assert seen >= 2
    wall = F.WALL_COLOURS[int(lv.wall_colour)]
    y = float(lv.wall_y[0])
    r, _ = pixel_of(state, 0.0, y)
    for x in np.arange(0.05, 10.0, 0.1):
        in_barrier = x < lv.left_w[0] - 0.1 or x > 10 - lv.right_w[0] + 0.1
        in_gap = lv.left_w[0] + 0.1 < x < 10 - lv.right_w[0] - 0.1
        _, c = pixel_of(state, x, y)
        if in_barrier:
            np.testing.assert_array_equal(img[r, c], wall)
        elif in_gap:
            assert not np.array_equal(img[r, c], wall)


def test_view_scrolls_with_the_bot_and_floors_vary(game, gen):
    env, params = game
    render = jax.jit(env.render)
    state = blank(env, params, 5.0, 20.0)
    state = state.replace(level=jax.tree.map(lambda a: a[0], params.pool_levels))
    a = np.asarray(render(state, params))
    b = np.asarray(render(state.replace(agent=state.agent.at[1].add(1.25)), params))
    # 1.25 units = 8 rows at 6.4 pixels per unit: the scene moves down by 8 rows
    np.testing.assert_array_equal(b[8:40], a[:32])
    assert not np.array_equal(a, b)
    levels = gen(jnp.arange(256), params)
    assert len(np.unique(np.asarray(levels.floor))) >= 4


def test_door_and_lock_vanish_when_opened(hard):
    env, params = hard
    render = jax.jit(env.render)
    w = F.MODES["hard"]["width"]
    lv = jax.tree.map(np.asarray, params.pool_levels)
    slot, wall = (int(i) for i in np.argwhere(lv.has_door)[0])  # the pool holds doors
    y = float(lv.wall_y[slot, wall])
    state = blank(env, params, 1.0, y - 2.0, slot=slot)
    state = state.replace(level=jax.tree.map(lambda a: a[slot], params.pool_levels))
    closed = np.asarray(render(state, params))
    opened = np.asarray(render(state.replace(door_open=state.door_open.at[wall].set(True)),
                               params))
    door_x, door_rx, lock_x = (float(a[slot, wall]) for a in (lv.door_x, lv.door_rx, lv.lock_x))
    r, c = pixel_of(state, door_x, y, w)
    np.testing.assert_array_equal(closed[r, c], F.DOOR_COLOUR)
    assert not np.array_equal(opened[r, c], F.DOOR_COLOUR)
    r, c = pixel_of(state, lock_x, y - F.LOCK_RY + F.WALL_RY, w)
    np.testing.assert_array_equal(closed[r, c], F.LOCK_COLOUR)
    assert not np.array_equal(opened[r, c], F.LOCK_COLOUR)
    assert door_rx > 0.5
