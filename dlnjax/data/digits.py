"""MNIST-format digit sets: the embedded 10,000 digits, MNIST and Fashion-MNIST.

Root directory of ``mnist`` / ``fashion_mnist`` (first that is set):
``root`` argument (config ``data.root``) > ``$DLNJAX_DATA_ROOT/<name>`` >
``~/.cache/dlnjax/<name>``. Each holds the four standard files, gzipped or not. For
``fashion_mnist``, Debian's package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``) is used when the root lacks the files. Missing files
are downloaded only with ``download=True`` (config ``data.download=true``), from the usual
public mirrors in turn, checked against the published MD5 sums and written atomically;
otherwise the error says which files to put where. No torch or tensorflow involved.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from dlnjax.data.core import Dataset
from dlnjax.data.idx import IdxError, read_idx
from dlnjax.io import atomic_write_bytes

ENV_ROOT = "DLNJAX_DATA_ROOT"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}


ENV_MIRRORS = "DLNJAX_MIRRORS"


def mirrors(name: str) -> tuple[str, ...]:
    """Download mirrors of ``name``: ``$DLNJAX_MIRRORS`` (comma-separated base URLs, e.g. an
    internal mirror or a ``file://`` folder) when set, else the public ones."""
    env = os.environ.get(ENV_MIRRORS, "").strip()
    if env:
        return tuple(m.strip() if m.strip().endswith("/") else m.strip() + "/" for m in env.split(",") if m.strip())
    return MIRRORS[name]


class DataError(RuntimeError):
    """Missing, corrupt or undownloadable data; the message says which file and what to do."""


def default_root(name: str, root: str | os.PathLike | None = None) -> Path:
    if root:
        return Path(os.path.expanduser(str(root)))
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(os.path.expanduser(env)) / name
    return Path.home() / ".cache" / "dlnjax" / name


def _find(directory: Path, stem: str) -> Path | None:
    for cand in (directory / f"{stem}.gz", directory / stem):
        if cand.exists():
            return cand
    return None


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


Fetcher = Callable[[str, float], bytes]


def _urlopen(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - fixed https/http mirrors
        expected = r.headers.get("Content-Length")
        payload = r.read()
    if expected is not None and len(payload) != int(expected):
        raise OSError(f"truncated download ({len(payload)} of {expected} bytes)")
    return payload


def download(name: str, directory: Path, fetch: Fetcher = _urlopen, timeout: float = 60.0) -> None:
    """Download the missing files of ``name`` into ``directory`` (mirrors in turn, MD5-checked)."""
    directory.mkdir(parents=True, exist_ok=True)
    for fname, md5 in MD5[name].items():
        if _find(directory, fname[:-3]) is not None:
            continue
        errors = []
        for mirror in mirrors(name):
            url = mirror + fname
            try:
                payload = fetch(url, timeout)
            except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as e:
                errors.append(f"{url}: {e}")
                continue
            got = hashlib.md5(payload, usedforsecurity=False).hexdigest()
            if got != md5:
                errors.append(f"{url}: checksum mismatch (md5 {got}, expected {md5})")
                continue
            atomic_write_bytes(directory / fname, payload)
            break
        else:
            raise DataError(
                f"could not download {fname} for {name}: " + "; ".join(errors)
                + f". Put the file in {directory} by hand (or set data.root / ${ENV_ROOT})."
            )


def _missing_message(name: str, directory: Path, missing: list[str]) -> str:
    extra = ""
    if name == "fashion_mnist":
        extra = f" or install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist, files in {DEBIAN_FASHION}),"
    return (
        f"{name}: missing {', '.join(m + '[.gz]' for m in missing)} in {directory}. "
        f"Put the four IDX files there, point data.root (or ${ENV_ROOT}) at a folder holding them,{extra} "
        f"or run with data.download=true to fetch them from {mirrors(name)[0]}."
    )


def locate(name: str, root: str | os.PathLike | None = None, allow_download: bool = False, fetch: Fetcher = _urlopen) -> dict[str, Path]:
    """Paths of the four IDX files of ``name`` ('mnist' or 'fashion_mnist')."""
    if name not in MD5:
        raise DataError(f"unknown digit set {name!r} (allowed: {', '.join(MD5)})")
    directory = default_root(name, root)
    dirs = [directory]
    if name == "fashion_mnist":
        dirs.append(DEBIAN_FASHION)
    for d in dirs:
        found = {stem: _find(d, stem) for stem in FILES}
        if all(found.values()):
            return found  # type: ignore[return-value]
    if allow_download:
        download(name, directory, fetch=fetch)
        return {stem: _find(directory, stem) for stem in FILES}  # type: ignore[misc]
    missing = [stem for stem in FILES if _find(directory, stem) is None]
    raise DataError(_missing_message(name, directory, missing))


def checksum_status(name: str, paths: dict[str, Path]) -> str:
    """'published' when every file is a gzipped original with its published MD5, else 'unverified'.

    MD5 sums are enforced on download. Local copies are accepted when they parse as valid
    IDX files (magic, dimensions, lengths, labels), because legitimate copies differ in
    their compression (Debian recompresses Fashion-MNIST) or are subsets (mnist-10k);
    the run's summary records which it was.
    """
    for stem, path in paths.items():
        if path.suffix != ".gz" or _md5(path) != MD5[name][f"{stem}.gz"]:
            return "unverified"
    return "published"


def _embedded_paths() -> dict[str, Path]:
    base = Path(str(resources.files("dlnjax.data") / "embedded"))
    return {stem: base / f"{stem}.gz" for stem in FILES}


def _read_split(paths: dict[str, Path], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        images = read_idx(paths[f"{prefix}-images-idx3-ubyte"], expect_ndim=3)
        labels = read_idx(paths[f"{prefix}-labels-idx1-ubyte"], expect_ndim=1)
    except IdxError as e:
        raise DataError(f"{e}. Replace the file (data.download=true fetches a fresh copy).") from None
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{paths[f'{prefix}-images-idx3-ubyte']}: {images.shape[0]} images but "
            f"{paths[f'{prefix}-labels-idx1-ubyte']} has {labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{paths[f'{prefix}-labels-idx1-ubyte']}: label {labels.max()} out of range 0-9")
    return images, labels


def one_hot(labels: np.ndarray, n_classes: int = 10) -> np.ndarray:
    return np.eye(n_classes)[labels.astype(int)]


def load_digits(
    name: str = "embedded",
    root: str | os.PathLike | None = None,
    download: bool = False,
    n_train: int | None = None,
) -> Dataset:
    """Pixels in [0, 1] as rows (P, 784) and one-hot labels (P, 10); train and test splits.

    ``name``: 'embedded' (10,000 real MNIST digits shipped in the package, 8,000 train /
    2,000 test), 'mnist' or 'fashion_mnist' (60,000 / 10,000). ``n_train`` keeps the first
    ``n_train`` training digits.
    """
    if name == "embedded":
        paths = _embedded_paths()
    else:
        paths = locate(name, root, allow_download=download)
    xtr, ltr = _read_split(paths, "train")
    xte, lte = _read_split(paths, "t10k")
    if n_train is not None:
        if n_train > xtr.shape[0]:
            raise DataError(f"{name}: n_train={n_train} exceeds the {xtr.shape[0]} training digits available")
        xtr, ltr = xtr[:n_train], ltr[:n_train]
    flat = lambda a: a.reshape(a.shape[0], -1).astype(np.float64) / 255.0  # noqa: E731
    info = {"files": {k: str(v) for k, v in paths.items()}, "n_test": int(xte.shape[0])}
    if name != "embedded":
        info["checksums"] = checksum_status(name, paths)
    return Dataset(name, flat(xtr), one_hot(ltr), flat(xte), one_hot(lte), info=info)
