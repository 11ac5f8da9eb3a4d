"""A tiny sweep run as 2 processes through `jax.distributed` on this machine (CPU, gloo
collectives, localhost coordinator): results equal the single-process run's, process 0 writes
the one set of files, and a killed process makes the other exit with a message (not hang), after
which re-running both resumes and finishes with the uninterrupted 2-process results.

The 2-process runs are slow (each process compiles; minutes on 2 shared cores): marked slow. The
survivor's handling of a failed collective is also checked fast, on a simulated failure.
"""

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import pytest
from sweep_helpers import tiny_spec

from scalelab.cli import main
from scalelab.sweep.run import run_sweep
from scalelab.sweep.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
SPEC = tiny_spec("distributed")
# the member axis split over 2 processes (1 member each) vs vmapped on 1 device: see README
TOLERANCE = {"rel": 2e-5, "abs": 1e-6}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(spec: Path, out: Path) -> list[subprocess.Popen]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return [subprocess.Popen(
        [sys.executable, "-m", "scalelab.cli", "sweep", "run", str(spec), "--out", str(out),
         "--quiet", "--distributed", "--coordinator", f"localhost:{port}", "--num-processes",
         "2", "--process-id", str(i), "--heartbeat-timeout", "10"],
        env=env, stderr=subprocess.PIPE, text=True) for i in range(2)]


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    return [(p.wait(timeout=900), p.stderr.read()) for p in procs]


def _rows(rd: RunDir) -> list[dict[str, str]]:
    with rd.metrics_file.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_process_sweep_equals_one_process_and_survives_a_killed_process(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC)
    single = run_sweep(spec, tmp_path / "single", progress=False)

    both = RunDir(tmp_path / "two")
    for rc, err in _finish(_launch(spec, both.path)):
        assert rc == 0, err
    assert both.read_manifest()["complete"]
    got, ref = _rows(both), _rows(single)
    assert [(r["member"], r["update"]) for r in got] == [(r["member"], r["update"]) for r in ref]
    assert len(both.journal_file.read_text().splitlines()) == 4  # one line per chunk, once
    for a, b in zip(got, ref, strict=True):
        assert a["score"] == b["score"]
        for k in ("policy_loss", "value_loss", "entropy", "grad_norm"):
            assert float(a[k]) == pytest.approx(float(b[k]), **TOLERANCE), (a["member"], k)

    killed = RunDir(tmp_path / "killed")
    procs = _launch(spec, killed.path)
    deadline = time.monotonic() + 600
    while not (killed.checkpoint_sums_dir / "1.json").exists():
        assert time.monotonic() < deadline and procs[0].poll() is None, procs[0].stderr.read()
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    rc, err = procs[0].wait(timeout=300), procs[0].stderr.read()
    assert rc != 0 and "Traceback" not in err
    assert "another process has probably died" in err or "heartbeat" in err, err
    procs[1].wait(timeout=30)
    assert not killed.read_manifest()["complete"]
    for rc, err in _finish(_launch(spec, killed.path)):
        assert rc == 0, err
    assert killed.metrics_file.read_bytes() == both.metrics_file.read_bytes()


def test_a_failed_collective_ends_the_process_with_a_message(monkeypatch, capsys):
    """What the survivor of a killed process does (fast: the failure is simulated)."""
    from scalelab.sweep import cli as sweep_cli

    def collective_fails(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("UNKNOWN: Gloo AllGather failed: Connection reset")

    def exit_now(code):
        raise SystemExit(code)

    monkeypatch.setattr(sweep_cli, "run_sweep", collective_fails)
    monkeypatch.setattr(sweep_cli.jax, "process_count", lambda: 2)
    monkeypatch.setattr(sweep_cli.os, "_exit", exit_now)
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "run", "quickstart", "--out", "DIR", "--quiet"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: process 0 of 2: a collective with the other processes failed")
    assert "Gloo AllGather failed" in err and "resume DIR" in err
