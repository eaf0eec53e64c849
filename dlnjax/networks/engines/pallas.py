"""The Pallas engine: the fused GPU kernels of :mod:`dlnjax.networks.kernels.pallas` (a CUDA GPU, or their
interpreter with ``DLNJAX_PALLAS_INTERPRET=1``; never chosen by ``auto``)."""

from __future__ import annotations

from dlnjax.networks.kernels import pallas as _pallas
from dlnjax.networks.engines.base import FullWidthBase, fused_kernels_for


class Pallas(FullWidthBase):
    name = "pallas"

    def unavailable(self):
        if not _pallas.available():
            return RuntimeError, f"is not available here: {_pallas.reason()}"
        problem = _pallas.off_gpu_problem()
        return None if problem is None else (ValueError, problem)

    def kernels(self, weights):
        return fused_kernels_for(self, _pallas, weights)
