"""Data: IDX reader/writer, digit loaders and their errors, downloads, synthetic sets, preprocessing."""

import gzip
import hashlib

import numpy as np
import pytest

from dlnjax.data import digits, hierarchy, teacher
from dlnjax.data.digits import DataError, load_digits, locate
from dlnjax.data.idx import IdxError, read_idx, write_idx
from dlnjax.data.preprocess import preprocess
from helpers import TOL_ULPS, assert_close

F64 = "float64"  # the datasets are NumPy float64
# whitening divides by the square roots of eigenvalues down to 1e-6 of the largest (preprocess's
# rel_tol), which amplifies float64 rounding far beyond TOL's: ~2e-11 measured on the embedded digits
WHITE_ATOL = {"float64": 1e-8}


def test_idx_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, imgs)
        np.testing.assert_array_equal(read_idx(tmp_path / name, expect_ndim=3), imgs)
    assert (tmp_path / "a-idx3-ubyte.gz").read_bytes()[:2] == b"\x1f\x8b"


@pytest.mark.parametrize(
    "mangle,message",
    [
        (lambda b: b"\x00\x00\x07\x03" + b[4:], "bad magic"),
        (lambda b: b[:-10], "truncated"),
        (lambda b: b + b"xx", "trailing"),
        (lambda b: b[:6], "truncated header"),
        (lambda b: b[:2], "too short"),
    ],
)
def test_idx_rejects_corrupt_files(tmp_path, mangle, message):
    good = tmp_path / "good"
    write_idx(good, np.zeros((3, 4, 4), np.uint8))
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(mangle(good.read_bytes()))
    with pytest.raises(IdxError, match=message) as e:
        read_idx(bad)
    assert str(bad) in str(e.value)


def test_idx_rejects_truncated_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05" + bytes(5))[:-8])
    with pytest.raises(IdxError, match="gzip"):
        read_idx(p)


def test_idx_wrong_dimensions(tmp_path):
    write_idx(tmp_path / "l", np.zeros(5, np.uint8))
    with pytest.raises(IdxError, match="dimensions"):
        read_idx(tmp_path / "l", expect_ndim=3)


def test_embedded_digits():
    ds = load_digits("embedded")
    assert ds.x.shape == (8000, 784) and ds.y.shape == (8000, 10)
    assert ds.x_test.shape == (2000, 784)
    assert 0.0 <= ds.x.min() and ds.x.max() == 1.0
    np.testing.assert_array_equal(ds.y.sum(1), 1.0)
    counts = ds.y.sum(0) + ds.y_test.sum(0)
    np.testing.assert_array_equal(counts, [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978])  # shared/data README


def _fake_set(directory, n=12):
    rng = np.random.default_rng(1)
    for prefix, m in (("train", n), ("t10k", n // 2)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (m, 28, 28), dtype=np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, m, dtype=np.uint8))


def test_root_from_config_and_environment(tmp_path, monkeypatch):
    _fake_set(tmp_path / "mnist")
    ds = load_digits("mnist", root=tmp_path / "mnist")
    assert ds.x.shape == (12, 784) and ds.info["checksums"] == "unverified"
    monkeypatch.setenv(digits.ENV_ROOT, str(tmp_path))
    assert load_digits("mnist").x.shape == (12, 784)


def test_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(DataError) as e:
        load_digits("mnist", root=tmp_path / "nowhere")
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path / "nowhere") in msg and "data.download=true" in msg


def test_fashion_falls_back_to_debian_location(tmp_path, monkeypatch):
    deb = tmp_path / "deb"
    _fake_set(deb)
    monkeypatch.setattr(digits, "DEBIAN_FASHION", deb)
    paths = locate("fashion_mnist", root=tmp_path / "empty")
    assert all(p.parent == deb for p in paths.values())
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        monkeypatch.setattr(digits, "DEBIAN_FASHION", tmp_path / "none")
        locate("fashion_mnist", root=tmp_path / "empty")


def test_corrupt_local_file_is_named(tmp_path):
    _fake_set(tmp_path)
    f = tmp_path / "train-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:20])
    with pytest.raises(DataError) as e:
        load_digits("mnist", root=tmp_path)
    assert str(f) in str(e.value)


def _payloads():
    out = {}
    rng = np.random.default_rng(2)
    for stem, arr in (
        ("train-images-idx3-ubyte", rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)),
        ("train-labels-idx1-ubyte", rng.integers(0, 10, 4, dtype=np.uint8)),
        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)),
        ("t10k-labels-idx1-ubyte", rng.integers(0, 10, 2, dtype=np.uint8)),
    ):
        import struct

        raw = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
        out[stem + ".gz"] = gzip.compress(raw, mtime=0)
    return out


def test_download_verifies_checksums_and_writes_atomically(tmp_path, monkeypatch):
    payloads = _payloads()
    monkeypatch.setitem(digits.MD5, "mnist", {k: hashlib.md5(v).hexdigest() for k, v in payloads.items()})
    calls = []

    def fetch(url, timeout):
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        if url.startswith(digits.MIRRORS["mnist"][0]) and name.startswith("train-images"):
            return payloads[name][:-5]  # first mirror sends a truncated file
        return payloads[name]

    paths = locate("mnist", root=tmp_path, allow_download=True, fetch=fetch)
    assert all(p.exists() for p in paths.values())
    assert not list(tmp_path.glob(".*tmp"))
    assert any(u.startswith(digits.MIRRORS["mnist"][1]) for u in calls)  # fell back to the next mirror
    assert digits.checksum_status("mnist", paths) == "published"


def test_failed_download_raises_clear_error(tmp_path, monkeypatch):
    def fetch(url, timeout):
        raise OSError("network unreachable")

    with pytest.raises(DataError) as e:
        locate("mnist", root=tmp_path, allow_download=True, fetch=fetch)
    assert "network unreachable" in str(e.value) and str(tmp_path) in str(e.value)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_broken_connection_is_a_clear_error(tmp_path):
    import http.client

    def fetch(url, timeout):
        raise http.client.IncompleteRead(b"partial", 100)

    with pytest.raises(DataError, match="IncompleteRead|could not download"):
        locate("mnist", root=tmp_path, allow_download=True, fetch=fetch)


def test_checksum_mismatch_is_rejected(tmp_path):
    def fetch(url, timeout):
        return b"not the file"

    with pytest.raises(DataError, match="checksum mismatch"):
        locate("mnist", root=tmp_path, allow_download=True, fetch=fetch)


def test_hierarchy_dataset():
    ds = hierarchy(levels=5, n_features=1000, flip_prob=0.1, seed=0)
    assert ds.x.shape == (32, 32) and ds.y.shape == (32, 1000)
    np.testing.assert_array_equal(ds.x, np.eye(32))
    assert set(np.unique(ds.y)) == {-1.0, 1.0}
    # siblings (one edge apart twice) agree more often than items in different halves of the tree
    agree_sib = np.mean(ds.y[0] == ds.y[1])
    agree_far = np.mean(ds.y[0] == ds.y[31])
    p_sib = 1 - 2 * 0.1 * 0.9  # two independent edges: same iff 0 or 2 flips
    assert agree_sib == pytest.approx(p_sib, abs=0.05)  # sampling over 1000 features (std ~0.012)
    assert agree_far < agree_sib
    assert np.array_equal(hierarchy(seed=3).y, hierarchy(seed=3).y)


def test_teacher_dataset():
    ds = teacher([5.0, 2.0, 0.5], 6, 4, n_examples=9, seed=1)
    assert_close(ds.x.T @ ds.x, np.eye(6), F64)
    sv = np.linalg.svd(ds.y.T @ ds.x, compute_uv=False)
    assert_close(sv[:3], [5.0, 2.0, 0.5], rtol=TOL_ULPS[F64]["rtol"])
    with pytest.raises(ValueError):
        teacher([1.0] * 5, 4, 4)


@pytest.mark.parametrize("kind", ["raw", "centred", "whitened"])
def test_preprocessing(kind):
    ds = preprocess(load_digits("embedded"), kind)
    if kind == "centred":
        assert_close(ds.x.mean(0), 0.0, F64)
    if kind == "whitened":
        k = ds.info["n_whitened_dims"]
        assert 500 < k < 784  # constant border pixels dropped
        assert_close(ds.x.T @ ds.x, np.eye(k), F64, atol=WHITE_ATOL[F64])
        assert ds.x_test.shape[1] == k
