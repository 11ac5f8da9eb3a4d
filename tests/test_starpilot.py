"""StarPilot-v0: gymnax API, determinism, level rules, scripted rules, solvability, rendering."""

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

from envs_jax.procgen import starpilot as S

LEFT_DOWN, NOOP, RIGHT, FIRE, FIRE_LEFT = 0, 4, 7, 9, 10


game, hard, step_fn, vstep, gen = game_fixtures("StarPilot-v0")


def blank(env, params, x=4.0, y=8.0):
    """A start state with the ship at rest at (x, y) and an empty spawner schedule."""
    level = jax.tree.map(lambda a: a[0], params.pool_levels)
    level = level.replace(spawn_time=jnp.full_like(level.spawn_time, S.NEVER))
    state = env.start_state(level, 0, params)
    return state.replace(agent=jnp.array([x, y, 0.0, 0.0], jnp.float32))


def with_enemy(state, slot, kind, x, y, vx=0.0, vy=0.0, health=None, fire_time=0):
    """Put an enemy of `kind` in `slot` (spawned at the current time)."""
    e = state.enemies
    set_ = lambda a, v: a.at[slot].set(v)  # noqa: E731
    return state.replace(
        enemies=e.replace(active=set_(e.active, True), x=set_(e.x, x), y=set_(e.y, y),
                          vx=set_(e.vx, vx), vy=set_(e.vy, vy)),
        kind=set_(state.kind, kind),
        health=set_(state.health, S.KIND_HEALTH[kind] if health is None else health),
        spawn_time=set_(state.spawn_time, state.time),
        fire_time=set_(state.fire_time, fire_time),
        order=set_(state.order, slot),
    )


def with_bullet(state, x, y, vx=0.0, vy=0.0):
    b = state.enemy_bullets
    return state.replace(enemy_bullets=b.replace(
        active=b.active.at[0].set(True), x=b.x.at[0].set(x), y=b.y.at[0].set(y),
        vx=b.vx.at[0].set(vx), vy=b.vy.at[0].set(vy)))


# ---- API, determinism, levels ----------------------------------------------------------------


def test_api_shapes_spaces_and_vmap(game, vstep):
    env, params = game
    assert env.action_space(params).n == 15
    state = check_gymnax_api(env, params, vstep, "StarPilot-v0")
    assert np.all(np.asarray(state.time) == 1)
    sym = env.symbolic(jax.tree.map(lambda a: a[0], state))
    assert sym["agent"].shape == (4,) and sym["enemies"].shape == (S.NUM_ENEMY_SLOTS, 4)


def test_determinism_per_key_and_level(game, gen):
    env, params = game
    o1, s1 = env.reset(jax.random.PRNGKey(3), params)
    o2, s2 = env.reset(jax.random.PRNGKey(3), params)
    assert np.array_equal(o1, o2)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), s1, s2)
    a = gen(jnp.arange(256), params)
    b = gen(jnp.arange(256)[::-1], params)  # level i does not depend on its batch position
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y[::-1]), a, b)
    for i in range(4):
        assert not np.array_equal(a.spawn_time[i], a.spawn_time[i + 1])
        assert not np.array_equal(a.y[i], a.y[i + 1])
    # the pool holds exactly the generated levels of its ids
    pooled = gen(jnp.pad(params.pool_ids, (0, 256 - params.pool_size)), params)
    np.testing.assert_array_equal(pooled.spawn_time[:16], params.pool_levels.spawn_time)


def original_spawner_counts(rng, n, hard):
    """NumPy re-statement of the original's schedule: spawner rows per level (independent)."""
    counts = []
    for _ in range(n):
        t, total = 1 + rng.integers(10, 30), 0
        while t <= S.WIN_TIME:
            kind = rng.choice(5, p=np.array(S.KIND_WEIGHT["hard" if hard else "easy"]) / (
                7.0 if hard else 1.0))
            total += rng.integers(1, 6) if kind in (S.FLYER, S.FAST_FLYER) else 1
            t += rng.integers(10, 30)
        counts.append(total)
    return np.array(counts)


@pytest.mark.parametrize("mode", ["easy", "hard"])
def test_level_schedules_follow_the_rules(game, hard, gen, mode):
    params = (hard if mode == "hard" else game)[1]
    lv = gen(jnp.arange(256) + 1000, params)
    t, kind = np.asarray(lv.spawn_time), np.asarray(lv.kind)
    vx, vy, fire = np.asarray(lv.vx), np.asarray(lv.vy), np.asarray(lv.fire_time)
    valid = t < S.NEVER
    assert np.all(np.diff(t, axis=1) >= 0)
    assert t[valid].min() >= 11 and t[valid].max() <= S.WIN_TIME + 20
    speed = np.hypot(vx, vy)[valid]
    k = kind[valid]
    flyer_speed = 0.4 if mode == "hard" else 0.3
    np.testing.assert_allclose(speed[k == S.FLYER], flyer_speed, rtol=1e-5)
    np.testing.assert_allclose(speed[k == S.FAST_FLYER], 0.6, rtol=1e-5)
    np.testing.assert_allclose(speed[(k == S.METEOR) | (k == S.CLOUD) | (k == S.TURRET)], 0.2,
                               rtol=1e-5)
    flyers = (k == S.FLYER) | (k == S.FAST_FLYER)
    assert np.all(np.abs(vy[valid][flyers]) <= np.abs(vx[valid][flyers]) + 1e-6)  # |angle|<=45
    straight = np.mean(vy[valid][flyers] == 0)
    assert 0.45 < straight < 0.55
    from_left = np.mean(vx[valid][flyers] > 0)
    f = fire[valid]
    assert f[flyers].min() >= 10 and f[flyers].max() <= 99
    if mode == "easy":
        assert np.all(k == S.FLYER) and from_left == 0
    else:
        assert set(np.unique(k)) == set(range(5))
        assert 0.07 < from_left < 0.13
        assert np.all((f[k == S.TURRET] >= 20) & (f[k == S.TURRET] <= 29))
        assert np.all(f[(k == S.METEOR) | (k == S.CLOUD)] == 0)
    # enemies live at most until they leave the screen, so at most NUM_ENEMY_SLOTS of them
    # are ever on screen at once: no spawn is dropped for lack of a slot
    r = S.KIND_RADIUS[kind][..., None]
    n = np.arange(1, 130)
    x = np.where(vx < 0, S.WORLD + S.KIND_RADIUS[kind], -S.KIND_RADIUS[kind])[..., None] + (
        vx[..., None] * n)
    y = np.asarray(lv.y)[..., None] + vy[..., None] * n
    gone = (x + r < 0) | (x - r > S.WORLD) | (y + r < 0) | (y - r > S.WORLD)
    assert gone[..., -1][valid].all()
    exit_t = t + np.argmax(gone, axis=-1) + 1
    clock = np.arange(S.WIN_TIME + 150)
    alive = valid[..., None] & (t[..., None] <= clock) & (clock < exit_t[..., None])
    assert alive.sum(1).max() <= S.NUM_ENEMY_SLOTS
    # spawner counts match a NumPy simulation of the original's schedule (two-sample test)
    ref = original_spawner_counts(np.random.default_rng(0), 400, mode == "hard")
    assert stats.ks_2samp(valid.sum(1), ref).pvalue > 1e-3


def test_pool_resets_are_unbiased(game, hard, gen):
    """Episode statistics of resets from a level pool match freshly generated levels."""
    env, small = game
    starts, fresh, fresh_ids = pool_and_fresh_starts(env, gen, small)
    count = lambda lv: np.asarray((lv.spawn_time < S.NEVER).sum(1))  # noqa: E731
    for pooled, ref in [
        (count(starts.level), count(fresh)),
        (starts.agent[:, 0], fresh.agent_start[:, 0]),
        (starts.level.y[:, 0], fresh.y[:, 0]),
    ]:
        assert stats.ks_2samp(np.asarray(pooled), np.asarray(ref)).pvalue > 1e-3
    # the test has power: hard levels' spawner counts are told apart
    hard_levels = gen(fresh_ids, hard[1])
    assert stats.ks_2samp(count(starts.level), count(hard_levels)).pvalue < 1e-6


# ---- rules -----------------------------------------------------------------------------------


def test_ship_motion_matches_closed_form_and_edges_block(game, step_fn):
    env, params = game
    states, _, _ = play(step_fn, params, blank(env, params, 4.0, 8.0), [RIGHT] * 5 + [FIRE] * 2)
    x, v = 4.0, 0.0
    for k in range(5):
        v = 0.9 * (0.5 * v + 0.5 * 0.75)
        x += v
        np.testing.assert_allclose(states[k].agent[0], x, rtol=1e-6)
    for k in range(5, 7):  # special keys: no thrust, the velocity decays
        v = 0.9 * 0.5 * v
        x += v
        np.testing.assert_allclose(states[k].agent[0], x, rtol=1e-6)
    assert float(states[-1].agent[1]) == 8.0
    states, _, _ = play(step_fn, params, blank(env, params, 15.0, 1.0), [RIGHT - 1] * 12)
    np.testing.assert_allclose(states[-1].agent[:2], [S.WORLD - S.AGENT_R, S.AGENT_R])
    states, _, _ = play(step_fn, params, blank(env, params, 1.0, 1.0), [LEFT_DOWN] * 12)
    np.testing.assert_allclose(states[-1].agent[:2], [S.AGENT_R, S.AGENT_R])


def test_shooting_a_flyer_twice_destroys_it_for_one(game, step_fn):
    env, params = game
    state = with_enemy(blank(env, params, 4.0, 8.0), 3, S.FLYER, 9.0, 8.0)
    states, rewards, dones = play(step_fn, params, state, [FIRE] * 10)
    health = [int(s.health[3]) for s in states]
    active = [bool(s.enemies.active[3]) for s in states]
    # bullet k (fired in step k, 0-based) sits at 4.4 + 0.8 j after j moves and first touches
    # the flyer (|dx| < 0.9) at 8.4, after 5 moves: bullet 0 in step 5, bullet 1 in step 6
    assert health[:5] == [2] * 5 and health[5] == 1 and not active[6]
    assert rewards == [0.0] * 6 + [1.0] + [0.0] * 3
    assert not any(dones)
    state = with_enemy(blank(env, params, 12.0, 8.0), 0, S.FLYER, 7.0, 8.0, health=1)
    _, rewards, _ = play(step_fn, params, state, [FIRE_LEFT] * 6)
    assert sum(rewards) == 1.0


def test_meteors_absorb_bullets_and_clouds_let_them_pass(hard):
    env, params = hard
    step = jax.jit(env.game_step)
    state = with_enemy(blank(env, params, 2.0, 8.0), 0, S.METEOR, 9.0, 8.0)
    states, rewards, _ = play(step, params, state, [FIRE] * 12)
    assert sum(rewards) == 0.0 and bool(states[-1].enemies.active[0])
    assert int(states[-1].health[0]) < 500
    assert not np.any(np.asarray(states[-1].player_bullets.x)[
        np.asarray(states[-1].player_bullets.active)] > 9.0)
    state = with_enemy(blank(env, params, 2.0, 8.0), 0, S.CLOUD, 9.0, 8.0)
    states, rewards, dones = play(step, params, state, [FIRE] * 14)
    pb = states[-1].player_bullets
    assert np.any(np.asarray(pb.x)[np.asarray(pb.active)] > 11.5)  # flew through the cloud
    assert sum(rewards) == 0.0 and not any(dones)


@pytest.mark.parametrize("what", ["flyer", "bullet", "turret", "cloud"])
def test_enemies_and_bullets_kill_clouds_do_not(hard, what):
    env, params = hard
    state = blank(env, params, 8.0, 8.0)
    if what == "bullet":
        state = with_bullet(state, 8.9, 8.0, vx=-0.2)
    else:
        kind = {"flyer": S.FLYER, "turret": S.TURRET, "cloud": S.CLOUD}[what]
        r = S.KIND_RADIUS[kind]
        state = with_enemy(state, 5, kind, 8.0 + 0.4 + r + 0.1, 8.0, vx=-0.2)
    _, rewards, dones = play(jax.jit(env.game_step), params, state, [NOOP])
    assert dones == [what != "cloud"] and rewards == [0.0]


def test_flyer_fires_once_aimed_at_the_ship(game, step_fn):
    env, params = game
    state = blank(env, params, 3.0, 3.0)
    lv = state.level
    state = state.replace(level=lv.replace(
        spawn_time=lv.spawn_time.at[0].set(2), kind=lv.kind.at[0].set(S.FLYER),
        y=lv.y.at[0].set(12.0), vx=lv.vx.at[0].set(-0.3), vy=lv.vy.at[0].set(0.0),
        fire_time=lv.fire_time.at[0].set(4)))
    states, _, _ = play(step_fn, params, state, [NOOP] * 8)
    spawned = states[1]  # t = 2
    assert int(spawned.next_spawn) == 1 and bool(spawned.enemies.active.any())
    slot = int(np.argmax(spawned.enemies.active))
    np.testing.assert_allclose(spawned.enemies.x[slot], S.WORLD + 0.5)
    assert not bool(states[4].enemy_bullets.active.any())
    fired = states[5]  # t = 6 = spawn + fire_time
    assert int(fired.enemy_bullets.active.sum()) == 1
    b = int(np.argmax(fired.enemy_bullets.active))
    src = np.array([S.WORLD + 0.5 - 0.3 * 4, 12.0])
    aim = np.array([3.0, 3.0]) - src
    v = np.array([fired.enemy_bullets.vx[b], fired.enemy_bullets.vy[b]])
    np.testing.assert_allclose(v, aim / np.linalg.norm(aim) * 1.25 * S.V_SCALE, rtol=1e-5)
    assert int(states[-1].enemy_bullets.active.sum()) == 1  # flyers fire only once


def test_finish_line_gives_ten_and_ends(game, step_fn):
    env, params = game
    state = blank(env, params, 2.05, 8.0).replace(time=jnp.int32(S.WIN_TIME - 1))
    states, rewards, dones = play(step_fn, params, state, [NOOP] * 80)
    # the line appears at x = 17 at t = 500 and moves 0.2 per step; it touches the ship
    # (x = 2.05, |dx| < 1.4) once 17 - 0.2 (t - 500) < 3.45, i.e. at t = 568
    end = dones.index(True)
    assert int(states[end].time) == 568
    assert rewards[end] == 10.0 and sum(rewards[: end + 1]) == 10.0


def test_time_limit_truncates_with_final_observation(game, vstep):
    env, params = game
    check_time_limit_truncates(env, params, vstep, blank(env, params, 8.0, 8.0))


# ---- solvability -----------------------------------------------------------------------------


def lookahead_policy(env, params, horizon=8):
    """Privileged: hold each move (or fire) for `horizon` steps, keep the best by reward,
    heavily penalising death."""
    candidates = jnp.array([FIRE, 0, 1, 2, 3, 5, 6, 7, 8])

    def score(state, a):
        def body(carry, _):
            s, total, dead = carry
            s2, r, d = env.game_step(jax.random.PRNGKey(0), s, a, params)
            s2 = s2.replace(time=s.time + 1)
            return (s2, total + jnp.where(dead, 0.0, r), dead | d), None

        (s, total, dead), _ = jax.lax.scan(body, (state, 0.0, False), None, length=horizon)
        return total - 100.0 * (dead & ~(total >= S.COMPLETION_BONUS))

    def policy(state, key):
        return candidates[jnp.argmax(jax.vmap(lambda a: score(state, a))(candidates))]

    return policy


def test_privileged_script_beats_random(game):
    env, params = game
    rand_ret, rand_done, _ = first_episode_returns(
        env, params, lambda s, k: jax.random.randint(k, (), 0, 15))
    assert np.all(np.asarray(rand_done))  # random play dies well within 400 steps
    ret, _, final = first_episode_returns(env, params, lookahead_policy(env, params))
    assert np.all(np.asarray(final.dropped) == 0)
    assert float(ret.mean()) > 3 * float(rand_ret.mean()) + 5.0, (ret, rand_ret)


# ---- rendering -------------------------------------------------------------------------------


def reference_frame(state):
    """NumPy painter: sky, then every object's rectangles class by class (independent of the
    game's matrix-product compositing)."""
    star_r, star_c = np.asarray(state.level.star_offset)
    scroll = int(np.floor(np.float32(0.8) * np.float32(int(state.time))))
    stars = S.STARS[star_r:star_r + 64, (scroll + star_c) % S.STAR_PERIOD:][:, :64]
    img = np.where(stars[..., None] > 0, stars[..., None],
                   S.SKY_COLOURS[int(state.level.sky)][None, None, :]).astype(np.uint8)
    colours = S.CLASS_COLOURS.copy()
    colours[S.C_FLYER] = S.FLYER_COLOURS[int(state.level.flyer_colour)]
    c = (np.arange(64) + 0.5) / 4
    xs, ys = c[None, :], S.WORLD - c[:, None]
    rects = []  # (class, x0, x1, y0, y1)
    e = state.enemies
    for i in np.flatnonzero(np.asarray(e.active)):
        k = int(state.kind[i])
        r = S.KIND_RADIUS[k]
        x0, y0 = float(e.x[i]) - r, float(e.y[i]) - r
        for fx0, fx1, fy0, fy1 in S.KIND_RECTS[k]:
            rects.append((S.KIND_CLASS[k], x0 + 2 * r * fx0, x0 + 2 * r * fx1,
                          y0 + 2 * r * fy0, y0 + 2 * r * fy1))
    for movers, cls in [(state.enemy_bullets, S.C_ENEMY_BULLET),
                        (state.player_bullets, S.C_PLAYER_BULLET)]:
        for i in np.flatnonzero(np.asarray(movers.active)):
            x, y = float(movers.x[i]), float(movers.y[i])
            rects.append((cls, x - 0.4, x + 0.4, y - 0.4, y + 0.4))
    ax, ay = float(state.agent[0]), float(state.agent[1])
    rects.append((S.C_AGENT, ax - 0.4, ax + 0.4, ay - 0.4, ay + 0.4))
    if int(state.time) >= S.WIN_TIME:
        fx = float(state.finish_x)
        rects.append((S.C_FINISH, fx - 1, fx + 1, 0.0, S.WORLD))
    for cls, x0, x1, y0, y1 in sorted(rects, key=lambda r: r[0]):
        cover = (xs >= np.float32(x0)) & (xs < np.float32(x1)) & (ys >= np.float32(y0)) & (
            ys < np.float32(y1))
        img[cover] = colours[cls]
    return img


def test_render_matches_numpy_painter(hard):
    env, params = hard
    vstep = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    keys = jax.random.split(jax.random.PRNGKey(4), 6)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    render = jax.jit(jax.vmap(env.render, in_axes=(0, None)))
    rng = np.random.default_rng(0)
    checked = 0
    for t in range(60):
        actions = jnp.asarray(rng.choice([FIRE, FIRE_LEFT, 1, 5, 7, 3], 6))
        _, state, *_ = vstep(jax.random.split(jax.random.PRNGKey(t), 6), state, actions, params)
        if t % 20 == 19:
            frames = np.asarray(render(state, params))
            for i in range(6):
                one = jax.tree.map(lambda a, i=i: a[i], state)
                np.testing.assert_array_equal(frames[i], reference_frame(one))
                checked += int(one.enemies.active.sum() + one.player_bullets.active.sum())
    assert checked > 20  # the frames held plenty of objects


def test_render_matches_numpy_painter_on_crowded_frames(hard):
    # every slot filled and piled up: up to 16 bullets on a pixel (a sum of 8^class per
    # rectangle would mis-colour piles of 8 or more), enemies of every kind overlapping;
    # positions on a 1/8 grid, so every box edge is exact
    env, params = hard
    state = blank(env, params, x=8.0, y=8.0).replace(time=jnp.int32(S.WIN_TIME + 3),
                                                     finish_x=jnp.float32(9.0))
    for slot in range(S.NUM_ENEMY_SLOTS):
        state = with_enemy(state, slot, slot % 5, 3.0 + (slot % 8) * 0.5, 3.0 + slot // 8 * 2)
    n_e, n_p = S.NUM_ENEMY_BULLETS, S.NUM_PLAYER_BULLETS
    state = state.replace(
        enemy_bullets=state.enemy_bullets.replace(
            active=jnp.ones(n_e, bool), x=12.0 + jnp.arange(n_e) % 4 * 0.125,
            y=12.0 + jnp.arange(n_e) // 4 * 0.125),
        player_bullets=state.player_bullets.replace(
            active=jnp.arange(n_p) % 3 != 0, x=12.0 + jnp.arange(n_p) % 6 * 0.125,
            y=4.0 + jnp.arange(n_p) // 6 * 0.125))
    frame = np.asarray(jax.jit(env.render)(state, params))
    np.testing.assert_array_equal(frame, reference_frame(state))


def test_render_objects_at_state_positions(game):
    env, params = game
    state = with_enemy(blank(env, params, 5.0, 10.0), 0, S.FLYER, 12.0, 4.0)
    state = with_bullet(state, 2.0, 2.0)
    img = np.asarray(jax.jit(env.render)(state, params))
    assert img.dtype == np.uint8 and img.shape == (64, 64, 3)
    pixel = lambda x, y: img[int((S.WORLD - y) * 4), int(x * 4)]  # noqa: E731
    np.testing.assert_array_equal(pixel(5.0, 10.0), S.CLASS_COLOURS[S.C_AGENT])
    np.testing.assert_array_equal(pixel(12.0, 4.0),
                                  S.FLYER_COLOURS[int(state.level.flyer_colour)])
    np.testing.assert_array_equal(pixel(2.0, 2.0), S.CLASS_COLOURS[S.C_ENEMY_BULLET])
    assert not np.array_equal(pixel(8.0, 10.0), S.CLASS_COLOURS[S.C_AGENT])


def test_starfield_scrolls_and_skies_vary(game, gen):
    env, params = game
    render = jax.jit(env.render)
    state = blank(env, params, 8.0, 8.0).replace(time=jnp.int32(10))
    a = np.asarray(render(state, params))
    b = np.asarray(render(state.replace(time=jnp.int32(15)), params))
    # 0.8 pixels per step: 4 in 5 steps (rows away from the ship at y = 8)
    np.testing.assert_array_equal(b[:20, :-4], a[:20, 4:])
    assert not np.array_equal(a, b)
    levels = gen(jnp.arange(256), params)
    assert len(np.unique(np.asarray(levels.sky))) >= 4
    assert len(np.unique(np.asarray(levels.flyer_colour))) >= 4
