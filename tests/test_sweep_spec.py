"""Sweep specs: shipped specs parse, axes expand, and each class of bad input is a clear error."""

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest

from scalelab import specs
from scalelab.cli import main
from scalelab.networks import NetworkConfig, param_count
from scalelab.sweep.plan import make_plan
from scalelab.sweep.spec import SCHEMA, LrRule, SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
[env]
name = "MNIST-v0"
[network]
family = "mnist_cnn"
[train]
num_envs = 8
rollout_length = 4
num_minibatches = 2
[budget]
interactions = 1000
updates_per_chunk = 4
[lr]
base = 1e-3
[axes]
width = [0.0625, 0.125]
seed = [0, 1, 2]
gamma = {geom = [0.5, 0.125, 3]}
"""


def test_good_spec_expands_axes_and_defaults():
    spec = parse_spec(GOOD, "good.toml")
    assert spec.name == "good"
    assert spec.axes["width"] == (0.0625, 0.125)
    assert spec.axes["seed"] == (0, 1, 2)
    np.testing.assert_allclose(spec.axes["gamma"], np.geomspace(0.5, 0.125, 3), rtol=1e-12)
    assert spec.log_interval == 1 and spec.checkpoint_every == 10
    assert spec.lr_rule == LrRule(1e-3, -0.5, 0.0)
    assert list(spec.axes) == ["width", "seed", "gamma"]


def test_lr_rule_is_base_times_width_and_depth_powers():
    rule = LrRule(2e-3, -0.5, 0.25)
    for w, d in itertools.product([0.25, 1.0, 4.0], [1, 4, 16]):
        assert rule.lr(w, d) == pytest.approx(2e-3 / math.sqrt(w) * d**0.25)
    assert rule.lr(4.0, None) == pytest.approx(1e-3)


@pytest.mark.parametrize("name", ["quickstart", "mnist_width", "mnist_horizon",
                                  "mnist_width_cpu", "mnist_horizon_cpu"])
def test_shipped_specs_validate(name):
    spec = load_spec(specs.path(name))
    assert spec.env == "MNIST-v0"
    assert spec.name == name


def test_mnist_width_spans_1_64_to_8_times_params_in_factors_of_two():
    spec = load_spec(specs.path("mnist_width"))
    np.testing.assert_allclose(spec.axes["param_ratio"], 2.0 ** np.arange(-6, 4), rtol=1e-12)


@pytest.mark.parametrize("name", ["mnist_horizon", "mnist_horizon_cpu"])
def test_mnist_horizon_sweeps_gamma_with_lambda_one(name):
    spec = load_spec(specs.path(name))
    assert spec.train["gae_lambda"] == 1.0
    horizons = 1 / (1 - np.array(spec.axes["gamma"]))
    assert len(horizons) >= 4 and np.all(np.diff(horizons) > 0)


def test_readme_documents_every_schema_key():
    readme = (ROOT / "sweeps" / "README.md").read_text()
    for table, keys in SCHEMA.items():
        for key in keys:
            assert re.search(rf"`{key}`", readme), f"[{table}] {key} undocumented"


def test_readme_lists_every_shipped_spec():
    readme = (ROOT / "sweeps" / "README.md").read_text()
    assert set(specs.names()) == {"quickstart", "mnist_width", "mnist_horizon",
                                  "mnist_width_cpu", "mnist_horizon_cpu",
                                  "coinrun_ppg_ewma", "coinrun_ppo"}
    for name in specs.names():
        assert f"| `{name}` |" in readme, f"shipped spec {name} not in sweeps/README.md"


def test_cli_takes_a_shipped_spec_by_name_and_names_them_when_unknown(capsys):
    assert main(["sweep", "plan", "quickstart"]) == 0
    assert "sweep 'quickstart'" in capsys.readouterr().out
    assert main(["sweep", "plan", "quickstrat"]) == 2
    err = capsys.readouterr().err
    assert "quickstrat" in err and "mnist_width_cpu, quickstart" in err


def test_an_existing_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").write_text(GOOD)
    assert specs.resolve("quickstart") == Path("quickstart")
    assert specs.resolve("quickstart.toml") == specs.path("quickstart")


def test_param_ratio_axis_with_the_default_family():
    """No [network] family: the family comes from the observations (MinAtar's 10x10x4 grid ->
    small_cnn) and the parameter ratios are resolved for it."""
    no_family = _edit('name = "MNIST-v0"\n[network]\nfamily = "mnist_cnn"\n',
                      'name = "Breakout-MinAtar"\n')
    text = no_family.split("[axes]")[0] + "[axes]\nparam_ratio = [0.25, 1.0]\n"
    plan = make_plan(parse_spec(text, "minatar.toml"))
    assert plan.family == "small_cnn"
    n1 = param_count(NetworkConfig("small_cnn"), (10, 10, 4), 3)
    assert plan.members[-1].params == n1
    assert plan.members[0].params == pytest.approx(n1 / 4, rel=0.025)


def _edit(old, new):
    assert old in GOOD
    return GOOD.replace(old, new)


BAD = {
    "unknown top-level key": (GOOD + "\nbogus = 1\n", "bogus"),
    "unknown table key": (_edit("updates_per_chunk = 4", "updates_per_chunk = 4\nspeed = 2"),
                          "speed"),
    "unknown axis": (_edit("seed = [0, 1, 2]", "seed = [0, 1, 2]\nmomentum = [0.9]"),
                     "momentum"),
    "unknown train key": (_edit("num_envs = 8", "num_envs = 8\nturbo = true"), "turbo"),
    "train key owned elsewhere": (_edit("num_envs = 8", "num_envs = 8\nlr = 0.1"), "lr"),
    "unknown env": (_edit('"MNIST-v0"', '"NoSuchEnv-v9"'), "NoSuchEnv-v9"),
    "missing required": (_edit("base = 1e-3", ""), "base"),
    "wrong type str": (_edit("interactions = 1000", 'interactions = "lots"'), "interactions"),
    "wrong type bool": (_edit("interactions = 1000", "interactions = true"), "interactions"),
    "wrong type float for int": (_edit("interactions = 1000", "interactions = 1000.5"),
                                 "interactions"),
    "wrong type in train": (_edit("num_envs = 8", 'num_envs = "8"'), "num_envs"),
    "out of range budget": (_edit("interactions = 1000", "interactions = -5"), "interactions"),
    "out of range axis": (_edit("gamma = {geom = [0.5, 0.125, 3]}", "gamma = [0.5, 1.5]"),
                          "gamma"),
    "out of range seed": (_edit("seed = [0, 1, 2]", "seed = [-1]"), "seed"),
    "bad geom": (_edit("gamma = {geom = [0.5, 0.125, 3]}", "gamma = {geom = [0.5, 0.1]}"),
                 "gamma"),
    "duplicate axis values": (_edit("seed = [0, 1, 2]", "seed = [1, 1]"), "seed"),
    "log interval": (_edit("updates_per_chunk = 4", "updates_per_chunk = 4\nlog_interval = 3"),
                     "log_interval"),
    "width and ratio": (_edit("width = [0.0625, 0.125]",
                              "width = [0.0625]\nparam_ratio = [0.5]"), "param_ratio"),
    "swept and fixed": (_edit("num_envs = 8", "num_envs = 8\ngamma = 0.9"), "gamma"),
    "trainer validation": (_edit("num_minibatches = 2", "num_minibatches = 3"),
                           "num_minibatches"),
    "budget below one update": (_edit("interactions = 1000", "interactions = 16"),
                                "[budget] interactions"),
    "not toml": ("[env\nname = 1", "not valid TOML"),
    "table expected": (_edit("[lr]\nbase = 1e-3", "lr = 0.001"), "lr"),
}


def _algo(train, axes=""):
    """GOOD with extra [train] lines and extra [axes] lines."""
    return _edit("num_envs = 8", f"num_envs = 8\n{train}").replace(
        "seed = [0, 1, 2]", f"seed = [0, 1, 2]\n{axes}")


BAD.update({
    "setting ppo ignores": (_algo("aux_epochs = 3"), "[train] aux_epochs"),
    "ewma_decay out of range": (_algo('algo = "ppo_ewma"', "ewma_decay = [0.5, 1.0]"),
                                "[axes] ewma_decay"),
    "imp_samp_max below one": (_algo('algo = "ppo_ewma"', "imp_samp_max = [0.5, 2.0]"),
                               "[axes] imp_samp_max"),
    "kl_coef negative": (_algo('objective = "kl"', "kl_coef = -1.0"), "[axes] kl_coef"),
    "beta_clone wrong type": (_algo('algo = "ppg"', 'beta_clone = ["big"]'),
                              "[axes] beta_clone"),
    "kl_coef axis without kl objective": (_algo("", "kl_coef = [0.5, 1.0]"), "[axes] kl_coef"),
    "ewma_decay axis with plain ppg": (_algo('algo = "ppg"', "ewma_decay = [0.5, 0.9]"),
                                       "[axes] ewma_decay"),
    "beta_clone axis with ppo": (_algo('algo = "ppo_ewma"', "beta_clone = [0.5, 2.0]"),
                                 "[axes] beta_clone"),
    "imp_samp_max axis with clipped ppo": (_algo("", "imp_samp_max = [2.0, 4.0]"),
                                           "[axes] imp_samp_max"),
    "unknown algo": (_algo('algo = "trpo"'), "[train] algo"),
    "unknown objective": (_algo('objective = "reinforce"'), "[train] objective"),
    "ppg aux minibatches": (_algo('algo = "ppg"\naux_num_minibatches = 3'),
                            "aux_num_minibatches"),
    "power schedule with ppg chunks": (_algo('algo = "ppg"\nbatch_schedule = "power"'),
                                       "[budget] updates_per_chunk"),
    "adaptive schedule": (_algo('batch_schedule = "adaptive"'), "[train] batch_schedule"),
})


def test_algorithm_axes_reach_the_members():
    text = _algo('algo = "ppg_ewma"\nobjective = "kl"\nppg_n_pi = 2',
                 "kl_coef = [0.1, 1.0]\newma_decay = 0.5\nbeta_clone = [2.0, 3.0]\n"
                 "imp_samp_max = 50.0")
    plan = make_plan(parse_spec(text, "ok.toml"))
    assert len(plan.members) == 2 * 3 * 3 * 2 * 2  # width, seed, gamma, kl_coef, beta_clone
    assert {(m.hparams["kl_coef"], m.hparams["beta_clone"]) for m in plan.members} == {
        (k, b) for k in (0.1, 1.0) for b in (2.0, 3.0)}
    assert {m.hparams["ewma_decay"] for m in plan.members} == {0.5}
    assert all(g.network.aux_value_head for g in plan.groups)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_error_names_file_and_key(case):
    text, key = BAD[case]
    with pytest.raises(SpecError) as err:
        parse_spec(text, "/some/dir/bad_spec.toml")
    msg = str(err.value)
    assert "/some/dir/bad_spec.toml" in msg
    assert key in msg


def test_bad_env_kwargs_is_a_spec_error_from_the_planner():
    from scalelab.sweep.plan import make_plan

    spec = parse_spec(_edit('name = "MNIST-v0"', 'name = "MNIST-v0"\n[env.kwargs]\nwarp = 3'),
                      "kw.toml")
    with pytest.raises(SpecError, match=r"kw\.toml.*env\.kwargs.*warp"):
        make_plan(spec)


def test_missing_spec_file_names_the_file(tmp_path):
    with pytest.raises(SpecError, match="nope.toml"):
        load_spec(tmp_path / "nope.toml")


@pytest.mark.parametrize("case", ["unknown env", "out of range axis", "trainer validation",
                                  "adaptive schedule", "kl_coef axis without kl objective"])
def test_cli_writes_nothing_for_a_bad_spec(tmp_path, capsys, case):
    spec = tmp_path / "bad.toml"
    spec.write_text(BAD[case][0])
    out = tmp_path / "run"
    assert main(["sweep", "run", str(spec), "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
    assert "bad.toml" in capsys.readouterr().err


def test_coinrun_specs_are_the_paper_setup_and_differ_only_in_the_algorithm():
    ppg = load_spec(specs.path("coinrun_ppg_ewma"))
    ppo = load_spec(specs.path("coinrun_ppo"))
    assert (ppg.env, ppg.family, ppg.env_kwargs["distribution_mode"]) == (
        "CoinRun-v0", "impala", "easy")
    assert (ppg.train["algo"], ppg.train["objective"]) == ("ppg_ewma", "kl")
    assert ppg.train["ppg_n_pi"] == 32
    assert ppg.updates_per_chunk % ppg.train["ppg_n_pi"] == 0
    for field in ("env", "env_kwargs", "family", "interactions", "updates_per_chunk",
                  "log_interval", "lr_rule", "axes"):
        assert getattr(ppg, field) == getattr(ppo, field), field
    algo_keys = {"algo", "objective", "kl_coef", "ewma_decay", "update_epochs", "value_epochs",
                 "ppg_n_pi", "aux_epochs", "beta_clone"}
    strip = lambda train: {k: v for k, v in train.items() if k not in algo_keys}  # noqa: E731
    assert strip(ppg.train) == strip(ppo.train)


@pytest.mark.parametrize("axis,named", [
    ("param_ratio = [0.0156, 0.01561]", "param_ratio 0.0156 and 0.01561"),
    ("width = [0.5, 0.5000000001]", "width 0.5 and 0.5000000001"),
])
def test_members_identical_after_rounding_are_an_error_naming_both_values(axis, named):
    from scalelab.sweep.plan import make_plan

    text = GOOD.replace("width = [0.0625, 0.125]", axis)
    with pytest.raises(SpecError, match="train identically") as err:
        make_plan(parse_spec(text, "q.toml"))
    assert named in str(err.value)


def test_a_rounded_integer_axis_names_one_duplicate_briefly():
    text = GOOD.replace("seed = [0, 1, 2]", "seed = {geom = [1, 100000, 100000]}")
    with pytest.raises(SpecError, match="duplicate value 1 .*after rounding") as err:
        parse_spec(text, "q.toml")
    assert len(str(err.value)) < 200
