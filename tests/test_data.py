"""Tests for envs_jax.data: finding, reading, validating, verifying and downloading MNIST."""

import contextlib
import functools
import gzip
import hashlib
import http.server
import socket
import struct
import threading
import warnings

import numpy as np
import pytest
from mnist_helpers import canonical_mnist_path

from envs_jax import data
from envs_jax.data import (
    ALLOW_CUSTOM_ENV,
    CustomMnistWarning,
    MnistDataError,
    MnistNotFoundError,
    content_digest,
    load_mnist,
    read_idx,
)

# Most tests read small synthetic sets, which are custom data by definition.
pytestmark = pytest.mark.filterwarnings("ignore::envs_jax.data.CustomMnistWarning")
load_custom = functools.partial(load_mnist, allow_custom=True)


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
        raw = gzip.compress(raw, compresslevel=1)
    path.write_bytes(raw)


def write_idx_dir(folder, arrays, gz):
    folder.mkdir(parents=True, exist_ok=True)
    for name, stem in data.IDX_STEMS.items():
        write_idx(folder / stem, arrays[name], gz)
    return folder


def assert_same(loaded, arrays):
    assert sorted(loaded) == sorted(arrays)
    for name, expected in arrays.items():
        # np.array_equal: assert_array_equal takes ~1 s on the 47 MB of canonical images.
        assert np.array_equal(loaded[name], expected), name
        assert loaded[name].dtype == (np.uint8 if name.startswith("x") else np.int32)
        assert not loaded[name].flags.writeable


@pytest.fixture(scope="module")
def canonical_path():
    return canonical_mnist_path()


@pytest.fixture(scope="module")
def canonical(canonical_path):
    """The canonical arrays as stored in that file."""
    with np.load(canonical_path) as npz:
        return {name: npz[name] for name in data.IDX_STEMS}


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No data variables set; the user cache folder is an empty temp folder."""
    monkeypatch.delenv("SCALELAB_MNIST", raising=False)
    monkeypatch.delenv("SCALELAB_DATA", raising=False)
    monkeypatch.delenv(ALLOW_CUSTOM_ENV, raising=False)
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
    first = load_custom(path)
    assert_same(first, arrays)
    assert load_custom(str(path)) is first


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder(clean, gz):
    arrays = synthetic(seed=1)
    folder = write_idx_dir(clean / "idx", arrays, gz)
    assert_same(load_custom(folder), arrays)
    np.testing.assert_array_equal(
        read_idx(folder / (data.IDX_STEMS["y_test"] + (".gz" if gz else ""))), arrays["y_test"]
    )


def test_lookup_order(clean, monkeypatch):
    by_var, by_data, by_cache, by_arg = (synthetic(seed=s) for s in range(4))
    write_npz(data.cache_dir() / "mnist.npz", by_cache)
    assert_same(load_custom(), by_cache)
    write_npz(clean / "datadir" / "mnist.npz", by_data)
    monkeypatch.setenv("SCALELAB_DATA", str(clean / "datadir"))
    assert_same(load_custom(), by_data)
    monkeypatch.setenv("SCALELAB_MNIST", str(write_npz(clean / "v.npz", by_var)))
    assert_same(load_custom(), by_var)
    assert_same(load_custom(write_npz(clean / "arg.npz", by_arg)), by_arg)


def test_scalelab_data_may_hold_idx_files(clean, monkeypatch):
    arrays = synthetic(seed=5)
    monkeypatch.setenv("SCALELAB_DATA", str(write_idx_dir(clean / "d", arrays, gz=True)))
    assert_same(load_custom(), arrays)


@pytest.mark.parametrize("how", ["argument", "variable"])
@pytest.mark.parametrize("what", ["missing file", "folder without data"])
def test_explicit_place_without_data_is_an_error(clean, monkeypatch, how, what):
    place = clean / "nowhere.npz"
    if what == "folder without data":
        place.mkdir()
    write_npz(data.cache_dir() / "mnist.npz", synthetic())  # must not be used as a fallback
    if how == "variable":
        monkeypatch.setenv("SCALELAB_MNIST", str(place))
    with pytest.raises(MnistNotFoundError) as info:
        load_custom(place if how == "argument" else None)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(place) in message
    assert ("does not exist" if what == "missing file" else "holds neither") in message
    assert ("SCALELAB_MNIST" if how == "variable" else "path argument") in message


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


def _write_truncated(path):
    np.savez_compressed(path, **synthetic())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _write_corrupt_member(path):
    np.savez_compressed(path, **synthetic())
    raw = bytearray(path.read_bytes())
    raw[200:260] = bytes(60)  # inside the deflated x_train member; the zip index stays intact
    path.write_bytes(bytes(raw))


def _write_npy(path):
    with open(path, "wb") as f:
        np.save(f, synthetic()["x_train"])


@pytest.mark.parametrize(
    ("write", "problem"),
    [
        (_write_truncated, "damaged zip archive, truncated or corrupt"),
        (_write_corrupt_member, "truncated or corrupt"),
        (lambda p: p.write_text("x_train,y_train\n0,5\n"), "not a zip archive; it begins with"),
        (lambda p: p.write_bytes(b""), r"empty \(0 bytes\)"),
        (_write_npy, "not a zip archive"),
    ],
    ids=["truncated", "corrupt member", "text", "empty", "npy"],
)
@pytest.mark.parametrize("how", ["argument", "variable", "cache"])
def test_unreadable_file_error_names_path_and_remedy(clean, monkeypatch, write, problem, how):
    path = data.cache_dir() / "mnist.npz" if how == "cache" else clean / "broken.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path)
    if how == "variable":
        monkeypatch.setenv("SCALELAB_MNIST", str(path))
    with pytest.raises(MnistDataError, match=problem) as info:
        load_custom(path if how == "argument" else None, url=closed_port_url())
    message = str(info.value)
    assert message.startswith(f"{path} is not a readable MNIST .npz file")
    remedy = {"argument": "Pass the path of a good copy", "variable": "Point SCALELAB_MNIST",
              "cache": "Delete it"}[how]
    assert remedy in message and "\n" not in message


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
        loaded = load_custom(url=f"{base}/mnist.npz", sha256=digest)
    assert_same(loaded, arrays)
    cached = data.cache_dir() / "mnist.npz"
    assert cached.read_bytes() == served.read_bytes()
    assert sorted(p.name for p in data.cache_dir().iterdir()) == ["mnist.npz"]
    # Found in the cache now: no server, no download.
    assert_same(load_custom(url=closed_port_url()), arrays)
    # A download is verified by content too.
    with pytest.raises(MnistDataError, match=f"{cached} .*differs from canonical MNIST"):
        load_mnist(url=closed_port_url())


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


def _flip_one_pixel(arrays):
    images = arrays["x_train"].copy()
    images[123, 14, 14] ^= 1
    return {**arrays, "x_train": images}


def _zero_images(arrays):
    return {**arrays, "x_train": np.zeros_like(arrays["x_train"]),
            "x_test": np.zeros_like(arrays["x_test"])}


def _shuffle_labels(arrays):
    return {**arrays, "y_train": np.random.default_rng(0).permutation(arrays["y_train"])}


def _first_100(arrays):
    return {name: values[:100] for name, values in arrays.items()}


def assert_refused_as_not_canonical(file, **load_kwargs):
    """load_mnist(**load_kwargs) refuses `file` as not canonical; returns the message."""
    with pytest.raises(MnistDataError, match="differs from canonical MNIST") as info:
        load_mnist(**load_kwargs)
    message = str(info.value)
    assert message.startswith(str(file)) and "allow_custom=True" in message
    assert ALLOW_CUSTOM_ENV in message and "[env.kwargs]" not in message.split(":")[0]
    return message


def test_canonical_file_verifies_without_warning(clean, canonical_path, canonical):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(load_mnist(canonical_path), canonical)
    assert content_digest(canonical) == data.MNIST_CONTENT_SHA256
    assert {n: len(canonical[f"y_{n}"]) for n in data.SPLITS} == data.CANONICAL_SIZES


@pytest.mark.parametrize("gz", [False, True])
def test_idx_copy_of_canonical_verifies(clean, canonical, gz):
    folder = write_idx_dir(clean / "idx", canonical, gz)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(load_mnist(folder), canonical)


@pytest.mark.parametrize(
    "tamper", [_zero_images, _shuffle_labels, _first_100],
    ids=["all-zero images", "shuffled labels", "100-image subset"],
)
def test_changed_canonical_data_is_refused(clean, canonical, tamper):
    path = write_npz(clean / "changed.npz", tamper(canonical))
    message = assert_refused_as_not_canonical(path, path=path)
    sizes = "100 training and 100 test" if tamper is _first_100 else "60000 training and 10000"
    assert sizes in message


@pytest.mark.parametrize("how", ["argument", "variable", "cache"])
def test_one_changed_pixel_is_refused_wherever_found(clean, monkeypatch, canonical, how):
    folder = data.cache_dir() if how == "cache" else clean
    path = write_npz(folder / "mnist.npz", _flip_one_pixel(canonical))
    if how == "variable":
        monkeypatch.setenv("SCALELAB_MNIST", str(path))
    message = assert_refused_as_not_canonical(
        path, path=path if how == "argument" else None, url=closed_port_url()
    )
    if how == "cache":
        assert "Delete it" in message


@pytest.mark.parametrize("how", ["argument", "variable"])
def test_allow_custom_accepts_a_small_set_and_warns(clean, monkeypatch, how):
    arrays = synthetic(seed=9)
    path = write_npz(clean / "custom.npz", arrays)
    if how == "variable":
        monkeypatch.setenv(ALLOW_CUSTOM_ENV, "1")
    with pytest.warns(CustomMnistWarning, match=f"{path} .*differs from canonical MNIST"):
        loaded = load_mnist(path, allow_custom=how == "argument")
    assert_same(loaded, arrays)
    # The permission is per call: the in-process cache does not carry it over.
    monkeypatch.delenv(ALLOW_CUSTOM_ENV, raising=False)
    assert_refused_as_not_canonical(path, path=path)


def test_allow_custom_variable_must_be_a_flag(clean, monkeypatch):
    monkeypatch.setenv(ALLOW_CUSTOM_ENV, "maybe")
    with pytest.raises(ValueError, match=f"\\${ALLOW_CUSTOM_ENV} must be 1 or 0"):
        load_mnist(write_npz(clean / "a.npz", synthetic()))


def test_published_download_bytes_count_as_canonical(clean, monkeypatch):
    path = write_npz(clean / "keras.npz", synthetic(seed=11))
    monkeypatch.setattr(data, "MNIST_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_mnist(path)
