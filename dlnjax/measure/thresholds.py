"""The learning-time threshold: one type for every app.

A network has learned when its training error falls below an absolute threshold ``E_thr``;
:class:`Threshold` says how ``E_thr`` is found:

- ``kind='absolute'``: ``E_thr = value`` (the paper's Fig. 4: 1.3e4 on MNIST);
- ``kind='relative'``: a fraction ``1 - eps`` of the way down to ``E*`` (the best error of any
  product of the network's rank, :func:`dlnjax.best_error`) from a reference error:

  - ``reference='initial'``: the network's own error at step 0, ``E_thr = E* + eps (E(0) - E*)``
    (depth_sweep, lr_sweep: every member starts from the same error);
  - ``reference='zero_map'``: the zero map's error ``1/2 tr Sigma33``, ``E_thr = E* + eps (1/2 tr
    Sigma33 - E*)`` (init_comparison, pretraining: random starts begin at different errors, some
    far above the zero map's, so one threshold for every start).

Each app keeps its reference as the default and reads ``threshold.reference`` when its config
has one (:meth:`Threshold.from_config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence
from dlnjax.data.statistics import Task, best_error
from dlnjax.registry import enum_value

KINDS = ("relative", "absolute")
REFERENCES = ("initial", "zero_map")




@dataclass(frozen=True)
class Threshold:
    kind: str = "relative"
    reference: str = "initial"
    eps: float = 0.1
    value: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", enum_value(self.kind))
        object.__setattr__(self, "reference", enum_value(self.reference))
        if self.kind not in KINDS:
            raise ValueError(f"threshold kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"threshold reference must be one of {', '.join(REFERENCES)}; got {self.reference!r}")

    @classmethod
    def from_config(cls, cfg: Any) -> "Threshold":
        """From an app's ``threshold`` config group: ``kind``, ``eps``, ``value`` and ``reference``
        (each app's schema sets its own default reference, so there is one place it is decided)."""
        get = cfg.get if hasattr(cfg, "get") else (lambda k, d=None: getattr(cfg, k, d))
        ref = get("reference", None)
        if ref is None:
            raise ValueError("threshold config has no 'reference' (allowed: initial, zero_map)")
        return cls(kind=enum_value(cfg.kind), reference=enum_value(ref), eps=float(cfg.eps), value=float(cfg.value))

    def resolve(self, e_star: float, *, loss0: float | None = None, e_zero: float | None = None) -> float:
        """The absolute threshold, given E* and the reference error (``loss0`` = E(0) for
        ``reference='initial'``, ``e_zero`` = 1/2 tr Sigma33 for ``'zero_map'``; unused when
        ``kind='absolute'``)."""
        if self.kind == "absolute":
            return float(self.value)
        ref = loss0 if self.reference == "initial" else e_zero
        if ref is None:
            need = "loss0 (the error at step 0)" if self.reference == "initial" else "e_zero (the zero map's error)"
            raise ValueError(f"a relative threshold with reference={self.reference!r} needs {need}")
        return e_star + self.eps * (ref - e_star)

    def resolve_for(self, stats: Any, widths: Sequence[int], loss0: float | None = None) -> tuple[float, float]:
        """(threshold, E*) on these statistics (a :class:`dlnjax.Stats`, or anything with a
        ``stats`` attribute such as :class:`dlnjax.Task`, whose E* comes from its cached
        :attr:`~dlnjax.Task.whitened_sv`) for a network of these widths:
        E* is the best error of rank ``min(widths)`` (exact), the zero map's error ``1/2 tr Sigma33``."""
        e_star = float(stats.best_error(min(widths)) if isinstance(stats, Task) else
                       best_error(getattr(stats, "stats", stats), rank=min(widths)))
        stats = getattr(stats, "stats", stats)
        e_zero = 0.5 * float(stats.tr33) if (self.kind == "relative" and self.reference == "zero_map") else None
        return self.resolve(e_star, loss0=loss0, e_zero=e_zero), e_star
