"""Initialisations: the functions that draw starting weights, their registry, and pretraining.

- :mod:`~dlnjax.init.functions`: small Gaussian, scaled Gaussian, (Haar) orthogonal, decoupled
  (Eq. 6's aligned start), each with an explicit key; also exported here.
- :mod:`~dlnjax.init.registry`: ``INITS[name]`` -> an :class:`~dlnjax.init.registry.Init` (no
  string switches in the apps).
- :mod:`~dlnjax.init.pretrain`: greedy layer-wise autoencoder pretraining (Fig. 5).
"""

from dlnjax._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__, ("functions", "pretrain", "registry"),
    {**{n: "functions" for n in ("haar_orthogonal", "small_gaussian", "scaled_gaussian", "random_orthogonal",
                                  "decoupled")},
     "INITS": "registry", "Init": "registry", "greedy_pretrain": "pretrain", "pretrained_network": "pretrain"},
)
