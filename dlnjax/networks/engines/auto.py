"""``auto``: not an engine of its own but the rule that picks one per network: the native
kernels on a CPU for networks of at least ``NATIVE_MIN_BYTES`` of weights and
``NATIVE_MIN_LAYER_BYTES`` per layer on average, of shapes the kernels support, when they build
on this machine; XLA otherwise (never Pallas: on an H200 it was slower than XLA, docs/benchmarks.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dlnjax.networks.kernels import native as _native
from dlnjax.networks.engines.base import FullWidthBase

# Measured on 2 cores, 20 rates vmapped, float32 (ms per step, native vs XLA vmapped): hidden 128 /
# depth 10 7.6 vs 9.7, 256: 14.3 vs 25.0, 512: 36.7 vs 66.8, 1000 / depth 20: 232 vs 561; but
# hidden 64 / depth 10 3.7 vs 3.3, hidden 32 / depth 64 8.1 vs 4.2 (small layers: the per-layer
# hand-off between threads dominates)
NATIVE_MIN_BYTES = 256_000
NATIVE_MIN_LAYER_BYTES = 32_000


class Auto(FullWidthBase):
    name = "auto"

    def kernels(self, weights):
        total = sum(int(np.prod(w.shape)) * jnp.dtype(w.dtype).itemsize for w in weights)
        big = total >= NATIVE_MIN_BYTES and total >= NATIVE_MIN_LAYER_BYTES * len(weights)
        return _native if (_native.supports(weights) and big and _native.available()) else None

    def stacked_kernels(self, weights):
        """The stacked layout on the native kernels whenever they take these shapes here (as fast
        as on the tuple of layers, docs/benchmarks.md); else none (ValueError): XLA's loops cost
        more than the compilations they save, on a CPU and on a GPU, so the sweeps keep a program
        per depth."""
        from dlnjax.networks.engines.native import NativeStacked

        if _native.supports(weights) and _native.available():
            return NativeStacked
        why = _native.reason() if jax.default_backend() == "cpu" else f"not a CPU backend ({jax.default_backend()})"
        raise ValueError(f"engine='auto' runs the stacked layout on the native kernels only, and they cannot run here "
                         f"({why}; shapes {[tuple(w.shape) for w in weights]})")
