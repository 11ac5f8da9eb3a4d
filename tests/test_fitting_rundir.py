"""The run-directory loader reads a hand-built tiny run directory (manifest + metrics)."""

import json
import logging

import numpy as np
import pytest

from fitting.rundir import is_run_dir, load_run

MEMBERS = [
    {"member": 0, "group": 0, "slot": 0, "env": "MNIST-v0", "family": "mnist_cnn",
     "width": 0.5, "depth": None, "param_ratio": None, "params": 1000, "policy_params": 600,
     "flops_per_interaction": 2000, "seed": 0, "lr": 1e-3, "lr_scale": 1.0, "gamma": 0.5,
     "gae_lambda": 1.0, "status": "ok", "fault_update": None},
    {"member": 1, "group": 0, "slot": 1, "env": "MNIST-v0", "family": "mnist_cnn",
     "width": 1.0, "depth": None, "param_ratio": None, "params": 3000, "policy_params": 1700,
     "flops_per_interaction": 6000, "seed": 1, "lr": 7e-4, "lr_scale": 1.0, "gamma": 0.75,
     "gae_lambda": 1.0, "status": "non_finite", "fault_update": 3},
    {"member": 2, "group": 0, "slot": 2, "env": "MNIST-v0", "family": "mnist_cnn",
     "width": 1.0, "depth": None, "param_ratio": None, "params": 3000, "policy_params": 1700,
     "flops_per_interaction": 6000, "seed": 0, "lr": 7e-4, "lr_scale": 1.0, "gamma": 0.75,
     "gae_lambda": 1.0, "status": "ok", "fault_update": None},
]
METRICS = """run,member,group,params,update,interactions,score,valid,loss
0,0,0,1000,1,100,0.1,1,0.5
1,1,0,3000,1,100,0.2,1,0.5
2,2,0,3000,1,100,0.25,1,0.5
0,0,0,1000,2,200,0.3,1,0.4
1,1,0,3000,2,200,nan,1,0.4
2,2,0,3000,2,200,0.35,1,0.4
0,0,0,1000,3,300,0.4,1,0.3
1,1,0,3000,3,300,0.9,0,0.3
2,2,0,3000,3,300,0.5,1,0.3
0,0,0,1000,4,4
"""


def _write(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"name": "tiny", "members": MEMBERS}))
    (run / "metrics.csv").write_text(METRICS)
    return run


def test_load_run_reads_valid_points_sizes_and_swept_hparams(tmp_path, caplog):
    run = _write(tmp_path)
    assert is_run_dir(run) and not is_run_dir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fitting"):
        curves = load_run(run)
    # member 1: a NaN at 200 and a fault from 300 leave one valid point, so it is dropped
    assert "member 1 has 1 valid log points" in caplog.text
    assert [(c.params, c.seed) for c in curves] == [(1000.0, 0), (3000.0, 0)]
    a, b = curves
    np.testing.assert_array_equal(a.interactions, [100, 200, 300])  # the torn row is ignored
    np.testing.assert_array_equal(a.score, [0.1, 0.3, 0.4])
    np.testing.assert_array_equal(b.score, [0.25, 0.35, 0.5])
    assert (a.policy_params, a.flops_per_interaction) == (600.0, 2000.0)
    # gamma varies between members (swept); lr_scale and gae_lambda do not; lr is derived
    assert a.hparams == {"gamma": 0.5} and b.hparams == {"gamma": 0.75}


def test_load_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        load_run(tmp_path)
    run = _write(tmp_path)
    (run / "metrics.csv").write_text("run,member,interactions,score\n")
    with pytest.raises(ValueError, match="valid"):
        load_run(run)
