"""Finds, downloads, verifies and reads the MNIST data set (npz or IDX files)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# Published sha256 of the Keras file above; only downloads are checked against it (a file the
# user provides is validated by content, since re-saved copies differ byte-wise).
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
NPZ_NAME = "mnist.npz"
SPLITS = ("train", "test")
# IDX file stems per array; each may also be gzipped (`<stem>.gz`).
IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
_DOWNLOAD_TIMEOUT_S = 60.0

_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def cache_dir() -> Path:
    """The user cache folder: `$XDG_CACHE_HOME/scalelab`, else `~/.cache/scalelab`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scalelab"


def load_mnist(
    path: str | os.PathLike | None = None,
    *,
    url: str = MNIST_URL,
    sha256: str = MNIST_SHA256,
) -> dict[str, np.ndarray]:
    """Load MNIST as read-only NumPy arrays, finding or downloading it first.

    Looks, in order, at `path`, `$SCALELAB_MNIST`, `$SCALELAB_DATA` and the user cache folder
    (see `cache_dir`). Each place may be an `.npz` file (keys x_train, y_train, x_test, y_test)
    or a folder holding `mnist.npz` or the four IDX files (`train-images-idx3-ubyte` etc.,
    plain or `.gz`). An explicit `path` or `$SCALELAB_MNIST` that does not exist is an error
    (no silent fallback). If no place has the data, downloads `url` into the cache folder and
    checks its sha256 against `sha256` before keeping it.

    Returns a dict with x_train (n_train, 28, 28) uint8, y_train (n_train,) int32 in [0, 10),
    x_test (n_test, 28, 28) uint8 and y_test (n_test,) int32. The arrays are cached per source
    file within the process and are not writeable.

    Raises FileNotFoundError when no data can be found or downloaded (the message lists every
    place looked at), ValueError for malformed data or a checksum mismatch.
    """
    looked: list[str] = []
    for origin, place, required in _candidates(path):
        source = _resolve(place)
        if source is not None:
            return _load_cached(source)
        if required:
            raise FileNotFoundError(
                f"MNIST data not found at {place} (given by {origin}); expected an .npz file or "
                f"a folder holding {NPZ_NAME} or the IDX files {sorted(IDX_STEMS.values())}"
            )
        looked.append(f"{place} ({origin})")
    target = cache_dir() / NPZ_NAME
    try:
        _download(url, target, sha256)
    except (OSError, http.client.HTTPException) as err:
        places = "\n  ".join(looked)
        raise FileNotFoundError(
            f"MNIST data not found and the download failed.\nLooked at:\n  {places}\n"
            f"Download of {url} failed: {err}\n"
            "Provide the data in one of these ways:\n"
            "  - pass load_mnist(path=...) (an .npz file or a folder of IDX files);\n"
            "  - set SCALELAB_MNIST=/path/to/mnist.npz (or to a folder of IDX files);\n"
            f"  - set SCALELAB_DATA to a folder holding {NPZ_NAME};\n"
            f"  - download {url} yourself to {target}."
        ) from err
    return _load_cached(_resolve(target))


def _candidates(path: str | os.PathLike | None) -> list[tuple[str, Path, bool]]:
    """(origin, place, must_exist) in lookup order."""
    places: list[tuple[str, Path, bool]] = []
    if path is not None:
        places.append(("the path argument", Path(path), True))
    if os.environ.get("SCALELAB_MNIST"):
        places.append(("$SCALELAB_MNIST", Path(os.environ["SCALELAB_MNIST"]), True))
    if os.environ.get("SCALELAB_DATA"):
        places.append(("$SCALELAB_DATA", Path(os.environ["SCALELAB_DATA"]), False))
    places.append(("the user cache folder", cache_dir(), False))
    return [(origin, place.expanduser(), required) for origin, place, required in places]


def _resolve(place: Path) -> tuple[str, tuple[Path, ...]] | None:
    """The readable source at `place`: ("npz", (file,)) or ("idx", (4 files)), else None."""
    if place.is_file():
        return "npz", (place,)
    if not place.is_dir():
        return None
    if (place / NPZ_NAME).is_file():
        return "npz", (place / NPZ_NAME,)
    files = []
    for stem in IDX_STEMS.values():
        found = [place / name for name in (stem, stem + ".gz") if (place / name).is_file()]
        if not found:
            return None
        files.append(found[0])
    return "idx", tuple(files)


def _load_cached(source: tuple[str, tuple[Path, ...]]) -> dict[str, np.ndarray]:
    kind, files = source
    # Keyed on modification times too, so a replaced file is re-read.
    key = (kind, tuple((str(f.resolve()), f.stat().st_mtime_ns) for f in files))
    if key not in _CACHE:
        arrays = _read_npz(files[0]) if kind == "npz" else _read_idx_set(files)
        _CACHE[key] = _validate(arrays, ", ".join(str(f) for f in files))
    return _CACHE[key]


def _read_npz(file: Path) -> dict[str, np.ndarray]:
    try:
        npz = np.load(file, allow_pickle=False)
    except (OSError, EOFError, ValueError) as err:
        raise ValueError(f"{file}: not a readable MNIST .npz file ({err})") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{file}: not an .npz archive (a single .npy array?)")
    with npz:
        missing = [k for k in IDX_STEMS if k not in npz.files]
        if missing:
            raise ValueError(
                f"{file}: npz lacks arrays {missing} (has {sorted(npz.files)}); expected "
                f"{list(IDX_STEMS)}"
            )
        try:
            return {k: npz[k] for k in IDX_STEMS}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
            raise ValueError(f"{file}: corrupt MNIST .npz file ({err})") from err


def _read_idx_set(files: tuple[Path, ...]) -> dict[str, np.ndarray]:
    return {name: read_idx(file) for name, file in zip(IDX_STEMS, files, strict=True)}


def read_idx(file: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or gzipped) of unsigned bytes into an array of its shape.

    Layout: two zero bytes, a type byte (0x08 = uint8), the number of dimensions d, then d
    big-endian uint32 sizes, then the data in C order.
    """
    file = Path(file)
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"{file}: cannot read IDX file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{file}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ValueError(f"{file}: IDX type byte is {raw[2]:#04x}; only unsigned bytes (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{file}: IDX header truncated")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise ValueError(
            f"{file}: IDX header says shape {shape} ({size} bytes) but holds "
            f"{len(raw) - header} data bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _validate(arrays: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Check shapes, dtypes and label range; return read-only uint8 images, int32 labels."""
    out: dict[str, np.ndarray] = {}
    for split in SPLITS:
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            raise ValueError(
                f"{where}: x_{split} must be uint8 of shape (n, 28, 28), got {x.dtype} {x.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
            raise ValueError(
                f"{where}: y_{split} must be integers of shape ({x.shape[0]},) to match "
                f"x_{split}, got {y.dtype} {y.shape}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"{where}: x_{split} is empty")
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            raise ValueError(
                f"{where}: y_{split} labels must lie in [0, {NUM_CLASSES}), got range "
                f"[{y.min()}, {y.max()}]"
            )
        out[f"x_{split}"] = np.ascontiguousarray(x)
        out[f"y_{split}"] = y.astype(np.int32)
    for arr in out.values():
        arr.flags.writeable = False
    return out


def _download(url: str, target: Path, sha256: str) -> None:
    """Fetch `url` to `target` atomically, keeping it only if its sha256 matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"scalelab: downloading MNIST from {url} to {target}", file=sys.stderr)
    fd, tmp_name = tempfile.mkstemp(prefix=".mnist-", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(
            url, timeout=_DOWNLOAD_TIMEOUT_S
        ) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256.lower():
            raise ValueError(
                f"checksum mismatch for {url}: sha256 {digest.hexdigest()}, expected {sha256}; "
                "the downloaded file was deleted"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
