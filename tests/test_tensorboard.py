"""TensorBoard export: events read back equal metrics.csv (every value, every step), per member.

Events are read with TensorBoard's own EventAccumulator. Values are stored as float32 by the
writer, so each is compared exactly with the float32 of its CSV cell.
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

from scalelab.cli import main
from scalelab.tensorboard import (
    TensorBoardMissing,
    TensorBoardWriter,
    export_run,
    member_names,
)

MEMBERS = [
    {"member": 0, "group": 0, "slot": 0, "env": "MNIST-v0", "family": "mnist_cnn",
     "width": 0.125, "depth": 1, "params": 3600, "flops_per_interaction": 70000, "seed": 0,
     "lr": 3e-4, "lr_scale": 1.0, "gamma": 0.0, "gae_lambda": 1.0, "status": "ok",
     "fault_update": None},
    {"member": 1, "group": 0, "slot": 1, "env": "MNIST-v0", "family": "mnist_cnn",
     "width": 0.125, "depth": 1, "params": 3600, "flops_per_interaction": 70000, "seed": 1,
     "lr": 3e-4, "lr_scale": 1.0, "gamma": 0.0, "gae_lambda": 1.0, "status": "non_finite",
     "fault_update": 3},
]
# rundir's format: METRIC_COLUMNS, then the trainer's metrics in sorted order; member 1 faults
# at update 3 (valid = 0 from there), a window without episodes leaves episode_return NaN.
METRICS_CSV = """\
run,member,group,params,flops_per_interaction,seed,lr,gamma,gae_lambda,width,depth,update,interactions,score,valid,entropy,episode_return,grad_norm,lr_used,noise_scale,policy_loss
0,0,0,3600,70000,0,0.0003,0.0,1.0,0.125,1,1,256,0.1015625,1,2.30251,nan,0.51,0.0003,,-0.012
1,1,0,3600,70000,1,0.0003,0.0,1.0,0.125,1,1,256,0.09375,1,2.30248,nan,0.49,0.0003,,-0.011
0,0,0,3600,70000,0,0.0003,0.0,1.0,0.125,1,2,512,0.2890625,1,2.1,0.25,0.73,0.00029,812.5,0.004
1,1,0,3600,70000,1,0.0003,0.0,1.0,0.125,1,2,512,0.1875,1,2.2,0.125,0.7,0.00029,1e+30,0.0031
0,0,0,3600,70000,0,0.0003,0.0,1.0,0.125,1,3,768,0.5078125,1,1.7,0.5,1.1,0.00028,433.1,-0.02
1,1,0,3600,70000,1,0.0003,0.0,1.0,0.125,1,3,768,0.1875,0,nan,nan,nan,0.00028,nan,nan
"""
def _tiny_run(tmp: Path) -> Path:
    run = tmp / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"name": "tiny", "members": MEMBERS}))
    (run / "metrics.csv").write_text(METRICS_CSV)
    return run


def _events(logdir: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Member directory -> tag -> [(step, value)] as TensorBoard reads them."""
    out = {}
    for d in sorted(p for p in logdir.iterdir() if p.is_dir()):
        acc = EventAccumulator(str(d), size_guidance={SCALARS: 0}).Reload()
        out[d.name] = {t: [(e.step, e.value) for e in acc.Scalars(t)]
                       for t in acc.Tags()["scalars"]}
    return out


def _expected(run: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """The same, from metrics.csv: score and the trainer's columns (those after `valid`) of
    valid rows, NaN and empty cells left out, float32 as the events store them."""
    names = member_names(json.loads((run / "manifest.json").read_text())["members"])
    with (run / "metrics.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        metrics = ["score", *header[header.index("valid") + 1:]]
        out: dict[str, dict[str, list[tuple[int, float]]]] = {}
        for row in reader:
            if row["valid"] == "0":
                continue
            tags = out.setdefault(names[int(row["member"])], {})
            for m in metrics:
                if row[m] not in ("", "nan"):
                    tags.setdefault(m, []).append(
                        (int(row["interactions"]), float(np.float32(row[m]))))
    return out


def _count(events: dict[str, dict[str, list]]) -> int:
    return sum(len(points) for tags in events.values() for points in tags.values())


def test_member_names_are_readable_and_name_varying_axes():
    assert member_names(MEMBERS) == {0: "m000_w0.125_seed0_lr3e-4",
                                     1: "m001_w0.125_seed1_lr3e-4"}
    horizon = [{**MEMBERS[0], "gamma": 0.9}, {**MEMBERS[1], "member": 12, "gamma": 0.99}]
    assert member_names(horizon) == {0: "m000_w0.125_seed0_lr3e-4_gamma0.9",
                                     12: "m012_w0.125_seed1_lr3e-4_gamma0.99"}


def test_export_of_hand_built_run_equals_metrics_csv(tmp_path):
    run = _tiny_run(tmp_path)
    n = export_run(run, tmp_path / "tb")
    got, want = _events(tmp_path / "tb"), _expected(run)
    assert got == want
    assert n == _count(want) == 31
    # faulted member: its curves stop at the fault; all-NaN/empty columns make no tag
    assert [s for s, _ in got["m001_w0.125_seed1_lr3e-4"]["score"]] == [256, 512]
    assert "noise_scale" in got["m000_w0.125_seed0_lr3e-4"]
    assert not {"member", "seed", "lr", "width", "update", "valid", "interactions"} & set(
        got["m000_w0.125_seed0_lr3e-4"])
    # exporting again replaces the first export in TensorBoard's view
    assert export_run(run, tmp_path / "tb") == n and _events(tmp_path / "tb") == want


def test_repeated_writes_append_between_chunks(tmp_path):
    run = _tiny_run(tmp_path)
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    logdir = tmp_path / "tb"
    with TensorBoardWriter(logdir, MEMBERS) as writer:
        for chunk in range(3):
            writer.write(rows[2 * chunk:2 * chunk + 2])
            steps = [s for s, _ in _events(logdir)["m000_w0.125_seed0_lr3e-4"]["score"]]
            assert steps == [256, 512, 768][:chunk + 1]
    assert _events(logdir) == _expected(run)
    assert [len(list(d.glob("events.*"))) for d in sorted(logdir.iterdir())] == [1, 1]


def test_typed_rows_joined_with_the_manifest_write_only_their_metrics(tmp_path):
    points = {0: [{"update": 1, "interactions": 64, "score": 0.5, "valid": True,
                   "entropy": 2.25, "noise_scale": float("nan")}],
              1: [{"update": 1, "interactions": 64, "score": 0.25, "valid": False,
                   "entropy": 2.0}]}
    with TensorBoardWriter(tmp_path, MEMBERS) as writer:
        # rows as the runner builds them: the manifest row joined with each log point
        rows = [{"run": m["member"], **m, **p} for m in MEMBERS for p in points[m["member"]]]
        assert writer.write(rows) == 2
    assert _events(tmp_path) == {"m000_w0.125_seed0_lr3e-4": {"score": [(64, 0.5)],
                                                              "entropy": [(64, 2.25)]},
                                 "m001_w0.125_seed1_lr3e-4": {}}


def test_purge_step_hides_what_a_resumed_run_writes_again(tmp_path):
    rows = [{"member": 0, "interactions": i, "score": float(i), "valid": True}
            for i in (100, 200, 300)]
    with TensorBoardWriter(tmp_path, MEMBERS[:1]) as first:
        first.write(rows)
    replayed = [{**r, "score": -r["score"]} for r in rows[1:]]
    with TensorBoardWriter(tmp_path, MEMBERS[:1], purge_step=200) as resumed:
        resumed.write(replayed)
    assert _events(tmp_path)["m000_w0.125_seed0_lr3e-4"]["score"] == [
        (100, 100.0), (200, -200.0), (300, -300.0)]


def test_missing_extra_is_a_clear_error(tmp_path, monkeypatch):
    for name in ["tensorboardX", *(m for m in sys.modules if m.startswith("tensorboardX."))]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(TensorBoardMissing, match=r'pip install "scalelab\[tensorboard\]"'):
        export_run(_tiny_run(tmp_path), tmp_path / "tb")
    assert issubclass(TensorBoardMissing, ImportError)


def test_export_of_a_missing_run_dir_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        export_run(tmp_path / "nowhere", tmp_path / "tb")


def test_train_writes_events_live_and_export_rewrites_them_equal_to_metrics_csv(tmp_path):
    run, live, exported = tmp_path / "run", tmp_path / "live", tmp_path / "exported"
    argv = ["train", "--env", "CartPole-v1", "--interactions", "768", "--num-envs", "4",
            "--rollout-length", "32", "--num-minibatches", "2", "--update-epochs", "1",
            "--updates-per-chunk", "2", "--seeds", "2", "--width", "0.25", "--quiet",
            "--out", str(run), "--tensorboard", str(live)]
    assert main(argv) == 0
    want = _expected(run)
    assert _events(live) == want  # written between chunks, from the rows of metrics.csv
    assert main(["export", str(run), "--tensorboard", str(exported)]) == 0
    assert _events(exported) == want
    # 768 / 128 = 6 updates in 3 chunks: 3 points per seed and metric
    assert len(want) == 2 and all(len(v) == 3 for tags in want.values() for v in tags.values())
    assert {"score", "entropy", "policy_loss", "grad_norm", "lr_used"} <= set(
        next(iter(want.values())))
