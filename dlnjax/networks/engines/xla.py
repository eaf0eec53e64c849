"""The XLA engine: the hand-written gradient of :mod:`dlnjax.networks.linear` as XLA operations (any
backend, any shape)."""

from __future__ import annotations

from dlnjax.networks.engines.base import FullWidthBase


class XLA(FullWidthBase):
    name = "xla"

    def kernels(self, weights):
        return None
