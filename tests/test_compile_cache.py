"""The `scalelab` commands' persistent XLA compilation cache: where SCALELAB_XLA_CACHE puts it,
and that a second run of the same command loads its programs from it with the same results."""

import os
import re
import subprocess
import sys

import pytest

from scalelab import compile_cache

ARGV = ["train", "--env", "CartPole-v1", "--interactions", "512", "--num-envs", "4",
        "--rollout-length", "32", "--num-minibatches", "2", "--update-epochs", "1",
        "--updates-per-chunk", "2", "--width", "0.25", "--quiet"]


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


def _train(out, cache):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    # every program kept, however quick its compile on this machine
    env.update(SCALELAB_XLA_CACHE=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    subprocess.run([sys.executable, "-m", "scalelab.cli", *ARGV, "--out", str(out)], env=env,
                   check=True, capture_output=True, timeout=600)
    return (out / "metrics.csv").read_text()


def test_a_second_run_loads_its_programs_from_the_cache_with_equal_results(tmp_path):
    cache = tmp_path / "cache"
    first = _train(tmp_path / "a", cache)
    entries = sorted(p.name for p in cache.iterdir())
    assert entries  # the first run compiled and kept its programs
    assert _train(tmp_path / "b", cache) == first
    # every program of the second run was found there: it added nothing
    assert sorted(p.name for p in cache.iterdir()) == entries
