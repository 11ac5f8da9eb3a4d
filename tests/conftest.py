"""Test-session setup: each test process keeps its compiled XLA programs in a persistent
compilation cache of its own (``scalelab.compile_cache``, every program kept however quick its
compile), so that a program compiled again (a resumed run, a second runner of the same config,
the same tiny config in another test) is loaded instead of recompiled.

The cache directory is private to the process (pytest-xdist's workers do not share one: jax
writes cache entries in place, and another process could read a half-written entry) and is
deleted when the session ends. ``SCALELAB_XLA_CACHE`` is set to off, so that the ``scalelab``
commands the tests run (in this process or in a subprocess) never write to the user's cache. A
cache hit loads the executable that compiling the same program with the same options produced,
so no result changes. With JAX_COMPILATION_CACHE_DIR set, jax's own setting is used instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from scalelab import compile_cache

_cache_dir: str | None = None


def pytest_configure(config) -> None:
    global _cache_dir
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    _cache_dir = tempfile.mkdtemp(prefix="scalelab-tests-xla-cache-")
    compile_cache.enable(_cache_dir, min_compile_seconds=0.0)
    # the scalelab commands that tests run, here or in a subprocess, add no cache of their own
    os.environ[compile_cache.ENV] = "off"


def pytest_unconfigure(config) -> None:
    if _cache_dir is not None:
        shutil.rmtree(_cache_dir, ignore_errors=True)
