"""Fused sweep runner: a member trains the same alone, in a group, padded, sharded and resumed;
NaN faults are contained; the run directory's manifest and metrics are right.

Uses CartPole-v1 with a tiny MLP (fast to compile, no data files). One runner is compiled per
module and reused wherever the plan is the same.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sweep_helpers import tiny_spec

from scalelab import networks
from scalelab.sweep.plan import make_plan
from scalelab.sweep.run import FusedRunner, execute, run_sweep
from scalelab.sweep.rundir import RunDir
from scalelab.sweep.spec import parse_spec, train_config
from scalelab.train import train

ROOT = Path(__file__).resolve().parents[1]
CHUNKS = 6
SPEC = tiny_spec("tiny", rollout_length=16, num_minibatches=2, interactions=CHUNKS * 2 * 64,
                 updates_per_chunk=2, checkpoint_every=2, plan="max_padding_overhead = 0.0",
                 axes="width = [0.25, 0.5]\nseed = [0, 1, 2]\ngamma = [0.99, 0.9, 0.8]")
PADDED = SPEC.replace("max_padding_overhead = 0.0", "max_padding_overhead = 100.0")
METRICS = ("episode_return_sum", "policy_loss", "value_loss", "entropy", "grad_norm", "episodes")


def _run_chunks(runner, n, state=None):
    """n chunks from a fresh state: per member, metrics name -> (n*K,) array; final state."""
    state = runner.init_state() if state is None else state
    out = {i: {k: [] for k in METRICS} for i in range(len(runner.plan.members))}
    for _ in range(n):
        state, metrics = runner.step(state, runner.plan.spec.updates_per_chunk)
        for g, m in enumerate(metrics):
            m = m._asdict()
            for s, i in enumerate(runner.plan.groups[g].members):
                for k in METRICS:
                    out[i][k].append(np.asarray(m[k][s]))
    return {i: {k: np.concatenate(v) for k, v in d.items()} for i, d in out.items()}, state


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The unpadded plan's runner and an uninterrupted run of it into a run directory."""
    tmp = tmp_path_factory.mktemp("base")
    spec_file = tmp / "tiny.toml"
    spec_file.write_text(SPEC)
    runner = FusedRunner(make_plan(parse_spec(SPEC, str(spec_file))))
    rd = RunDir(tmp / "run")
    rd.create(SPEC, runner.plan.to_json(), {})
    execute(runner, runner.init_state(), rd=rd, progress=False)
    return runner, rd, spec_file


def test_plan_groups_by_width_and_pads_when_allowed(base):
    runner, _, _ = base
    assert len(runner.plan.members) == 18
    assert [len(g.members) for g in runner.plan.groups] == [9, 9]
    padded = make_plan(parse_spec(PADDED, "p.toml"))
    assert len(padded.groups) == 1 and padded.groups[0].network.width == 0.5


def test_member_in_sweep_equals_lone_trainer_run(base):
    runner, _, _ = base
    plan = runner.plan
    per_member, _ = _run_chunks(runner, 3)
    for width, gamma in [(0.5, 0.8)]:
        members = [m for m in plan.members if m.width == width and m.hparams["gamma"] == gamma]
        assert [m.seed for m in members] == [0, 1, 2]
        m = members[0]
        cfg = train_config(plan.spec, width=width, seed=0, lr=m.lr, gamma=gamma,
                           total_interactions=3 * 2 * 64)
        alone = train(cfg, num_seeds=3, progress=False)
        for m in members:
            for k in ("policy_loss", "value_loss", "entropy", "grad_norm"):
                mine = per_member[m.index][k].reshape(3, 2).mean(1)
                np.testing.assert_allclose(mine, alone.metrics[k][m.seed], rtol=2e-5, atol=1e-6,
                                           err_msg=f"member {m.index} {k}")


def test_padded_member_equals_unpadded_and_padding_stays_zero(base):
    runner, _, _ = base
    padded = FusedRunner(make_plan(parse_spec(PADDED, "p.toml")))
    ref, _ = _run_chunks(runner, 2)
    got, state = _run_chunks(padded, 2)
    for i in ref:
        for k in METRICS:
            np.testing.assert_allclose(got[i][k], ref[i][k], rtol=2e-5, atol=1e-6,
                                       err_msg=f"member {i} {k}")
    plan = padded.plan
    group = plan.groups[0]
    for s, i in enumerate(group.members):
        m = plan.members[i]
        own = networks.NetworkConfig("mlp", m.width)
        params = jax.tree.map(lambda x, s=s: x[s], state.groups[0].params)
        shapes = networks.param_shapes(own, plan.obs_shape, plan.num_actions)
        inner = jax.tree.map(lambda x, t: x[tuple(slice(0, d) for d in t.shape)], params, shapes)
        repadded = networks.pad_params(inner, own, group.network, plan.obs_shape,
                                       plan.num_actions)
        assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)),
                                                params, repadded))), f"member {i}"


def _rows(rd):
    return [r for r in rd.read_metrics()]


def test_manifest_counts_match_networks_and_metrics_are_complete(base):
    runner, rd, _ = base
    plan = runner.plan
    manifest = rd.read_manifest()
    assert manifest["complete"] and manifest["updates_done"] == CHUNKS * 2
    for row in manifest["members"]:
        cfg = networks.NetworkConfig("mlp", row["width"])
        shapes = networks.param_shapes(cfg, plan.obs_shape, plan.num_actions)
        assert row["params"] == sum(x.size for x in jax.tree.leaves(shapes))
        assert row["params"] == networks.param_count(cfg, plan.obs_shape, plan.num_actions)
        assert row["flops_per_interaction"] == networks.forward_flops(
            cfg, plan.obs_shape, plan.num_actions)
        assert row["status"] == "ok"
    rows = _rows(rd)
    assert len(rows) == len(plan.members) * CHUNKS * 2
    assert {int(r["interactions"]) for r in rows} == {64 * u for u in range(1, CHUNKS * 2 + 1)}
    gammas = {(int(r["member"]), float(r["gamma"])) for r in rows}
    assert gammas == {(m.index, m.hparams["gamma"]) for m in plan.members}


def test_nan_in_one_member_is_flagged_and_others_unchanged(base, tmp_path):
    runner, ref_rd, _ = base
    victim = runner.plan.groups[1].members[2]
    state = runner.init_state()
    g, s = runner.plan.members[victim].group, runner.plan.members[victim].slot
    poisoned = jax.tree.map(lambda x: x.at[s].set(jnp.nan), state.groups[g].params)
    state = state.replace(groups=tuple(
        st.replace(params=poisoned) if k == g else st for k, st in enumerate(state.groups)))
    rd = RunDir(tmp_path / "run")
    rd.create(SPEC, runner.plan.to_json(), {})
    execute(runner, state, rd=rd, max_chunks=3, progress=False)
    manifest = rd.read_manifest()
    flagged = {r["member"]: (r["status"], r["fault_update"]) for r in manifest["members"]}
    assert flagged.pop(victim) == ("non_finite", 1)
    assert set(flagged.values()) == {("ok", None)}
    ref = {(r["member"], r["update"]): r for r in _rows(ref_rd)}
    for r in _rows(rd):
        if int(r["member"]) == victim:
            assert r["valid"] == "0"
        else:
            assert r == ref[(r["member"], r["update"])]


def _script(body):
    return textwrap.dedent(body)


def test_sharded_over_two_cpu_devices_equals_one_device(base, tmp_path):
    runner, rd, spec_file = base
    out = tmp_path / "sharded"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(ROOT)}
    code = _script(f"""
        import jax
        assert len(jax.devices()) == 2, jax.devices()
        from scalelab.sweep.run import run_sweep
        rd = run_sweep({str(spec_file)!r}, {str(out)!r}, progress=False)
        """)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)
    got = {(r["member"], r["update"]): r for r in _rows(RunDir(out))}
    ref = {(r["member"], r["update"]): r for r in _rows(rd)}
    assert got.keys() == ref.keys()
    for key, r in ref.items():
        for k in ("score", "policy_loss", "value_loss", "entropy"):
            a, b = float(got[key][k]), float(r[k])
            assert a == pytest.approx(b, rel=2e-5, abs=1e-6, nan_ok=True), (key, k)


def test_kill_and_resume_with_a_corrupt_checkpoint_equals_uninterrupted(base, tmp_path):
    runner, ref_rd, spec_file = base
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "scalelab.cli", "sweep", "run", str(spec_file), "--out",
           str(out), "--quiet", "--max-chunks", "5"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        if (out / "checkpoints" / "4" / "commit_success.txt").exists():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()
    steps = sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    assert len(steps) >= 2 and steps[-1] < CHUNKS
    latest = out / "checkpoints" / str(steps[-1])
    for f in latest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"garbage")

    resumed = run_sweep(None, out, resume=True, progress=False)
    assert (out / "corrupt_checkpoints" / str(steps[-1])).exists()
    assert resumed.read_manifest()["complete"]
    got = _rows(resumed)
    ref = _rows(ref_rd)
    assert got == ref


def test_rerun_with_a_different_spec_is_refused(base, tmp_path):
    from scalelab.sweep.spec import SpecError

    _, rd, _ = base
    other = tmp_path / "other.toml"
    other.write_text(SPEC.replace("base = 1e-3", "base = 2e-3"))
    with pytest.raises(SpecError, match="differs"):
        run_sweep(other, rd.path, progress=False)
    assert json.loads(rd.manifest_file.read_text())["complete"]


# ---------------------------------------------------------------- algorithms, schedules, pools

ALGO_CASES = {
    # algo, objective, the swept algorithm axis (its 2nd value is compared), fixed extras
    "ppo_ewma": ("ppo_ewma", "clip", "ewma_decay = [0.5, 0.9]\nimp_samp_max = 2.0"),
    "ppg": ("ppg", "clip", "beta_clone = [0.5, 2.0]"),
}


def _algo_spec(algo, objective, axes, chunks=2, train=""):
    """Two widths padded into one group, one seed, `chunks` chunks of 2 updates (PPG: N_π = 2,
    so an auxiliary phase ends each chunk), and an algorithm hyperparameter axis."""
    phasic = "ppg_n_pi = 2\naux_epochs = 2\n" if algo.startswith("ppg") else ""
    return (PADDED.replace("num_minibatches = 2", f"num_minibatches = 2\nalgo = \"{algo}\"\n"
                           f"objective = \"{objective}\"\n{phasic}{train}")
            .replace(f"interactions = {CHUNKS * 2 * 64}", f"interactions = {chunks * 2 * 64}")
            .replace("seed = [0, 1, 2]\ngamma = [0.99, 0.9, 0.8]", f"seed = [3]\n{axes}"))


def _own_params(state, g, s, network, plan):
    """Slot s of group g's params, cut from the group's padded shapes to `network`'s."""
    params = jax.tree.map(lambda x: x[s], state.groups[g].params)
    shapes = networks.param_shapes(network, plan.obs_shape, plan.num_actions)
    return jax.tree.map(lambda x, t: x[tuple(slice(0, d) for d in t.shape)], params, shapes)


def _check_alone(runner, spec, axis, state, chunk_means, interactions):
    """The width-0.25 member with the 2nd value of `axis` equals `train` of its config alone:
    per-chunk means (name -> (member index -> (chunks,))) and final parameters."""
    plan = runner.plan
    m = next(m for m in plan.members if m.width == 0.25 and m.hparams[axis] == spec.axes[axis][1])
    cfg = train_config(spec, width=0.25, seed=3, lr=m.lr, total_interactions=interactions,
                       **m.hparams)
    alone = train(cfg, progress=False)
    for k in ("policy_loss", "value_loss", "entropy", "grad_norm"):
        np.testing.assert_allclose(chunk_means[k][m.index], alone.metrics[k][0], rtol=2e-5,
                                   atol=1e-6, err_msg=k)
    if cfg.algo.startswith("ppg"):
        assert np.isfinite(alone.metrics["aux_kl"]).all()  # an aux phase ran in every chunk
    mine = _own_params(state, 0, m.slot, runner.networks[m.index], plan)
    theirs = jax.tree.map(lambda x: x[0], alone.final_params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), mine,
                 theirs)
    return alone


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(ALGO_CASES))
def test_algorithm_member_alone_equals_member_in_padded_group(case):
    algo, objective, axes = ALGO_CASES[case]
    spec = parse_spec(_algo_spec(algo, objective, axes), f"{case}.toml")
    runner = FusedRunner(make_plan(spec))
    plan = runner.plan
    assert len(plan.groups) == 1 and plan.groups[0].network.width == 0.5
    assert plan.groups[0].network.aux_value_head == algo.startswith("ppg")
    per_member, state = _run_chunks(runner, 2)
    means = {k: {i: v[k].reshape(2, 2).mean(1) for i, v in per_member.items()}
             for k in METRICS}
    _check_alone(runner, spec, axes.split(" =")[0], state, means, 2 * 2 * 64)


def test_ppg_manifest_counts_the_aux_head_and_the_policy_network():
    plan = make_plan(parse_spec(_algo_spec("ppg", "clip", "beta_clone = 1.0"), "ppg.toml"))
    for m in plan.members:
        h = networks.scaled_units(64, m.width)
        # CartPole: 4 observations, 2 actions; each tower two tanh layers of h units
        tower = 4 * h + h + h * h + h
        assert m.policy_params == tower + 2 * h + 2
        assert m.params == 2 * tower + (2 * h + 2) + (h + 1) + (h + 1)
        own = networks.NetworkConfig("mlp", m.width, aux_value_head=True)
        shapes = networks.param_shapes(own, plan.obs_shape, plan.num_actions)
        assert m.params == sum(x.size for x in jax.tree.leaves(shapes))
        assert m.flops_per_interaction == networks.forward_flops(own, plan.obs_shape,
                                                                 plan.num_actions)


# PPG-EWMA with the KL objective under a power batch schedule: 2 envs x 16 steps per update,
# then B(E) = 2·(E/64) envs rounded down to a doubling of 2, applied after each chunk.
POWER = _algo_spec("ppg_ewma", "kl", "kl_coef = [0.3, 1.5]", chunks=2,
                   train='batch_schedule = "power"\nbatch_e0 = 64\nbatch_power = 1.0'
                   ).replace("num_envs = 4", "num_envs = 2").replace(
                       "checkpoint_every = 2", "checkpoint_every = 1")


def _chunk_means(rows, plan, chunks):
    k = plan.spec.updates_per_chunk
    return {name: {m.index: np.array([float(r[name]) for r in rows if int(r["member"]) == m.index]
                                     ).reshape(chunks, k).mean(1) for m in plan.members}
            for name in ("policy_loss", "value_loss", "entropy", "grad_norm")}


@pytest.mark.slow
def test_ppg_ewma_kl_power_schedule_equals_trainer_and_resumes_exactly(tmp_path):
    from scalelab.sweep.run import _Checkpoints

    spec = parse_spec(POWER, "power.toml")
    runner = FusedRunner(make_plan(spec))
    plan = runner.plan
    # chunk 0: 2 envs (E = 64 <= E_0 after it), chunk 1: 2 envs, then 2·128/64 = 4 envs
    assert plan.chunk_envs == (2, 2, 4) and plan.total_interactions == 256
    rd = RunDir(tmp_path / "full")
    rd.create(POWER, plan.to_json(), {})
    final, _ = execute(runner, runner.init_state(), rd=rd, progress=False)
    full = _rows(rd)
    assert [int(r["interactions"]) for r in full if r["member"] == "0"] == [
        32, 64, 96, 128, 192, 256]
    alone = _check_alone(runner, spec, "kl_coef", final, _chunk_means(full, plan, 3), 256)
    np.testing.assert_array_equal(alone.interactions, [64, 128, 256])

    part = RunDir(tmp_path / "part")
    part.create(POWER, plan.to_json(), {})
    execute(runner, runner.init_state(), rd=part, max_chunks=2, progress=False)
    ckpt = _Checkpoints(part, runner)
    state = ckpt.restore_latest()
    ckpt.close()
    assert int(state.chunk) == 2 and state.groups[0].obs.shape[1] == 4
    execute(runner, state, rd=part, progress=False)
    assert _rows(part) == full


COINRUN = """
[env]
name = "CoinRun-v0"
[env.kwargs]
pool_size = 16
refresh_size = 8
[network]
family = "mlp"
[train]
num_envs = 2
rollout_length = 8
update_epochs = 1
num_minibatches = 2
level_seed = 5
algo = "ppg_ewma"
objective = "kl"
ppg_n_pi = 2
aux_epochs = 1
[budget]
interactions = 64
updates_per_chunk = 2
checkpoint_every = 1
[lr]
base = 1e-3
[plan]
max_padding_overhead = 100.0
[axes]
width = [0.0625, 0.125]
seed = [0, 1]
"""
ALONE = COINRUN.replace("width = [0.0625, 0.125]\nseed = [0, 1]", "width = 0.0625\nseed = 1")


@pytest.fixture(scope="module")
def coinrun(tmp_path_factory):
    """A tiny CoinRun sweep (4 members, one padded group) run uninterrupted, and its runner."""
    runner = FusedRunner(make_plan(parse_spec(COINRUN, "coinrun.toml")))
    assert len(runner.plan.groups) == 1 and runner.member_pools
    state = runner.init_state()
    initial = jax.tree.map(np.array, state.env_params)  # copies: the state is donated
    rd = RunDir(tmp_path_factory.mktemp("coinrun") / "run")
    rd.create(COINRUN, runner.plan.to_json(), {})
    final, _ = execute(runner, state, rd=rd, progress=False)
    return runner, rd, initial, final


def _by_size_and_seed(plan):
    return {(m.width, m.seed): m for m in plan.members}


def test_coinrun_ppg_ewma_sweep_members_own_their_level_pools(coinrun):
    runner, rd, initial, final = coinrun
    plan = runner.plan
    assert plan.groups[0].network.aux_value_head and rd.read_manifest()["complete"]
    by = _by_size_and_seed(plan)
    ids = lambda pools, m: np.asarray(pools[0].pool_ids[m.slot])  # noqa: E731
    for pools in (initial, final.env_params):
        # one seed's members share their levels whatever their width; seeds share none
        np.testing.assert_array_equal(ids(pools, by[0.0625, 0]), ids(pools, by[0.125, 0]))
        assert not set(ids(pools, by[0.0625, 0])) & set(ids(pools, by[0.0625, 1]))
    # 4 updates of 8 fresh levels replaced the whole 16-level pool
    assert not set(ids(initial, by[0.0625, 1])) & set(ids(final.env_params, by[0.0625, 1]))
    rows = _rows(rd)
    assert all(np.isfinite(float(r["aux_kl"])) for r in rows if int(r["update"]) % 2 == 0)


@pytest.mark.slow
def test_coinrun_member_alone_equals_member_in_group(coinrun):
    runner, rd, _, final = coinrun
    by = _by_size_and_seed(runner.plan)
    alone = FusedRunner(make_plan(parse_spec(ALONE, "alone.toml")))
    got, state = _run_chunks(alone, 2)
    m = by[0.0625, 1]
    rows = [r for r in _rows(rd) if int(r["member"]) == m.index]
    for k in ("policy_loss", "value_loss", "entropy", "grad_norm", "episodes"):
        np.testing.assert_allclose(got[0][k], [float(r[k]) for r in rows], rtol=2e-5,
                                   atol=1e-6, err_msg=k)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[0], b[m.slot]),
                 state.env_params[0], final.env_params[0])


def test_coinrun_sweep_resumed_from_a_checkpoint_equals_uninterrupted(coinrun, tmp_path):
    from scalelab.sweep.run import _Checkpoints

    runner, ref, _, _ = coinrun
    rd = RunDir(tmp_path / "run")
    rd.create(COINRUN, runner.plan.to_json(), {})
    execute(runner, runner.init_state(), rd=rd, max_chunks=1, progress=False)
    ckpt = _Checkpoints(rd, runner)
    state = ckpt.restore_latest()
    ckpt.close()
    assert int(state.chunk) == 1
    execute(runner, state, rd=rd, progress=False)
    assert _rows(rd) == _rows(ref)
