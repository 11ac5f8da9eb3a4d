"""The `scalelab` commands' persistent XLA compilation cache: where SCALELAB_XLA_CACHE puts it,
and that a second run of the same command loads its programs from it with the same results."""

import json
import re

import pytest

from benchmarks import compile_cache as cache_bench
from scalelab import compile_cache


def test_the_cache_path_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    key = compile_cache.machine_key()
    assert re.fullmatch(r"[0-9a-f]{12}", key) and compile_cache.machine_key() == key
    assert compile_cache.cache_path({}) == tmp_path / "user" / "scalelab" / "xla" / key
    assert compile_cache.cache_path({"SCALELAB_XLA_CACHE": str(tmp_path / "x")}) == tmp_path / "x"
    for off in ("off", "OFF", "0", "none", "false"):
        assert compile_cache.cache_path({"SCALELAB_XLA_CACHE": off}) is None
    # jax's own variable wins: scalelab then sets nothing
    assert compile_cache.cache_path({"JAX_COMPILATION_CACHE_DIR": str(tmp_path)}) is None


def test_an_uncreatable_cache_directory_warns_and_leaves_the_cache_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="without a persistent cache"):
        assert compile_cache.enable(blocker / "cache") is None


def test_a_second_run_loads_its_programs_from_the_cache_and_torn_entries_are_recompiled(
        tmp_path):
    # benchmarks/compile_cache.py's smoke mode: a tiny `scalelab train` run twice in subprocesses
    # against one fresh cache, every program kept however quick its compile
    out = tmp_path / "cc.jsonl"
    row = cache_bench.main(["--smoke", "--work", str(tmp_path), "--out", str(out)])
    assert json.loads(out.read_text()) == row
    assert row["cache_entries_1"] > 0  # the first run compiled and kept its programs
    # every program of the second run was found there: it added nothing, and trained the same
    assert (row["cache_entries_2"], row["cache_bytes_2"]) == (row["cache_entries_1"],
                                                              row["cache_bytes_1"])
    assert row["metrics_identical"]

    # entries cut to half their bytes: what a command meets when it reads entries that another
    # is still writing, or that a killed command left
    cache, first = tmp_path / "cache", (tmp_path / "run1" / "metrics.csv").read_bytes()
    entries = [p for p in cache.iterdir() if p.is_file()]
    for p in entries:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    torn = {p: p.stat().st_size for p in entries}
    done = cache_bench.run_once(cache_bench.SMOKE, tmp_path / "torn", cache, every_program=True)
    assert "Error reading persistent compilation cache entry" in done.stderr
    assert (tmp_path / "torn" / "metrics.csv").read_bytes() == first
    # jax does not overwrite an existing entry: the torn ones stay as they were
    assert {p: p.stat().st_size for p in entries} == torn
