"""The Pallas engine: the fused GPU kernels of :mod:`dlnjax.pallas_step` (a CUDA GPU, or their
interpreter with ``DLNJAX_PALLAS_INTERPRET=1``; never chosen by ``auto``)."""

from __future__ import annotations

from .. import pallas_step as _pallas
from .base import FullWidthBase, fused_kernels_for


class Pallas(FullWidthBase):
    name = "pallas"

    def problem(self):
        if not _pallas.available():
            return RuntimeError, f"is not available here: {_pallas.reason()}"
        problem = _pallas.off_gpu_problem()
        return None if problem is None else (ValueError, problem)

    def kernels(self, weights):
        return fused_kernels_for(self, _pallas, weights)
