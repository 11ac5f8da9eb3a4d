"""A `scalelab` command run twice against a fresh persistent compilation cache
(``scalelab.compile_cache``): the first run compiles and fills it, the second loads from it.

Each run is a subprocess with ``SCALELAB_XLA_CACHE`` set to the same new directory and its own
``--out``; one JSON line gives both wall times, their ratio (first / second), the cache's entries
and bytes after each run, whether the second run's metrics.csv is byte-identical to the first's,
and the 1-minute load average before and after.

    PYTHONPATH=. python benchmarks/compile_cache.py [--smoke] [--work DIR]
        [--out benchmarks/results/compile_cache.jsonl | -]

The default command is ``scalelab quickstart --quiet``; ``--smoke`` is a 512-interaction
``scalelab train`` on CartPole-v1 with every program kept however quick its compile
(``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.jsonl import emit
from benchmarks.roofline import source_commit

DEFAULT_OUT = Path(__file__).parent / "results" / "compile_cache.jsonl"
QUICKSTART = ["quickstart", "--quiet"]
SMOKE = ["train", "--env", "CartPole-v1", "--interactions", "512", "--num-envs", "4",
         "--rollout-length", "32", "--num-minibatches", "2", "--update-epochs", "1",
         "--updates-per-chunk", "2", "--width", "0.25", "--quiet"]


def _cache_size(cache: Path) -> tuple[int, int]:
    files = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    return len(files), sum(p.stat().st_size for p in files)


def run_once(argv: list[str], out: Path, cache: Path, every_program: bool = False
             ) -> subprocess.CompletedProcess:
    """``scalelab *argv --out out`` in a subprocess with ``SCALELAB_XLA_CACHE=cache`` (and
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0`` if `every_program`); raises if it fails."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["SCALELAB_XLA_CACHE"] = str(cache)
    if every_program:
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return subprocess.run([sys.executable, "-m", "scalelab.cli", *argv, "--out", str(out)],
                          env=env, check=True, capture_output=True, text=True)


def run_twice(argv: list[str], work: Path, every_program: bool = False) -> dict[str, Any]:
    """Run ``scalelab *argv --out work/run{1,2}`` twice against the cache ``work/cache``."""
    row: dict[str, Any] = {"command": ["scalelab", *argv],
                           "loadavg_1m_before": round(os.getloadavg()[0], 2)}
    for i in (1, 2):
        t = time.perf_counter()
        run_once(argv, work / f"run{i}", work / "cache", every_program)
        row[f"wall_s_{i}"] = round(time.perf_counter() - t, 2)
        row[f"cache_entries_{i}"], row[f"cache_bytes_{i}"] = _cache_size(work / "cache")
    row["speedup"] = round(row["wall_s_1"] / row["wall_s_2"], 3)
    row["metrics_identical"] = ((work / "run1" / "metrics.csv").read_bytes()
                                == (work / "run2" / "metrics.csv").read_bytes())
    row["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a tiny scalelab train instead")
    ap.add_argument("--out", default=str(DEFAULT_OUT),
                    help="JSON-lines file to append to ('-': print only)")
    ap.add_argument("--work", type=Path, default=None,
                    help="keep the cache and both runs here (default: a temporary directory)")
    args = ap.parse_args(argv)
    work = (contextlib.nullcontext(args.work) if args.work is not None
            else tempfile.TemporaryDirectory(prefix="scalelab-compile-cache-"))
    with work as path:
        row = run_twice(SMOKE if args.smoke else QUICKSTART, Path(path), every_program=args.smoke)
    row = {"bench": "compile_cache", **row, "commit": source_commit(),
           "cpu_count": os.cpu_count()}
    emit(row, None if args.out == "-" else Path(args.out))
    return row


if __name__ == "__main__":
    main()
