"""The native engine: the fused CPU kernels of :mod:`dlnjax.networks.kernels.native` (raises when they cannot be
used: not a CPU backend, no compiler, or shapes they do not take)."""

from __future__ import annotations

import jax

from dlnjax.networks.kernels import native as _native
from dlnjax.networks.engines.base import FullWidthBase, fused_kernels_for


class Native(FullWidthBase):
    name = "native"

    def unavailable(self):
        if jax.default_backend() != "cpu":
            return ValueError, f"needs a CPU backend (here: {jax.default_backend()!r})"
        if not _native.available():
            return RuntimeError, f"is not available here: the fused kernels cannot be built: {_native.reason()}"
        return None

    def kernels(self, weights):
        return fused_kernels_for(self, _native, weights)
