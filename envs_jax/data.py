"""Finds, downloads, verifies and reads the MNIST data set (npz or IDX files)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# Published sha256 of the Keras file above (its bytes). Re-saved copies differ byte-wise, so
# files are otherwise recognised by MNIST_CONTENT_SHA256.
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
# `content_digest` of the canonical set (60000 train and 10000 test digits in the official
# order); the same for the .npz and for the four IDX files, plain or gzipped.
MNIST_CONTENT_SHA256 = "ccf4305003c9ef5a766265f98323e5d55592d7ac5e4a3b901c13d0212ed0b36e"
CANONICAL_SIZES = {"train": 60000, "test": 10000}
ALLOW_CUSTOM_ENV = "SCALELAB_MNIST_ALLOW_CUSTOM"
NPZ_NAME = "mnist.npz"
SPLITS = ("train", "test")
# IDX file stems per array, in content-digest order; each may also be gzipped (`<stem>.gz`).
IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
_DOWNLOAD_TIMEOUT_S = 60.0
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_ALLOW_HINT = (
    f"To train on other data on purpose, pass allow_custom=True (in a sweep spec: "
    f"`allow_custom = true` under [env.kwargs]) or set {ALLOW_CUSTOM_ENV}=1."
)


class MnistDataError(ValueError):
    """MNIST data that cannot be used: unreadable, malformed, or not the canonical set.

    The message names the file(s) and says what to do.
    """


class MnistNotFoundError(MnistDataError, FileNotFoundError):
    """No MNIST data at a place that was given, and none found or downloadable elsewhere."""


class CustomMnistWarning(UserWarning):
    """Data that differs from canonical MNIST is in use, as allowed by `allow_custom`."""


@dataclass(frozen=True)
class _Place:
    """Where to look, why (`origin`), whether it must hold the data, and how to fix it."""

    origin: str
    path: Path
    required: bool
    remedy: str


@dataclass(frozen=True)
class _Source:
    """Data files found: one .npz, or the four IDX files in IDX_STEMS order."""

    kind: Literal["npz", "idx"]
    files: tuple[Path, ...]

    @property
    def where(self) -> str:
        return ", ".join(str(f) for f in self.files)


@dataclass(frozen=True)
class _Loaded:
    """Validated arrays, their `content_digest`, and whether they are canonical MNIST."""

    arrays: dict[str, np.ndarray]
    digest: str
    canonical: bool


_CACHE: dict[tuple, _Loaded] = {}


def cache_dir() -> Path:
    """The user cache folder: `$XDG_CACHE_HOME/scalelab`, else `~/.cache/scalelab`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scalelab"


def load_mnist(
    path: str | os.PathLike | None = None,
    *,
    allow_custom: bool = False,
    url: str = MNIST_URL,
    sha256: str = MNIST_SHA256,
) -> dict[str, np.ndarray]:
    """Load MNIST as read-only NumPy arrays, finding or downloading it first, and verify it.

    Looks, in order, at `path`, `$SCALELAB_MNIST`, `$SCALELAB_DATA` and the user cache folder
    (see `cache_dir`). Each place may be an `.npz` file (keys x_train, y_train, x_test, y_test)
    or a folder holding `mnist.npz` or the four IDX files (`train-images-idx3-ubyte` etc.,
    plain or `.gz`). An explicit `path` or `$SCALELAB_MNIST` that does not hold the data is an
    error (no silent fallback). If no place has the data, downloads `url` into the cache folder
    and checks its sha256 against `sha256` before keeping it.

    Whatever file is used, its decoded content must be canonical MNIST (`content_digest` equal
    to MNIST_CONTENT_SHA256, or the file byte-identical to the published download), unless
    `allow_custom` is True or `$SCALELAB_MNIST_ALLOW_CUSTOM` is 1: then other data passes the
    shape and label checks only, with a `CustomMnistWarning` naming the file.

    Returns a dict with x_train (n_train, 28, 28) uint8, y_train (n_train,) int32 in [0, 10),
    x_test (n_test, 28, 28) uint8 and y_test (n_test,) int32. The arrays are cached per source
    file within the process and are not writeable.

    Raises MnistNotFoundError (a FileNotFoundError) when no data can be found or downloaded,
    MnistDataError (a ValueError) for an unreadable, malformed or non-canonical file; both
    messages name the file and what to do.
    """
    allowed = allow_custom or custom_allowed_by_env()
    looked: list[str] = []
    for place in _places(path):
        source = _resolve(place.path)
        if source is not None:
            return _use(source, place, allowed)
        if place.required:
            raise _not_found(place)
        looked.append(f"{place.path} ({place.origin})")
    target = cache_dir() / NPZ_NAME
    _download_or_explain(url, target, sha256, looked)
    return _use(_Source("npz", (target,)), _cache_place(f"a download of {url}"), allowed)


def custom_allowed_by_env() -> bool:
    """Whether `$SCALELAB_MNIST_ALLOW_CUSTOM` allows non-canonical data (1/true/yes/on)."""
    value = os.environ.get(ALLOW_CUSTOM_ENV, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(
            f"${ALLOW_CUSTOM_ENV} must be 1 or 0 (or true/false, yes/no, on/off), got {value!r}"
        )
    return value in _TRUE


def content_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 identifying a data set by its values, whatever file format held them.

    Hashes, for x_train, y_train, x_test, y_test in that order, the name and shape as text
    (`"x_train(60000, 28, 28);"`) and then the values as uint8 bytes in C order. Labels must
    already lie in [0, 10) so that the uint8 cast is exact.
    """
    digest = hashlib.sha256()
    for name in IDX_STEMS:
        values = np.ascontiguousarray(arrays[name], dtype=np.uint8)
        digest.update(f"{name}{values.shape};".encode())
        digest.update(values.data)
    return digest.hexdigest()


def _places(path: str | os.PathLike | None) -> list[_Place]:
    """The places to look at, in lookup order."""
    places: list[_Place] = []
    if path is not None:
        places.append(_Place(
            "the path argument", Path(path).expanduser(), True,
            "Pass the path of a good copy of mnist.npz (or of a folder holding it or the four "
            "IDX files)."))
    if os.environ.get("SCALELAB_MNIST"):
        places.append(_Place(
            "$SCALELAB_MNIST", Path(os.environ["SCALELAB_MNIST"]).expanduser(), True,
            "Point SCALELAB_MNIST at a good copy of mnist.npz (or at a folder holding it or "
            "the four IDX files), or unset it to use the user cache folder."))
    if os.environ.get("SCALELAB_DATA"):
        places.append(_Place(
            "$SCALELAB_DATA", Path(os.environ["SCALELAB_DATA"]).expanduser(), False,
            "Put a good copy of mnist.npz into that folder, or unset SCALELAB_DATA."))
    places.append(_cache_place("the user cache folder"))
    return places


def _cache_place(origin: str) -> _Place:
    return _Place(
        origin, cache_dir(), False,
        f"Delete it: scalelab then downloads a fresh copy (checked against its pinned sha256) "
        f"into {cache_dir()}; or set SCALELAB_MNIST to a good copy.")


def _resolve(place: Path) -> _Source | None:
    """The data files at `place` (a file, or a folder holding them), else None."""
    if place.is_file():
        return _Source("npz", (place,))
    if not place.is_dir():
        return None
    if (place / NPZ_NAME).is_file():
        return _Source("npz", (place / NPZ_NAME,))
    files = []
    for stem in IDX_STEMS.values():
        found = [place / name for name in (stem, stem + ".gz") if (place / name).is_file()]
        if not found:
            return None
        files.append(found[0])
    return _Source("idx", tuple(files))


def _not_found(place: _Place) -> MnistNotFoundError:
    problem = (
        "is a folder that holds neither " + NPZ_NAME + " nor all four IDX files "
        f"{sorted(IDX_STEMS.values())} (plain or .gz)"
        if place.path.is_dir() else "does not exist"
    )
    return MnistNotFoundError(
        f"MNIST data not found: {place.path} (given by {place.origin}) {problem}. "
        f"{place.remedy}"
    )


def _use(source: _Source, place: _Place, allowed: bool) -> dict[str, np.ndarray]:
    """Load `source` (cached) and enforce that it is canonical MNIST unless `allowed`."""
    try:
        loaded = _load_cached(source)
    except MnistDataError as err:
        raise MnistDataError(f"{err} (found via {place.origin}). {place.remedy}") from err
    if not loaded.canonical:
        message = _not_canonical(source, place, loaded)
        if not allowed:
            raise MnistDataError(f"{message} {place.remedy} {_ALLOW_HINT}")
        warnings.warn(
            f"{message} Using it as custom data, as allowed by allow_custom=True or "
            f"{ALLOW_CUSTOM_ENV}.",
            CustomMnistWarning,
            stacklevel=3,
        )
    return loaded.arrays


def _is_canonical(source: _Source, digest: str) -> bool:
    """Content digest pinned, or the file is byte-identical to the published download."""
    if digest == MNIST_CONTENT_SHA256:
        return True
    # The pinned content digest was taken from a re-saved copy; the Keras file is canonical by
    # its own published digest, whatever its decoding. Hashing its 11 MB costs ~15 ms.
    if source.kind != "npz":
        return False
    return hashlib.sha256(source.files[0].read_bytes()).hexdigest() == MNIST_SHA256


def _not_canonical(source: _Source, place: _Place, loaded: _Loaded) -> str:
    sizes = {split: loaded.arrays[f"y_{split}"].shape[0] for split in SPLITS}
    return (
        f"{source.where} (found via {place.origin}) differs from canonical MNIST: it holds "
        f"{sizes['train']} training and {sizes['test']} test digits (canonical: "
        f"{CANONICAL_SIZES['train']} and {CANONICAL_SIZES['test']}) and its content sha256 is "
        f"{loaded.digest}, not {MNIST_CONTENT_SHA256}, so images or labels were changed, "
        "removed or reordered."
    )


def _load_cached(source: _Source) -> _Loaded:
    # Keyed on size and modification time too, so a replaced file is read and verified again.
    key = (
        source.kind,
        tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in source.files),
    )
    if key not in _CACHE:
        raw = _read_npz(source.files[0]) if source.kind == "npz" else _read_idx_set(source.files)
        arrays = _validate(raw, source.where)
        digest = content_digest(arrays)
        _CACHE[key] = _Loaded(arrays, digest, _is_canonical(source, digest))
    return _CACHE[key]


def _read_npz(file: Path) -> dict[str, np.ndarray]:
    _check_zip_magic(file)
    try:
        npz = np.load(file, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise _unreadable(
            file, f"it is a damaged zip archive, truncated or corrupt ({err})"
        ) from err
    with npz:
        missing = [k for k in IDX_STEMS if k not in npz.files]
        if missing:
            raise MnistDataError(
                f"{file}: npz lacks arrays {missing} (has {sorted(npz.files)}); expected "
                f"{list(IDX_STEMS)}"
            )
        try:
            return {k: npz[k] for k in IDX_STEMS}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
            raise _unreadable(file, f"an array in it is truncated or corrupt ({err})") from err


def _check_zip_magic(file: Path) -> None:
    """Refuse what cannot be an .npz (an .npz is a zip archive) before numpy guesses at it."""
    try:
        with open(file, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise _unreadable(file, f"it cannot be opened ({err})") from err
    if not head:
        raise _unreadable(file, "it is empty (0 bytes)")
    if head[:4] not in _ZIP_MAGICS:
        raise _unreadable(file, f"it is not a zip archive; it begins with {head!r}")


def _unreadable(file: Path, problem: str) -> MnistDataError:
    return MnistDataError(
        f"{file} is not a readable MNIST .npz file: {problem}. An .npz is a zip archive of the "
        "arrays x_train, y_train, x_test and y_test (as numpy.savez writes it); a truncated "
        "file usually comes from an interrupted download or copy"
    )


def _read_idx_set(files: tuple[Path, ...]) -> dict[str, np.ndarray]:
    return {name: read_idx(file) for name, file in zip(IDX_STEMS, files, strict=True)}


def read_idx(file: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or gzipped) of unsigned bytes into an array of its shape.

    Layout: two zero bytes, a type byte (0x08 = uint8), the number of dimensions d, then d
    big-endian uint32 sizes, then the data in C order. Raises MnistDataError naming the file.
    """
    file = Path(file)
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise MnistDataError(f"{file}: cannot read IDX file ({err})") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise MnistDataError(f"{file}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise MnistDataError(
            f"{file}: IDX type byte is {raw[2]:#04x}; only unsigned bytes (0x08)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MnistDataError(f"{file}: IDX header truncated")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise MnistDataError(
            f"{file}: IDX header says shape {shape} ({size} bytes) but holds "
            f"{len(raw) - header} data bytes (truncated?)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _validate(arrays: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Check shapes, dtypes and label range; return read-only uint8 images, int32 labels."""
    out: dict[str, np.ndarray] = {}
    for split in SPLITS:
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            raise MnistDataError(
                f"{where}: x_{split} must be uint8 of shape (n, 28, 28), got {x.dtype} {x.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
            raise MnistDataError(
                f"{where}: y_{split} must be integers of shape ({x.shape[0]},) to match "
                f"x_{split}, got {y.dtype} {y.shape}"
            )
        if x.shape[0] == 0:
            raise MnistDataError(f"{where}: x_{split} is empty")
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            raise MnistDataError(
                f"{where}: y_{split} labels must lie in [0, {NUM_CLASSES}), got range "
                f"[{y.min()}, {y.max()}]"
            )
        out[f"x_{split}"] = np.ascontiguousarray(x)
        out[f"y_{split}"] = y.astype(np.int32)
    for arr in out.values():
        arr.flags.writeable = False
    return out


def _download_or_explain(url: str, target: Path, sha256: str, looked: list[str]) -> None:
    """Download into the cache, or raise MnistNotFoundError listing places and remedies."""
    try:
        _download(url, target, sha256)
    except (OSError, http.client.HTTPException) as err:
        places = "\n  ".join(looked)
        raise MnistNotFoundError(
            f"MNIST data not found and the download failed.\nLooked at:\n  {places}\n"
            f"Download of {url} failed: {err}\n"
            "Provide the data in one of these ways:\n"
            "  - pass load_mnist(path=...) (an .npz file or a folder of IDX files);\n"
            "  - set SCALELAB_MNIST=/path/to/mnist.npz (or to a folder of IDX files);\n"
            f"  - set SCALELAB_DATA to a folder holding {NPZ_NAME};\n"
            f"  - download {url} yourself to {target}."
        ) from err


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
            raise MnistDataError(
                f"checksum mismatch for {url}: sha256 {digest.hexdigest()}, expected {sha256}; "
                "the downloaded file was deleted. Try again later, or download MNIST yourself "
                "and set SCALELAB_MNIST to it."
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
