"""Beyond linear networks: tanh and other nonlinear networks.

- :mod:`~dlnjax.nonlinear.networks`: flax/optax MLPs trained on examples (the deep-tanh claim).
- :mod:`~dlnjax.nonlinear.reduced`: the exact reduced dynamics of one hidden layer, linear or not.
- :mod:`~dlnjax.nonlinear.chaos`: the edge of chaos, dynamical isometry, random matrix products.
"""

from dlnjax._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__, ("chaos", "networks", "reduced"),
    {"MLP": "networks", "ACTIVATIONS": "reduced", "isometry_measures": "chaos", "q_fixed_point": "chaos"},
)
