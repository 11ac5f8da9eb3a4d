"""Test-session setup: each test process keeps its compiled XLA programs in a persistent
compilation cache of its own, so that a program compiled again (a resumed run, a second runner
of the same config, the same tiny config in another test) is loaded instead of recompiled.

The cache directory is private to the process (pytest-xdist's workers do not share one: jax
writes cache entries in place, and another process could read a half-written entry) and is
deleted when the session ends. A cache hit loads the executable that compiling the same program
with the same options produced, so no result changes. Set JAX_COMPILATION_CACHE_DIR to use a
cache of your own instead (it is then left as it is).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import jax

_cache_dir: str | None = None


def pytest_configure(config) -> None:
    global _cache_dir
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    _cache_dir = tempfile.mkdtemp(prefix="scalelab-tests-xla-cache-")
    jax.config.update("jax_compilation_cache_dir", _cache_dir)
    # the test programs are small: keep every one, however quick its compile
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config) -> None:
    if _cache_dir is not None:
        shutil.rmtree(_cache_dir, ignore_errors=True)
