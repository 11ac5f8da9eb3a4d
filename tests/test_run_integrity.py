"""A run directory cannot be silently corrupted: one writer at a time (a stale lock is taken
over), checkpoints verified against their checksums, metrics.csv rebuilt from its journal,
foreign or unidentifiable directories refused, over-memory plans refused before anything runs.

Uses a tiny CartPole MLP sweep (2 members, one group, 4 chunks of 1 update, a checkpoint after
every chunk); the reference is one uninterrupted run.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import tiny_spec

from scalelab.cli import main
from scalelab.sweep import capacity
from scalelab.sweep.capacity import MemoryRefused
from scalelab.sweep.lock import RunLock, RunLockedError
from scalelab.sweep.run import run_spec, run_sweep
from scalelab.sweep.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
SPEC = tiny_spec("integrity")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """The spec file and an uninterrupted run of it, forced past a memory check that would
    refuse it (host RAM patched down to 1 KiB)."""
    tmp = tmp_path_factory.mktemp("integrity")
    spec = tmp / "tiny.toml"
    spec.write_text(SPEC)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(capacity, "_host_ram", lambda: (1024, "patched host RAM"))
        with pytest.raises(MemoryRefused, match="patched host RAM is 9.54e-07 GiB"):
            run_sweep(spec, tmp / "refused", progress=False)
        assert not (tmp / "refused").exists()
        run_sweep(spec, tmp / "ref", progress=False, force=True)
    return spec, RunDir(tmp / "ref")


def _copy(ref_rd: RunDir, dst: Path) -> RunDir:
    shutil.copytree(ref_rd.path, dst)
    return RunDir(dst)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_byte_flipped_checkpoint_is_detected_and_the_previous_one_used(ref, tmp_path, capsys):
    spec, ref_rd = ref
    out = tmp_path / "run"
    run_sweep(spec, out, max_chunks=3, progress=False)
    files = [f for f in (out / "checkpoints" / "3").rglob("*") if f.is_file()]
    _flip_byte(max(files, key=lambda f: f.stat().st_size))
    rd = run_sweep(None, out, progress=False)
    err = capsys.readouterr().err
    assert "checkpoint 3" in err and "checksums do not match" in err
    assert (out / "corrupt_checkpoints" / "3").is_dir()
    assert rd.read_manifest()["complete"]
    assert rd.metrics_file.read_bytes() == ref_rd.metrics_file.read_bytes()


@pytest.mark.parametrize("damage", ["cut_in_half", "torn_last_field", "deleted"])
def test_damaged_metrics_csv_is_rebuilt_from_the_journal(ref, tmp_path, capsys, damage):
    spec, ref_rd = ref
    rd = _copy(ref_rd, tmp_path / "run")
    data = rd.metrics_file.read_bytes()
    if damage == "deleted":
        rd.metrics_file.unlink()
    else:
        rd.metrics_file.write_bytes(data[:len(data) // 2] if damage == "cut_in_half"
                                    else data[:-4] + b"\r\n")
    run_sweep(spec, rd.path, progress=False)
    assert "rebuilt it from" in capsys.readouterr().err
    assert rd.metrics_file.read_bytes() == data
    assert rd.read_manifest()["complete"]


def test_torn_journal_falls_back_to_the_chunks_it_verifies(ref, tmp_path):
    spec, ref_rd = ref
    rd = _copy(ref_rd, tmp_path / "run")
    lines = rd.journal_file.read_text().splitlines(True)
    rd.journal_file.write_text("".join(lines[:2]) + lines[2][:40])
    run_sweep(spec, rd.path, progress=False)
    assert rd.metrics_file.read_bytes() == ref_rd.metrics_file.read_bytes()
    assert rd.journal_file.read_bytes() == ref_rd.journal_file.read_bytes()


@pytest.mark.parametrize("case", ["no_manifest", "other_manifest", "no_spec"])
def test_a_run_dir_that_cannot_be_identified_is_refused(ref, tmp_path, capsys, case):
    spec, ref_rd = ref
    rd = _copy(ref_rd, tmp_path / "run")
    if case == "no_manifest":
        rd.manifest_file.unlink()
    elif case == "other_manifest":
        rd.manifest_file.write_text(rd.manifest_file.read_text().replace(
            '"name": "integrity"', '"name": "another"'))
    else:
        rd.spec_file.unlink()
    before = sorted(p.relative_to(rd.path) for p in rd.path.rglob("*"))
    argv = ["sweep", "run", *([] if case == "no_spec" else [str(spec)]), "--out", str(rd.path),
            "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(rd.path) in err
    assert sorted(p.relative_to(rd.path) for p in rd.path.rglob("*")) == before


def _start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_a_second_writer_is_refused_naming_the_holder(ref, tmp_path, capsys):
    spec, ref_rd = ref
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "scalelab.cli", "sweep", "run", str(spec),
                              "--out", str(out), "--quiet"], env=ENV, stderr=subprocess.PIPE)
    lock = out / ".lock"
    deadline = time.monotonic() + 300
    while not (lock.exists() and lock.stat().st_size) and first.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert main(["sweep", "run", str(spec), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"pid {first.pid}" in err and "being written by another process" in err
    assert "Traceback" not in err
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    assert RunDir(out).metrics_file.read_bytes() == ref_rd.metrics_file.read_bytes()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    holder = _start(f"from scalelab.sweep.lock import RunLock\n"
                    f"RunLock({str(tmp_path)!r}).acquire()\nprint('locked', flush=True)\n"
                    f"import time; time.sleep(600)\n")
    assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
    with pytest.raises(RunLockedError, match=f"pid {holder.pid} on host"):
        RunLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    lock = RunLock(tmp_path)
    with pytest.warns(UserWarning, match=f"pid {holder.pid} .*not running"):
        lock.acquire()
    lock.release()
    assert (tmp_path / ".lock").read_text() == ""


SEEDS_4000 = f"width = 1.0\nseed = {list(range(4000))}"


@pytest.mark.parametrize("axes", ["width = 100000.0\nseed = 0", SEEDS_4000],
                         ids=["width_1e5", "4000_seeds"])
def test_a_plan_beyond_memory_is_refused_before_anything_runs(tmp_path, capsys, axes):
    spec = tmp_path / "big.toml"
    spec.write_text(SPEC.replace("width = 0.25\nseed = [0, 1]", axes).replace(
        "num_envs = 4", "num_envs = 1024").replace("interactions = 128", "interactions = 1000000"))
    out = tmp_path / "run"
    with pytest.raises(MemoryRefused, match=r"needs an estimated [0-9.e+]+ GiB .* is [0-9.]+ GiB"):
        run_spec(spec.read_text(), str(spec), out)
    assert main(["sweep", "run", str(spec), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--force" in err and "fewer members" in err and "Traceback" not in err
    assert not out.exists()
