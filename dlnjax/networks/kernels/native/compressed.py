"""A fused native CPU runner for the compressed engine (``compressed_run.cc``), built on first use.

:func:`make_member_runner` has the signature and the semantics of
:func:`dlnjax.networks.compressed.make_member_runner`, but the whole ``while`` loop of a member (every step
until it crosses, diverges or reaches its limit: the loss check before each update, crossing,
divergence, spikes, records and the update of every core) runs inside one XLA FFI call. At
rank 10 XLA's per-op overhead on the tiny 10 x 10 products dominates a step (~40 us plus ~4 us
per hidden layer on 2 cores); the native loop does the same arithmetic without it.

One library is built per (precision, rank) on first use (:func:`target`; ~5 s each, where the
32 instantiations together took ~40 s); :func:`available` builds the main job's (float32, rank 10)
to check the toolchain. The library is compiled and cached like :mod:`dlnjax.networks.kernels.native`'s kernels (same compiler, flags,
cache directory and ``DLNJAX_NATIVE=0`` switch). When it cannot be built, :func:`available` is
False and :func:`reason` says why: the caller then uses the XLA runner.

Results agree with the XLA runner to rounding, not bit for bit (the n-side sums are taken in
another order): in float64 ~1e-13 relative over hundreds of steps away from the edge of
stability; where the loss spikes, rounding differences grow step by step as in any two
implementations. Under ``jax.vmap`` the call
receives the whole batch (``broadcast_all``) and runs each member on one thread, members spread
over XLA's intra-op pool: a member's numbers do not depend on the batch or the thread count.
A member that stops (crosses or diverges) keeps its cores untouched by that step (the XLA runner
applies a zero-rate step there, which is the same unless the gradient is not finite).
"""

from __future__ import annotations

import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlnjax.networks import compressed as _xla
from dlnjax.networks.kernels.native import SOURCE as _LINEAR_SOURCE
from dlnjax.networks.kernels.native import load_once, load_variant, register, status_functions

Array = Any

SOURCE = _LINEAR_SOURCE.with_name("compressed_run.cc")
MAX_RANK = 16
SYMBOLS = {"float32": "DlnjaxCompressedRunF32", "float64": "DlnjaxCompressedRunF64"}
# the variant available() builds to check that the toolchain works: the main job's (float32, rank 10)
PROBE = ("float32", 10)

_state: dict[str, Any] = {"tried": False, "ok": False, "reason": "not built yet", "path": None}
_variants: dict[tuple[str, int], str] = {}  # (dtype, rank) -> its registered FFI target
_lock = threading.Lock()
_load_lock = threading.Lock()


def target(dtype: str, rank: int) -> str:
    """The FFI target of the runner for ``dtype`` (float32 or float64) and rank ``rank``, built
    (one library per variant: one template instantiation compiles in ~5 s, all 32 in ~40 s) and
    registered on first use. Thread-safe: depths trace their runners in threads."""
    key = (str(dtype), int(rank))
    with _lock:
        if key not in _variants:
            lib, path = load_variant(SOURCE, *key)
            name = f"dlnjax_{SYMBOLS[key[0]]}_r{key[1]}"
            register(name, lib, SYMBOLS[key[0]])
            _variants[key] = name
            if key == PROBE:
                _state["path"] = str(path)
        return _variants[key]


def _load() -> None:
    load_once(_state, _load_lock, lambda: target(*PROBE))


available, reason = status_functions(_load, lambda: _state, "compressed runner")


def supports(cores: _xla.Cores) -> bool:
    """The cores the runner handles: float32/float64 throughout, rank 1..16, on a CPU backend."""
    dt = jnp.dtype(cores.first.dtype)
    return (
        jax.default_backend() == "cpu"
        and dt in (jnp.dtype("float32"), jnp.dtype("float64"))
        and all(jnp.dtype(a.dtype) == dt for a in (cores.hidden, cores.last))
        and 1 <= int(cores.first.shape[-2]) <= MAX_RANK
    )


def make_member_runner(
    cs: _xla.CStats,
    *,
    record_every: int,
    last_trained: bool = True,
    readout: tuple[Array, Array] | None = None,
    diverge_factor: float = 1e4,
    spike_rtol: float = 1e-3,
) -> Any:
    """``run(state, lr, threshold, limit) -> state``, as :func:`dlnjax.networks.compressed.make_member_runner`
    (same arguments, same state fields), with the whole loop in one native call. jit it; vmap it
    over states and rates for a batch (members share ``n_hidden``; here they need not).
    Raises RuntimeError when the runner is not available (see :func:`reason`)."""
    record_every = int(record_every)
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    if not available():
        raise RuntimeError(f"dlnjax.networks.kernels.native.compressed: the fused runner is not available: {reason()}")

    def run(st: _xla.MemberState, lr: Array, threshold: Array, limit: Array) -> _xla.MemberState:
        cores = st.cores
        dt = jnp.dtype(st.loss0.dtype)
        if dt.name not in SYMBOLS:
            raise ValueError(f"dlnjax.networks.kernels.native.compressed: float32 or float64 only, got {dt}")
        r = int(cores.first.shape[-2])
        if not 1 <= r <= MAX_RANK:
            raise ValueError(f"dlnjax.networks.kernels.native.compressed: rank must be 1..{MAX_RANK}, got {r}")
        n = int(cores.first.shape[-1])
        n_out = int(cores.last.shape[-2])
        first, hidden, last = (jnp.asarray(a, dt) for a in (cores.first, cores.hidden, cores.last))
        lam = jnp.asarray(cs.lam, dt)
        s31 = jnp.asarray(cs.sigma31, dt)
        tr33 = jnp.asarray(cs.tr33, dt)
        if readout is None:
            u = jnp.zeros((n_out, 0), dt)
            v = jnp.zeros((n, 0), dt)
        else:
            u, v = (jnp.asarray(a, dt) for a in readout)
        i32 = jnp.int32
        ints = jnp.stack([
            jnp.asarray(st.step, i32), jnp.asarray(st.cross_step, i32), jnp.asarray(st.diverged, i32),
            jnp.asarray(st.diverge_step, i32), jnp.asarray(st.spikes, i32), jnp.asarray(st.first_spike, i32),
            jnp.asarray(limit, i32),
        ])
        reals = jnp.stack([
            jnp.asarray(st.loss0, dt), jnp.asarray(st.loss_prev, dt), jnp.asarray(st.max_rise, dt),
            jnp.asarray(lr, dt), jnp.asarray(threshold, dt), tr33,
        ])
        rec_loss = jnp.asarray(st.rec_loss, dt)
        rec_modes = jnp.asarray(st.rec_modes, dt)
        args = (first, hidden, last, jnp.asarray(cores.n_hidden, i32), lam, s31, u, v, ints, reals, rec_loss, rec_modes)
        shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (first, hidden, last, ints, reals, rec_loss, rec_modes)]
        call = jax.ffi.ffi_call(
            target(dt.name, r), shapes, vmap_method="broadcast_all",
            input_output_aliases={0: 0, 1: 1, 2: 2, 8: 3, 9: 4, 10: 5, 11: 6},
        )
        first, hidden, last, ints, reals, rec_loss, rec_modes = call(
            *args, record_every=np.int64(record_every), last_trained=np.int64(bool(last_trained)),
            diverge_factor=np.float64(diverge_factor), spike_rtol=np.float64(spike_rtol),
        )
        return _xla.MemberState(
            _xla.Cores(first, hidden, last, cores.first_null, cores.n_hidden),
            ints[0], ints[1], ints[2] != 0, ints[3], st.loss0, reals[1], ints[4], ints[5], reals[2],
            rec_loss, rec_modes,
        )

    return run
