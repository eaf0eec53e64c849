"""Deep linear networks and the engines that train them, on sufficient statistics (Eq. 2).

- :mod:`~dlnjax.networks.linear`: the full-width network ``W^{N_l-1} ... W^1``, its loss and
  gradient from (Sigma11, Sigma31), the ``lax.scan`` training loop and its records.
- :mod:`~dlnjax.networks.compressed`: the exact rank-r reduction of a network started aligned
  with the task (the hidden width drops out), and its member runner.
- :mod:`~dlnjax.networks.outcome`: what one member run returns (:class:`MemberOutcome`).
- :mod:`~dlnjax.networks.engines`: the engine registry (``ENGINES``: auto, xla, native, pallas).
- :mod:`~dlnjax.networks.kernels`: the fused native CPU kernels (C++) and the Pallas GPU kernels.
"""

from dlnjax._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__, ("compressed", "engines", "kernels", "linear", "outcome"),
    {"product": "linear", "loss_from_stats": "linear", "loss_and_grad": "linear", "TrainState": "linear",
     "Records": "linear", "init_state": "linear", "make_runner": "linear", "evaluate": "linear", "train": "linear",
     "mode_strengths": "linear", "ENGINES": "engines", "Engine": "engines", "FullWidthEngine": "engines",
     "MemberOutcome": "outcome", "NotAlignedError": "compressed", "Cores": "compressed",
     "compress_stats": "compressed"},
)
