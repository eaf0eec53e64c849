"""dlnjax: exact learning dynamics of deep linear networks (Saxe, McClelland & Ganguli 2014) in JAX.

The library is a house of rooms, one concept each (``docs/library.md``):

- :mod:`dlnjax.data`: data sets, their registry and sufficient statistics (the only part that
  reads or downloads files);
- :mod:`dlnjax.theory`: closed forms, finite-rate and gradient-flow theory, the Hessian;
- :mod:`dlnjax.networks`: linear networks, the compressed network, engines and kernels;
- :mod:`dlnjax.init`: initialisations, their registry, pretraining;
- :mod:`dlnjax.measure`: thresholds, learning-time sweeps, robust statistics, the headline;
- :mod:`dlnjax.nonlinear`: tanh networks, reduced dynamics, the edge of chaos.

The names below are the public API; everything else is reached through its room. Nothing is
imported until it is first used. Nothing here plots or writes results.
"""

from dlnjax._lazy import attach

__version__ = "0.1.0"
__getattr__, __dir__, __all__ = attach(
    __name__, ("data", "init", "measure", "networks", "nonlinear", "theory"),
    {"Stats": "data.statistics", "Task": "data.statistics", "stats_from_examples": "data.statistics",
     "DATASETS": "data", "ENGINES": "networks.engines", "INITS": "init.registry",
     "Threshold": "measure.thresholds", "rate_statistics": "measure.robust", "run_batch": "measure.sweep",
     "train": "networks.linear", "mode_strength": "theory.closed_form"},
)
