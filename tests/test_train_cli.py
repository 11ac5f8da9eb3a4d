"""`scalelab train` end to end on a tiny CartPole run: the sweep run directory, its PNG and
summary, resume by re-running, refusal of another config there, bad flags (exit 2)."""

import json

import numpy as np
import pytest

from scalelab.cli import main
from scalelab.networks import NetworkConfig, param_count
from scalelab.sweep.rundir import RunDir

ARGV = ["train", "--env", "CartPole-v1", "--interactions", "1536", "--num-envs", "4",
        "--rollout-length", "32", "--num-minibatches", "2", "--update-epochs", "1",
        "--updates-per-chunk", "4", "--seeds", "2", "--seed", "3", "--width", "0.25",
        "--set", "ent_coef=0.0", "--quiet"]


def test_train_writes_a_sweep_run_dir_and_resumes_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*ARGV, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "CartPole-v1" in printed and "over 2 seed(s)" in printed
    rd = RunDir(out)
    manifest = rd.read_manifest()
    assert manifest["complete"] and manifest["updates_done"] == 12
    assert [m["seed"] for m in manifest["members"]] == [3, 4]
    assert "ent_coef = 0.0" in rd.read_spec_text()
    rows = rd.read_metrics()
    # 1536 / 128 = 12 updates = chunks of 4, 4, 4 -> 3 log points per seed
    assert len(rows) == 6
    assert [int(r["interactions"]) for r in rows if r["seed"] == "3"] == [512, 1024, 1536]
    n = param_count(NetworkConfig("mlp", width=0.25), (4,), 2)
    assert {int(r["params"]) for r in rows} == {n}
    scores = np.array([float(r["score"]) for r in rows])
    np.testing.assert_array_equal(scores, [float(r["episode_return"]) for r in rows])
    assert np.all((scores >= 1) & (scores <= 500))  # CartPole returns lie in [1, 500]
    assert (out / "curves.png").stat().st_size > 1000
    assert json.loads((out / "plan.json").read_text())["family"] == "mlp"

    # the same command again finds the run complete and rewrites nothing
    before = (out / "metrics.csv").read_text()
    assert main([*ARGV, "--out", str(out)]) == 0
    assert (out / "metrics.csv").read_text() == before

    # another config into the same directory is refused, the run left as it was
    capsys.readouterr()
    assert main([*ARGV, "--lr", "1e-3", "--out", str(out)]) == 2
    assert "differs" in capsys.readouterr().err
    assert (out / "metrics.csv").read_text() == before


def test_minatar_grid_defaults_to_small_cnn_and_trains(tmp_path, capsys):
    """Breakout-MinAtar (gymnax, 10x10x4 grid, 3 actions) without --network gets the small-grid
    CNN; the summary says so and the manifest records it; a few updates train."""
    out = tmp_path / "breakout"
    argv = ["train", "--env", "Breakout-MinAtar", "--interactions", "256", "--num-envs", "4",
            "--rollout-length", "16", "--num-minibatches", "2", "--update-epochs", "1",
            "--updates-per-chunk", "2", "--width", "0.25", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    assert "small_cnn (default for observation shape 10x10x4)" in capsys.readouterr().out
    manifest = RunDir(out).read_manifest()
    assert manifest["complete"] and manifest["family"] == "small_cnn"
    rows = RunDir(out).read_metrics()
    assert [int(r["interactions"]) for r in rows] == [128, 256]
    n = param_count(NetworkConfig("small_cnn", width=0.25), (10, 10, 4), 3)
    assert {int(r["params"]) for r in rows} == {n}


@pytest.mark.parametrize("argv,match", [
    (["--num-envs", "0"], "num_envs"),
    (["--set", "gamma=2"], "gamma"),
    (["--set", "no_such_field=1"], "no_such_field"),
    (["--env", "Nope-v0"], "Nope-v0"),
])
def test_train_rejects_bad_input_naming_it(argv, match, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "x"), *argv]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_train_refuses_an_out_that_is_a_file_before_training(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main([*ARGV, "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err
