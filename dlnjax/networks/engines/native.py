"""The native engine: the fused CPU kernels of :mod:`dlnjax.networks.kernels.native` (raises when they cannot be
used: not a CPU backend, no compiler, or shapes they do not take)."""

from __future__ import annotations

import jax

from dlnjax.networks import linear
from dlnjax.networks.kernels import native as _native
from dlnjax.networks.engines.base import FullWidthBase, fused_kernels_for


class NativeStacked(linear.StackedKernels):
    """The stacked layout's step on the fused kernels (:func:`dlnjax.networks.kernels.native.top_down_stacked`,
    :func:`~dlnjax.networks.kernels.native.bottom_up_stacked`): the same loops over rows as the
    tuple of layers, the layer count read at run time (the end-to-end map of the records stays
    :class:`~dlnjax.networks.linear.StackedKernels`' XLA loop)."""

    def top_down(self, w: linear.Stacked) -> list:
        return _native.top_down_stacked(w.first, w.hidden, w.last, self.n)

    def bottom_up(self, lr, g, ps, w: linear.Stacked) -> linear.Stacked:
        (pst,) = ps
        return linear.Stacked(*_native.bottom_up_stacked(lr, g, pst, w.first, w.hidden, w.last, self.n))


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

    def stacked_kernels(self, weights):
        fused_kernels_for(self, _native, weights)
        return NativeStacked
