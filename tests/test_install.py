"""A non-editable install ships the sweep specs: `scalelab quickstart` finds its spec from the
installed package, run from outside the checkout (issue 15)."""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what the distribution is built from (pyproject's packages and readme); not tests or run dirs
SOURCES = ("pyproject.toml", "README.md", "scalelab", "envs_jax", "fitting")


def _builds_wheels_offline() -> bool:
    """Whether this environment's setuptools builds a wheel without build isolation: 70.1 and
    later have bdist_wheel built in (the dev extra asks for it); older ones need `wheel`."""
    major, minor = (int(p) for p in importlib.metadata.version("setuptools").split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _copy_sources(dest: Path) -> Path:
    """The distribution's sources copied to `dest`, so that building leaves the checkout alone."""
    dest.mkdir()
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def _install(src: Path, target: Path) -> None:
    """`pip install SRC --target TARGET`: a regular (non-editable) install, offline and without
    dependencies (the running environment provides them)."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
           "--no-build-isolation", "--no-cache-dir", "--target", str(target), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(not _builds_wheels_offline(),
                    reason='setuptools < 70.1 without wheel: pip install -e ".[dev]"')
def test_quickstart_entry_point_finds_its_spec_in_a_non_editable_install(tmp_path):
    target = tmp_path / "site"
    _install(_copy_sources(tmp_path / "src"), target)
    spec = target / "scalelab" / "specs" / "quickstart.toml"
    assert spec.is_file(), "the specs are not package data"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([str(target / "bin" / "scalelab"), "quickstart", "--dry-run"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"spec: {spec}" in done.stdout
    assert "quickstart" in done.stdout and "group" in done.stdout
    assert not any(elsewhere.iterdir()), "a dry run wrote files"
