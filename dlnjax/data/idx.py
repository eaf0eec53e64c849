"""Reader and writer for the IDX format of MNIST and Fashion-MNIST (plain or gzip).

Layout (big-endian): two zero bytes, a type byte (0x08 = uint8), a byte with the number of
dimensions, one uint32 per dimension, then the data. Every check names the file and what is
wrong with it; :class:`IdxError` is raised for any malformed file.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from dlnjax.io import atomic_write_bytes

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


class IdxError(ValueError):
    """A missing, corrupt or truncated IDX file."""


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise IdxError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise IdxError(f"{path}: corrupt or truncated gzip stream ({e}); delete it and download it again") from None
    return raw


def read_idx(path: str | os.PathLike, expect_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain, detected from its content) into a NumPy array."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES:
        raise IdxError(f"{path}: bad magic number 0x{data[:4].hex()} (expected 0x0000TTDD with type 08 for uint8)")
    if ndim == 0 or (expect_ndim is not None and ndim != expect_ndim):
        raise IdxError(f"{path}: has {ndim} dimensions, expected {expect_ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = len(data) - header
    if body != expected:
        kind = "truncated" if body < expected else "has trailing bytes"
        raise IdxError(f"{path}: {kind}: header says {shape} ({expected} bytes of data), file holds {body}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write uint8/int8 ``array`` as IDX, atomically (temporary file, then rename)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    if array.dtype not in _CODES:
        raise ValueError(f"write_idx supports uint8 and int8, got {array.dtype}")
    payload = struct.pack(">HBB", 0, _CODES[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)
    atomic_write_bytes(path, payload)
