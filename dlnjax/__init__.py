"""dlnjax: exact learning dynamics of deep linear networks (Saxe, McClelland & Ganguli 2014) in JAX.

Modules: :mod:`~dlnjax.theory` (closed forms), :mod:`~dlnjax.linear` (deep linear networks on
sufficient statistics), :mod:`~dlnjax.reduced` (exact reduced one-hidden-layer dynamics,
linear or nonlinear), :mod:`~dlnjax.nonlinear` (flax/optax networks on examples),
:mod:`~dlnjax.init` (initialisations) and :mod:`~dlnjax.inits` (their registry),
:mod:`~dlnjax.engines` (training engines and their registry), :mod:`~dlnjax.thresholds` (the
learning-time threshold), :mod:`~dlnjax.sweep` (learning-time sweeps),
:mod:`~dlnjax.chaos` (edge of chaos, dynamical isometry), :mod:`~dlnjax.data` (data sets:
the only part that reads or downloads files). Nothing here plots or writes results.
"""

from . import chaos, data, devices, engines, init, inits, linear, nonlinear, reduced, sweep, theory, thresholds

__all__ = ["chaos", "data", "devices", "engines", "init", "inits", "linear", "nonlinear", "reduced", "sweep", "theory", "thresholds"]
__version__ = "0.1.0"
