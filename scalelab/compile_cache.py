"""A persistent XLA compilation cache for the ``scalelab`` commands.

Every ``scalelab`` command keeps the programs it compiles in jax's persistent compilation cache,
so that running the same command again (the same sweep, or its resume) loads them instead of
compiling them. A cache hit loads the executable that compiling the same program with the same
options produced, so results are unchanged: of two quickstart runs, the second loading from the
cache, both wrote the same metrics.csv byte for byte (the second took 64 s against the first's
89 s on 2 cores, ``benchmarks/compile_cache.py``; tested on a small ``scalelab train``).

Where (``SCALELAB_XLA_CACHE``):

- unset: ``<user cache>/scalelab/xla/<machine>``, the user cache as for MNIST
  (``$XDG_CACHE_HOME``, else ``~/.cache``) and ``<machine>`` a digest of the CPU (architecture
  and feature flags) and the jax and jaxlib versions, so that machines sharing a home directory
  (a cluster's login and compute nodes) do not load each other's executables;
- a path: that directory;
- ``off`` (or ``0``, ``none``, ``false``): no cache.

If ``JAX_COMPILATION_CACHE_DIR`` is set, jax's own setting is left as it is. Only programs that
took jax's ``jax_persistent_cache_min_compile_time_secs`` (1 s by default) to compile are kept;
entries are small (the quickstart kept 4 programs in 2.2 MB) and the directory can be deleted
at any time. Commands running at the same time share it. jax writes an entry in place, without
a lock: a command that reads an entry still being written, or one left torn by a command killed
while writing it, warns ("Error reading persistent compilation cache entry") and compiles that
program itself, with the same results (tested with every entry cut to half its bytes). jax does
not overwrite an existing entry, so a torn one keeps being warned about until the directory is
deleted. Library calls (``scalelab.train``) leave jax's configuration alone: call ``enable()``
to give them the cache too.
"""

from __future__ import annotations

import hashlib
import os
import platform
import warnings
from collections.abc import Mapping
from pathlib import Path

import jax
import jaxlib

from envs_jax.data import cache_dir as user_cache_dir

ENV = "SCALELAB_XLA_CACHE"
OFF = ("off", "0", "none", "false")


def machine_key() -> str:
    """12 hex digits naming this machine's CPU (architecture, processor, feature flags) and the
    jax and jaxlib versions."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    text = "|".join((platform.machine(), platform.processor(), flags.strip(), jax.__version__,
                     jaxlib.__version__))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The directory the cache is kept in under `environ` (default: os.environ), or None for no
    scalelab cache (``SCALELAB_XLA_CACHE`` off, or ``JAX_COMPILATION_CACHE_DIR`` set)."""
    env = os.environ if environ is None else environ
    if env.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    setting = env.get(ENV, "").strip()
    if setting.lower() in OFF:
        return None
    if setting:
        return Path(setting).expanduser()
    return user_cache_dir() / "xla" / machine_key()


def enable(path: str | Path | None = None, min_compile_seconds: float | None = None
           ) -> Path | None:
    """Point jax's persistent compilation cache at `path` (default: ``cache_path()``), created if
    missing; call it before the first compile. `min_compile_seconds`: keep only programs that
    took at least this long to compile (default: jax's setting). Returns the directory, or None
    if no cache was set. A directory that cannot be created is warned about and the cache left
    off."""
    path = cache_path() if path is None else Path(path)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        warnings.warn(f"compiling without a persistent cache: cannot create {path} ({err}); "
                      f"set {ENV} to another directory or to off", stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    if min_compile_seconds is not None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    return path
