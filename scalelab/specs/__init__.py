"""The sweep specs shipped with scalelab as package data, found by name via importlib.resources.

`scalelab sweep plan quickstart` (or `sweep run mnist_width --out DIR`) takes a shipped spec's
name where a path is expected; a path to an existing file always wins. The schema is documented
in the repository's `sweeps/README.md`. The specs are installed as plain files (wheel, `pip
install .`, editable), so their resources are file system paths.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from scalelab.sweep.spec import SpecError

__all__ = ["names", "path", "resolve"]

_SUFFIX = ".toml"


def _directory() -> Path:
    return Path(str(files(__name__)))


def names() -> tuple[str, ...]:
    """The shipped specs' names (file stems), sorted: e.g. "quickstart", "mnist_width"."""
    return tuple(sorted(p.stem for p in _directory().glob(f"*{_SUFFIX}")))


def path(name: str) -> Path:
    """The file of the shipped spec `name` ("quickstart" or "quickstart.toml").

    Raises KeyError naming the shipped specs when there is none of that name.
    """
    stem = name.removesuffix(_SUFFIX)
    if stem not in names():
        raise KeyError(f"{name!r} is not a shipped spec (shipped: {', '.join(names())})")
    return _directory() / f"{stem}{_SUFFIX}"


def resolve(spec: str | Path) -> Path:
    """The spec file meant by a command-line argument: `spec` itself when it is an existing file,
    else the shipped spec of that name.

    Raises SpecError (as for a spec that cannot be read) naming the shipped specs when it is
    neither.
    """
    given = Path(spec)
    if given.is_file():
        return given
    try:
        return path(str(spec))
    except KeyError:
        raise SpecError(f"{spec}: no such spec file, nor a shipped spec (shipped: "
                        f"{', '.join(names())})") from None
