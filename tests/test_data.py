"""Tests for envs_jax.data: finding, reading, validating and downloading MNIST."""

import contextlib
import functools
import gzip
import hashlib
import http.server
import socket
import struct
import threading

import numpy as np
import pytest

from envs_jax import data
from envs_jax.data import load_mnist, read_idx


def synthetic(seed: int = 0, n_train: int = 50, n_test: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }


def write_npz(path, arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def write_idx(path, array, gz):
    """Encode by hand: 0, 0, type 0x08, ndim, big-endian sizes, bytes."""
    raw = struct.pack(f">BBBB{array.ndim}I", 0, 0, 8, array.ndim, *array.shape)
    raw += array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def write_idx_dir(folder, arrays, gz):
    folder.mkdir(parents=True, exist_ok=True)
    for name, stem in data.IDX_STEMS.items():
        write_idx(folder / stem, arrays[name], gz)
    return folder


def assert_same(loaded, arrays):
    assert sorted(loaded) == sorted(arrays)
    for name, expected in arrays.items():
        np.testing.assert_array_equal(loaded[name], expected)
        assert loaded[name].dtype == (np.uint8 if name.startswith("x") else np.int32)
        assert not loaded[name].flags.writeable


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No data variables set; the user cache folder is an empty temp folder."""
    monkeypatch.delenv("SCALELAB_MNIST", raising=False)
    monkeypatch.delenv("SCALELAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist.npz"


@contextlib.contextmanager
def file_server(folder):
    """Serve `folder` over HTTP on 127.0.0.1; yields the base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_npz_from_path_is_cached_and_read_only(clean):
    arrays = synthetic()
    path = write_npz(clean / "a.npz", arrays)
    first = load_mnist(path)
    assert_same(first, arrays)
    assert load_mnist(str(path)) is first


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder(clean, gz):
    arrays = synthetic(seed=1)
    folder = write_idx_dir(clean / "idx", arrays, gz)
    assert_same(load_mnist(folder), arrays)
    np.testing.assert_array_equal(
        read_idx(folder / (data.IDX_STEMS["y_test"] + (".gz" if gz else ""))), arrays["y_test"]
    )


def test_lookup_order(clean, monkeypatch):
    by_var, by_data, by_cache, by_arg = (synthetic(seed=s) for s in range(4))
    write_npz(data.cache_dir() / "mnist.npz", by_cache)
    assert_same(load_mnist(), by_cache)
    write_npz(clean / "datadir" / "mnist.npz", by_data)
    monkeypatch.setenv("SCALELAB_DATA", str(clean / "datadir"))
    assert_same(load_mnist(), by_data)
    monkeypatch.setenv("SCALELAB_MNIST", str(write_npz(clean / "v.npz", by_var)))
    assert_same(load_mnist(), by_var)
    assert_same(load_mnist(write_npz(clean / "arg.npz", by_arg)), by_arg)


def test_scalelab_data_may_hold_idx_files(clean, monkeypatch):
    arrays = synthetic(seed=5)
    monkeypatch.setenv("SCALELAB_DATA", str(write_idx_dir(clean / "d", arrays, gz=True)))
    assert_same(load_mnist(), arrays)


@pytest.mark.parametrize("how", ["argument", "variable"])
def test_explicit_place_that_is_missing_is_an_error(clean, monkeypatch, how):
    missing = clean / "nowhere.npz"
    write_npz(data.cache_dir() / "mnist.npz", synthetic())  # must not be used as a fallback
    if how == "variable":
        monkeypatch.setenv("SCALELAB_MNIST", str(missing))
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_mnist(missing if how == "argument" else None)


def _bad(**changes):
    arrays = synthetic()
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (_bad(y_train=np.full(50, 10, np.uint8)), r"y_train labels must lie in \[0, 10\)"),
        (_bad(y_test=np.full(20, -1, np.int64)), r"y_test labels must lie in \[0, 10\)"),
        (_bad(x_train=np.zeros((50, 28, 27), np.uint8)), r"x_train must be uint8"),
        (_bad(x_test=np.zeros((20, 28, 28), np.float32)), r"x_test must be uint8"),
        (_bad(y_train=np.zeros(49, np.uint8)), r"y_train must be integers of shape \(50,\)"),
        (_bad(y_test=np.zeros(20, np.float32)), r"y_test must be integers"),
        (_bad(x_test=None), r"lacks arrays \['x_test'\]"),
        (_bad(x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.uint8)), "empty"),
    ],
)
def test_malformed_npz(clean, arrays, message):
    with pytest.raises(ValueError, match=message):
        load_mnist(write_npz(clean / "bad.npz", arrays))


def test_not_an_npz(clean):
    path = clean / "junk.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="not a readable MNIST .npz"):
        load_mnist(path)


def test_malformed_idx(clean):
    folder = write_idx_dir(clean / "idx", synthetic(), gz=False)
    images = folder / data.IDX_STEMS["x_train"]
    images.write_bytes(images.read_bytes()[:-1])
    with pytest.raises(ValueError, match="holds 39199 data bytes"):
        load_mnist(folder)
    images.write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="only unsigned bytes"):
        read_idx(images)
    images.write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(ValueError, match="bad magic"):
        read_idx(images)


def test_download_verified_into_cache(clean):
    arrays = synthetic(seed=7)
    served = write_npz(clean / "www" / "mnist.npz", arrays)
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    with file_server(served.parent) as base:
        loaded = load_mnist(url=f"{base}/mnist.npz", sha256=digest)
    assert_same(loaded, arrays)
    cached = data.cache_dir() / "mnist.npz"
    assert cached.read_bytes() == served.read_bytes()
    assert sorted(p.name for p in data.cache_dir().iterdir()) == ["mnist.npz"]
    # Found in the cache now: no server, no download.
    assert_same(load_mnist(url=closed_port_url()), arrays)


def test_checksum_mismatch_keeps_nothing(clean):
    served = write_npz(clean / "www" / "mnist.npz", synthetic())
    with file_server(served.parent) as base, pytest.raises(ValueError, match="checksum mismatch"):
        load_mnist(url=f"{base}/mnist.npz", sha256="0" * 64)
    assert list(data.cache_dir().iterdir()) == []


@pytest.mark.parametrize("server", ["closed port", "404"])
def test_offline_error_lists_places_and_remedies(clean, monkeypatch, server):
    monkeypatch.setenv("SCALELAB_DATA", str(clean / "datadir"))
    if server == "404":
        (clean / "www").mkdir()
        with file_server(clean / "www") as base:
            url = f"{base}/mnist.npz"
            with pytest.raises(FileNotFoundError) as info:
                load_mnist(url=url)
    else:
        url = closed_port_url()
        with pytest.raises(FileNotFoundError) as info:
            load_mnist(url=url)
    message = str(info.value)
    for expected in [str(clean / "datadir"), str(data.cache_dir()), url, "SCALELAB_MNIST",
                     "SCALELAB_DATA", "path="]:
        assert expected in message
    assert not (data.cache_dir() / "mnist.npz").exists()


def test_pinned_download_source():
    # The Keras file's published digest; a typo here would reject every real download.
    assert data.MNIST_URL.endswith("/tf-keras-datasets/mnist.npz")
    assert data.MNIST_SHA256 == (
        "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
    )
