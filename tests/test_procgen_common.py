"""Procgen pool machinery: refresh ring, finite splits, unbiased pool resets, frame dumps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from procgen_helpers import ks_statistic

import envs_jax
from envs_jax.procgen.common import (
    ProcgenParams,
    box_overlap,
    frames_to_file,
    mix_velocity,
    once,
    opacity_masks,
    pack_rgb,
    rollout_frames,
    texel_opaque,
    unpack_rgb,
    validate_params,
)


@pytest.fixture(scope="module")
def game():
    return envs_jax.make("CoinRun-v0", pool_size=32, refresh_size=8)


def test_refresh_rewrites_one_ring_slice_with_matching_levels(game):
    env, params = game
    new = jax.jit(env.refresh_levels)(jax.random.PRNGKey(1), params)
    old_ids, new_ids = np.asarray(params.pool_ids), np.asarray(new.pool_ids)
    assert np.any(old_ids[:8] != new_ids[:8])
    np.testing.assert_array_equal(old_ids[8:], new_ids[8:])
    assert int(new.pool_cursor) == 8
    # every slot holds exactly the level its id generates
    fresh = env.generate_levels(new.pool_ids, params)
    for x, y in zip(jax.tree.leaves(fresh), jax.tree.leaves(new.pool_levels), strict=True):
        np.testing.assert_array_equal(x, y)
    wrapped = params.replace(pool_cursor=jnp.int32(24))
    assert int(env.refresh_levels(jax.random.PRNGKey(2), wrapped).pool_cursor) == 0


def test_pool_frames_are_the_start_frames_and_required(game):
    env, params = game
    refreshed = jax.jit(env.refresh_levels)(jax.random.PRNGKey(1), params)
    start_frames = jax.jit(jax.vmap(
        lambda lv, i: env.render(env.start_state(lv, i, params), params)))
    for p in (params, refreshed):
        np.testing.assert_array_equal(p.pool_frames, start_frames(p.pool_levels, p.pool_ids))
    # (that a reset's obs is its stored frame is checked by each game's time-limit test)
    with pytest.raises(ValueError, match="pool_frames"):
        env.step(jax.random.PRNGKey(0), env.sample_start(jax.random.PRNGKey(0), params), 0,
                 params.replace(pool_frames=None))


def test_finite_split_pool_holds_every_level_uniformly(game):
    env, _ = game
    params = env.make_params(num_levels=5, start_level=100, pool_size=32, refresh_size=8)
    assert set(np.asarray(params.pool_ids).tolist()) == set(range(100, 105))
    assert env.refresh_levels(jax.random.PRNGKey(0), params) is params
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    _, states = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
    counts = np.bincount(np.asarray(states.level_id) - 100, minlength=5)
    assert counts.sum() == 2000 and len(counts) == 5
    chi2 = float(((counts - 400.0) ** 2 / 400.0).sum())
    assert chi2 < 18.5, f"level frequencies not uniform: {counts}"  # chi2(4) 0.999 quantile


def test_pool_resets_match_fresh_generation(game):
    """Levels met through pool resets (refreshed between rollouts) are distributed like freshly
    generated ones: two-sample KS on level length and chi-square on difficulty."""
    env, params = game

    @jax.jit
    def resets_between_refreshes(params, key):
        def body(params, k):
            k_refresh, k_reset = jax.random.split(k)
            params = env.refresh_levels(k_refresh, params)
            _, s = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, 8), params)
            return params, s.level_id
        _, ids = jax.lax.scan(body, params, jax.random.split(key, 100))
        return ids.reshape(-1)

    met = resets_between_refreshes(params, jax.random.PRNGKey(5))
    fresh_ids = jax.random.randint(jax.random.PRNGKey(6), (800,), 0, 2**31 - 1)
    met_levels = env.generate_levels(met, params)
    fresh_levels = env.generate_levels(fresh_ids, params)
    a, b = np.asarray(met_levels.goal_x), np.asarray(fresh_levels.goal_x)
    d = ks_statistic(a, b)
    # KS critical value at alpha = 0.001 is 1.95 sqrt(2/n); repeats within the pool widen the
    # effective sample noise a little, so allow 1.3x that
    assert d < 1.3 * 1.95 * np.sqrt(2 / 800), d
    ca = np.bincount(np.asarray(met_levels.difficulty), minlength=4)[1:]
    cb = np.bincount(np.asarray(fresh_levels.difficulty), minlength=4)[1:]
    expected = (ca + cb) / 2
    chi2 = float((((ca - expected) ** 2 + (cb - expected) ** 2) / expected).sum())
    assert chi2 < 2 * 13.8, (ca, cb)  # chi2(2) 0.999 quantile, doubled for pool repeats
    # the test has power: a pool that never refreshes and favours short levels is rejected
    biased = b[b <= np.median(b)]
    assert ks_statistic(biased, b) > 1.3 * 1.95 * np.sqrt(2 / 400)


def test_box_overlap_is_strict_and_broadcasts():
    # unit boxes (half-extent 0.5) at distance d overlap iff d < 1 on both axes
    d = np.array([0.0, 0.99, 1.0, 1.5])
    got = np.asarray(box_overlap(0.0, 0.0, 0.5, 0.5, d[:, None], d[None, :], 0.5, 0.5))
    np.testing.assert_array_equal(got, (d[:, None] < 1.0) & (d[None, :] < 1.0))


def test_mix_velocity_converges_to_its_fixed_point():
    # fixed point of v = 0.9 (0.5 v + 0.5 s a): v* = 0.45 s a / 0.55
    v = jnp.zeros(2)
    for _ in range(200):
        v = mix_velocity(v, jnp.array([1.0, -1.0]), 0.5, 0.75)
    np.testing.assert_allclose(v, [0.45 * 0.75 / 0.55, -0.45 * 0.75 / 0.55], rtol=1e-5)


def test_render_bit_helpers_match_numpy():
    rng = np.random.default_rng(0)
    sprites = rng.integers(0, 256, (3, 8, 8, 4)).astype(np.uint8)
    sprites[..., 3] *= rng.random((3, 8, 8)) < 0.5  # about half the texels transparent
    texels = jnp.arange(3 * 64)
    got = np.asarray(jax.jit(lambda t: texel_opaque(opacity_masks(sprites), t))(texels))
    np.testing.assert_array_equal(got, sprites[..., 3].reshape(-1) != 0)
    # sprites sharing one mask (mirror-symmetric shapes) take the one-select path
    shared = np.stack([sprites[0]] * 3)
    got = np.asarray(jax.jit(lambda t: texel_opaque(opacity_masks(shared), t))(texels))
    np.testing.assert_array_equal(got, shared[..., 3].reshape(-1) != 0)
    rgb = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(unpack_rgb(pack_rgb(jnp.asarray(rgb)))), rgb)
    a = jnp.asarray(rng.random((6, 5)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(jax.jit(once)(a)), np.asarray(a))
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(once, 1, 1))(a)), np.asarray(a))
    with pytest.raises(ValueError, match="64 texels"):
        opacity_masks(np.zeros((4, 4, 4), np.uint8))


def test_validation_names_the_bad_field(game):
    env, _ = game
    with pytest.raises(ValueError, match="distribution_mode"):
        validate_params(ProcgenParams(distribution_mode="medium"))
    with pytest.raises(ValueError, match="refresh_size"):
        env.make_params(pool_size=32, refresh_size=5)
    with pytest.raises(ValueError, match="num_levels"):
        env.make_params(num_levels=-1)
    with pytest.raises(ValueError, match="bogus"):
        env.make_params(bogus=1)


def test_rollout_frames_and_files(game, tmp_path):
    env, params = game
    frames = rollout_frames(env, params, jax.random.PRNGKey(0), 6)
    assert frames.shape == (7, 64, 64, 3) and frames.dtype == np.uint8
    assert len({f.tobytes() for f in frames}) > 1, "the episode moves"
    from PIL import Image

    frames_to_file(frames, str(tmp_path / "a.gif"))
    frames_to_file(frames, str(tmp_path / "a.png"))
    with Image.open(tmp_path / "a.gif") as gif:
        # Pillow merges repeated consecutive frames, so count at least the distinct ones
        assert 2 <= gif.n_frames <= 7 and gif.size == (256, 256)
    strip = np.asarray(Image.open(tmp_path / "a.png"))
    assert strip.shape == (256 + 2, 7 * (256 + 2), 3)
    np.testing.assert_array_equal(strip[:256:4, :256:4], frames[0])


def test_cli_envs_show_writes_frames(tmp_path, capsys):
    from PIL import Image

    from scalelab.cli import main

    out = tmp_path / "coinrun.png"
    argv = ["envs", "show", "CoinRun-v0", "--seed", "3", "--steps", "3", "--out", str(out)]
    assert main(argv) == 0
    assert "CoinRun-v0" in capsys.readouterr().out
    assert np.asarray(Image.open(out)).shape == (258, 4 * 258, 3)
    assert main(["envs"]) == 0
