"""Fused CPU kernels for the deep linear step (``linear_step.cc``), built on first use.

The hand-written gradient of :mod:`dlnjax.networks.linear` needs, per step, one read-only pass over the
weights from the output side and one read-modify-write pass from the input side. XLA on a CPU
runs each 10-row product and each rank-10 update as separate kernels that re-read the weights
and leave one of the two cores idle; ``linear_step.cc`` does each pass as one loop over the rows
of every layer, split over XLA's intra-op thread pool, and updates the weights in place. Under
``vmap``, when the batch fills the pool, each thread runs whole members instead (no
synchronisation between layers); the numbers are the same bits either way.

The library is compiled once per machine with the system C++ compiler against the XLA FFI headers
that ship with jaxlib (``c++ -O3 -march=native``), into ``$DLNJAX_CACHE`` (default
``~/.cache/dlnjax``), under a name that hashes the source, the jaxlib version, the compiler
flags and the CPU's instruction-set flags (a cache shared by different cluster nodes never
hands a node code it cannot run). One library is built per (precision, output width) on first
use, a few seconds each (all 32 template instantiations in one library took ~20-40 s);
:func:`available` builds (float32, 10 outputs) to check the toolchain. The build is written atomically. When there is no compiler
or the build fails, :func:`available` is False, :func:`reason` says why, and
:mod:`dlnjax.networks.linear` uses its XLA path (``engine='auto'``) or raises (``engine='native'``).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import jaxlib

Array = Any
log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("linear_step.cc")
MAX_RANK = 16  # the output widths the kernels are compiled for
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC")
TARGETS = {
    ("top_down", "float32"): "DlnjaxTopDownF32",
    ("top_down", "float64"): "DlnjaxTopDownF64",
    ("bottom_up", "float32"): "DlnjaxBottomUpF32",
    ("bottom_up", "float64"): "DlnjaxBottomUpF64",
    ("top_down_stacked", "float32"): "DlnjaxTopDownStackedF32",
    ("top_down_stacked", "float64"): "DlnjaxTopDownStackedF64",
    ("bottom_up_stacked", "float32"): "DlnjaxBottomUpStackedF32",
    ("bottom_up_stacked", "float64"): "DlnjaxBottomUpStackedF64",
}

_state: dict[str, Any] = {"tried": False, "ok": False, "reason": "not built yet", "path": None}


def cache_dir() -> Path:
    return Path(os.environ.get("DLNJAX_CACHE", Path.home() / ".cache" / "dlnjax")) / "native"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str | None:
    for c in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if c and shutil.which(c):
            return c
    return None


def library_path(compiler: str, source: Path = SOURCE, defines: Sequence[str] = ()) -> Path:
    h = hashlib.sha256()
    for part in (source.read_bytes(), jaxlib.__version__.encode(), " ".join(FLAGS).encode(), compiler.encode(),
                 _cpu_flags().encode(), platform.machine().encode(), " ".join(defines).encode()):
        h.update(part)
        h.update(b"\0")
    tag = "".join("-" + d.split("=")[-1] for d in defines)
    return cache_dir() / f"{source.stem}{tag}-{h.hexdigest()[:16]}.so"


def build(source: Path = SOURCE, defines: Sequence[str] = ()) -> Path:
    """Compile the kernels of ``source`` (default ``linear_step.cc``; also ``compressed_run.cc``,
    see :mod:`dlnjax.networks.kernels.native.compressed`) if not cached and return the shared library's path.
    ``defines`` (``NAME=VALUE``, passed as ``-D``) select a variant; each has its own cached library."""
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (tried $CXX, c++, g++, clang++): install one, e.g. apt-get install g++")
    path = library_path(compiler, source, defines)
    if path.exists():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    except OSError:  # a read-only home (some clusters): build in the temporary directory instead
        path = Path(tempfile.gettempdir()) / f"dlnjax-native-{os.getuid() if hasattr(os, 'getuid') else 0}" / path.name
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    log.info("dlnjax.networks.kernels.native: compiling %s once for this machine into %s", source.name, path)
    os.close(fd)
    cmd = [compiler, *FLAGS, *(f"-D{d}" for d in defines), "-I", jax.ffi.include_dir(), str(source), "-o", tmp]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            tail = "\n".join(res.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"compiling {source.name} failed ({' '.join(cmd)}):\n{tail}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# the variant available() builds to check that the toolchain works: float32, 10 outputs (the digits)
PROBE = ("float32", 10)
_variants: dict[tuple[str, int], dict[str, str]] = {}  # (dtype, output width) -> kind -> FFI target
_lock = threading.Lock()
_load_lock = threading.Lock()


def load_variant(source: Path, dtype: str, rank: int) -> tuple[Any, Path]:
    """``(library, path)`` of ``source`` built (if not cached) for one precision and rank
    (``-DDLNJAX_FLOAT=32|64 -DDLNJAX_RANK=r``) and loaded."""
    bits = {"float32": 32, "float64": 64}[str(dtype)]
    path = build(source, defines=(f"DLNJAX_FLOAT={bits}", f"DLNJAX_RANK={int(rank)}"))
    return ctypes.cdll.LoadLibrary(str(path)), path


def register(name: str, lib: Any, symbol: str) -> None:
    """Register ``lib``'s FFI handler ``symbol`` as the CPU target ``name``; a vmapped batch
    sharded over several devices stays sharded (each device runs its members)."""
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    jax.ffi.register_ffi_target_as_batch_partitionable(name)


def _variant(dtype: str, rank: int) -> dict[str, str]:
    """The FFI targets (``top_down``, ``bottom_up``) for ``dtype`` and output width ``rank``: one
    library per variant, built and registered on first use (one template instantiation compiles
    in seconds, all of them together in ~20 s). Thread-safe."""
    key = (str(dtype), int(rank))
    with _lock:
        if key not in _variants:
            lib, path = load_variant(SOURCE, *key)
            names = {}
            for (kind, dt), symbol in TARGETS.items():
                if dt == key[0]:
                    names[kind] = f"dlnjax_{symbol}_r{key[1]}"
                    register(names[kind], lib, symbol)
            _variants[key] = names
            if key == PROBE:
                _state["path"] = str(path)
        return _variants[key]


def load_once(state: dict, lock: Any, probe: Any) -> None:
    """Build and register a native library once per process: ``probe()`` builds the variant that
    checks the toolchain; ``state`` records whether it worked and why not. One thread builds, the
    others wait for it (depths run in threads: a second caller must not read "not built yet"
    while the first is compiling). ``DLNJAX_NATIVE=0`` turns the kernels off."""
    with lock:
        if state["tried"]:
            return
        try:
            if os.environ.get("DLNJAX_NATIVE", "1") == "0":
                state["reason"] = "disabled by DLNJAX_NATIVE=0"
                return
            try:
                probe()
            except Exception as e:  # noqa: BLE001 - any failure means: use the XLA path, and say why
                state["reason"] = f"{type(e).__name__}: {e}"
                return
            state.update(ok=True, reason="ok")
        finally:
            state["tried"] = True


def _load() -> None:
    load_once(_state, _load_lock, lambda: _variant(*PROBE))


def status_functions(load: Any, state: Any, what: str) -> tuple[Any, Any]:
    """``(available, reason)`` of a lazily built native library: ``available()`` builds and
    registers it on the first call (``load``) and says whether that worked; ``reason()`` says why
    not ("ok" when it did). ``state()`` returns the module's current status dict (looked up at
    each call, so a test may replace it). Shared by the linear-step kernels and the compressed
    runner."""

    def available() -> bool:
        load()
        return bool(state()["ok"])

    def reason() -> str:
        load()
        return str(state()["reason"])

    available.__doc__ = f"True when the {what} is built and registered (builds it on the first call)."
    reason.__doc__ = "Why available() is False (\"ok\" when it is True)."
    return available, reason


available, reason = status_functions(_load, lambda: _state, "library of fused kernels")


def fused_shapes_ok(weights: Sequence[Array]) -> bool:
    """The shapes and dtypes every fused engine handles (native and Pallas): float32/float64, at
    least two layers, the output side narrow with 1..16 units (every figure of the paper)."""
    weights = tuple(weights)
    if len(weights) < 2:
        return False
    dt = jnp.dtype(weights[0].dtype)
    if dt not in (jnp.dtype("float32"), jnp.dtype("float64")) or any(jnp.dtype(w.dtype) != dt for w in weights):
        return False
    if any(len(w.shape) != 2 for w in weights):
        return False
    r = weights[-1].shape[0]
    return 1 <= r <= MAX_RANK and r <= weights[0].shape[1]


def supports(weights: Sequence[Array]) -> bool:
    """The shapes and dtypes the kernels handle (:func:`fused_shapes_ok`) on a CPU backend."""
    return jax.default_backend() == "cpu" and fused_shapes_ok(weights)


def _target(kind: str, dtype: Any, rank: int) -> str:
    if not available():
        raise RuntimeError(f"dlnjax.networks.kernels.native: the fused kernels are not available: {reason()}")
    if not 1 <= int(rank) <= MAX_RANK:
        raise ValueError(f"dlnjax.networks.kernels.native: output width must be 1..{MAX_RANK}, got {rank}")
    return _variant(jnp.dtype(dtype).name, int(rank))[kind]


def top_down(weights: Sequence[Array]) -> list[Array]:
    """``[P_1, ..., P_{N-1}]`` with ``P_l = W_N ... W_l`` (r x n_l); ``P_1`` is the end-to-end map.

    Under ``vmap`` the kernel receives the whole batch (``vmap_method='broadcast_all'``) and loops
    over its members itself, in place, with no copies of the weights."""
    weights = tuple(weights)
    dt = weights[0].dtype
    r = weights[-1].shape[0]
    shapes = [jax.ShapeDtypeStruct((r, w.shape[1]), dt) for w in weights[:-1]]
    call = jax.ffi.ffi_call(_target("top_down", dt, r), shapes, vmap_method="broadcast_all")
    return list(call(*weights))


def bottom_up(lr: Array, g: Array, ps: Sequence[Array], weights: Sequence[Array]) -> tuple[Array, ...]:
    """``W_l - lr * P_{l+1}^T M_l`` for every layer, with ``M_1 = g``, ``M_{l+1} = M_l W_l^T`` (old
    weights), ``ps = [P_2, ..., P_{N-1}]`` (``P_N = W_N`` is read from the weights) and
    ``P_{N+1} = I``. The results alias the weights: updated in place when XLA can (donated or
    loop-carried buffers), else XLA copies first."""
    weights = tuple(weights)
    n = len(weights)
    dt = weights[0].dtype
    shapes = [jax.ShapeDtypeStruct(w.shape, dt) for w in weights]
    aliases = {2 + (n - 2) + l: l for l in range(n)}
    call = jax.ffi.ffi_call(_target("bottom_up", dt, g.shape[-2]), shapes, vmap_method="broadcast_all",
                            input_output_aliases=aliases)
    return tuple(call(jnp.asarray(lr, dt), g, *ps, *weights))


def top_down_stacked(first: Array, hidden: Array, last: Array, n_hidden: Array) -> list[Array]:
    """:func:`top_down` on the stacked layout (:class:`dlnjax.networks.linear.Stacked`): ``[P_1,
    Pstack]`` with ``Pstack[j] = P_{j+2}`` for the ``n_hidden`` used layers (the rest of the stack
    is not written). ``n_hidden`` is an int32 (traced): one compiled program for every depth."""
    dt = last.dtype
    r = last.shape[-2]
    shapes = [jax.ShapeDtypeStruct(last.shape[:-2] + (r, first.shape[-1]), dt),
              jax.ShapeDtypeStruct(hidden.shape[:-2] + (r, hidden.shape[-1]), dt)]
    call = jax.ffi.ffi_call(_target("top_down_stacked", dt, r), shapes, vmap_method="broadcast_all")
    return list(call(first, hidden, last, jnp.asarray(n_hidden, jnp.int32)))


def bottom_up_stacked(lr: Array, g: Array, pst: Array, first: Array, hidden: Array, last: Array,
                      n_hidden: Array) -> tuple[Array, Array, Array]:
    """:func:`bottom_up` on the stacked layout: the updated ``(first, hidden, last)``, aliasing
    the inputs (the stack's unused layers are left as they are)."""
    dt = last.dtype
    shapes = [jax.ShapeDtypeStruct(a.shape, dt) for a in (first, hidden, last)]
    call = jax.ffi.ffi_call(_target("bottom_up_stacked", dt, g.shape[-2]), shapes, vmap_method="broadcast_all",
                            input_output_aliases={3: 0, 4: 1, 5: 2})
    return tuple(call(jnp.asarray(lr, dt), g, pst, first, hidden, last, jnp.asarray(n_hidden, jnp.int32)))
