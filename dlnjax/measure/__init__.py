"""Measurements on trained networks: learning times, the robust optimum, the headline.

- :mod:`~dlnjax.measure.thresholds`: the learning-time threshold (:class:`Threshold`).
- :mod:`~dlnjax.measure.sweep`: vmapped batches of networks trained to the threshold
  (``run_batch``), the widths of a depth, and the theory's error curve.
- :mod:`~dlnjax.measure.robust`: the per-depth rate statistics of Fig. 4 (grid, bracketing,
  edge bisection, the 10% band, the gradient-flow path).
- :mod:`~dlnjax.measure.headline`: the fitted headline over depths with its interval.
- :mod:`~dlnjax.measure.devices`: padding and sharding a batch over devices.
"""

from dlnjax._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__, ("devices", "headline", "robust", "sweep", "thresholds"),
    {"Threshold": "thresholds", "run_batch": "sweep", "widths_for": "sweep", "BatchResult": "sweep",
     "rate_statistics": "robust", "RateStats": "robust", "RateRun": "robust", "band_of": "robust",
     "loglog_slope": "headline", "late_slope": "headline"},
)
