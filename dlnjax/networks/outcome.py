"""What one member run returns: one network at one rate, run until it crossed the threshold,
diverged or reached its step limit (:class:`MemberOutcome`), and the signature every engine's
member follows (:data:`MemberFn`, ``member(lr, limit, resume) -> MemberOutcome``). The
statistics of :mod:`dlnjax.measure.robust` are computed from these, whatever the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["MemberOutcome", "MemberFn"]


@dataclass
class MemberOutcome:
    """One network at one rate, run until it crossed, diverged or reached ``limit`` steps."""

    lr: float
    limit: int
    steps: int  # steps taken
    cross_step: int  # -1: not crossed
    diverge_step: int  # -1: not diverged
    spikes: int | None  # loss rises before the crossing (None: engine does not detect them)
    first_spike: int | None
    max_rise: float | None
    record_steps: np.ndarray
    loss: np.ndarray  # loss at record_steps (nan where not reached)
    modes: np.ndarray  # (T, k) mode strengths in the original basis
    state: Any = None  # the engine's state, to continue the run to a longer limit

    @property
    def crossed(self) -> bool:
        return self.cross_step >= 0

    @property
    def diverged(self) -> bool:
        return self.diverge_step >= 0


MemberFn = Callable[[float, int, Any], MemberOutcome]
