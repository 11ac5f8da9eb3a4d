"""`scalelab train` end to end on a tiny CartPole run: CSV rows, PNG, summary, bad flags."""

import csv

import numpy as np
import pytest

from scalelab.cli import main


def test_train_writes_curves_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--env", "CartPole-v1", "--interactions", "1536", "--num-envs", "4",
            "--rollout-length", "32", "--num-minibatches", "2", "--update-epochs", "1",
            "--updates-per-chunk", "4", "--seeds", "2", "--seed", "3", "--width", "0.25",
            "--set", "ent_coef=0.0", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "CartPole-v1" in printed and "over 2 seed(s)" in printed

    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    # 1536 / 128 = 12 updates = chunks of 4, 4, 4 -> 3 log points per seed
    assert len(rows) == 6
    assert sorted({int(r["seed"]) for r in rows}) == [3, 4]
    assert [int(r["interactions"]) for r in rows[:3]] == [512, 1024, 1536]
    from scalelab.networks import NetworkConfig, param_count

    n = param_count(NetworkConfig("mlp", width=0.25), (4,), 2)
    assert {int(r["params"]) for r in rows} == {n}
    scores = np.array([float(r["score"]) for r in rows])
    returns = np.array([float(r["episode_return"]) for r in rows])
    np.testing.assert_array_equal(scores, returns)  # CartPole's score is the episode return
    assert np.all((scores >= 1) & (scores <= 500))  # CartPole returns lie in [1, 500]
    assert (out / "curves.png").stat().st_size > 1000
    assert "ent_coef" in (out / "configs.json").read_text()


@pytest.mark.parametrize("argv,match", [
    (["--num-envs", "0"], "num_envs"),
    (["--set", "gamma=2"], "gamma"),
    (["--set", "no_such_field=1"], "no_such_field"),
    (["--env", "Nope-v0"], "Nope-v0"),
])
def test_train_rejects_bad_input_naming_it(argv, match, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "x"), *argv])
    assert match in str(exc.value)
    assert not (tmp_path / "x").exists()
