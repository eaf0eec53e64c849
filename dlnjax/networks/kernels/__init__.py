"""Fused kernels behind the engines: :mod:`~dlnjax.networks.kernels.native` (C++ CPU kernels,
compiled once per machine, for the full-width step and the compressed member runner) and
:mod:`~dlnjax.networks.kernels.pallas` (Pallas GPU kernels; on an H200 slower than XLA)."""

from dlnjax._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, ("native", "pallas"), {})
