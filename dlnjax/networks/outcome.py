"""What one member run returns: one network at one rate, run until it crossed the threshold,
diverged or reached its step limit (:class:`MemberOutcome`), and the signature every engine's
member follows (:data:`MemberFn`, ``member(lr, limit, resume) -> MemberOutcome``). The
statistics of :mod:`dlnjax.measure.robust` are computed from these, whatever the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["Member", "MemberOutcome", "MemberFn", "FlowPath"]


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


@dataclass(frozen=True)
class Member:
    """One engine's member: called as a :data:`MemberFn`, ``member(lr, limit, resume)``, it
    runs one network at one rate; ``sharpness(outcome, v0) -> (lambda, vector)`` is the top
    Hessian eigenvalue at an outcome's weights (:mod:`dlnjax.networks.curvature`). Every engine
    starts that iteration from a fixed direction (``v0`` is accepted and ignored), so the value
    depends on the weights alone and a resumed sweep recomputes it bit for bit. Made by
    :meth:`dlnjax.networks.engines.base.FullWidthBase.member` and
    :meth:`dlnjax.networks.engines.compressed.Compressed.member`."""

    run: MemberFn
    sharpness: Callable[[MemberOutcome, Any], tuple[float, Any]]

    def __call__(self, lr: float, limit: int, resume: Any = None) -> MemberOutcome:
        return self.run(lr, limit, resume)


@dataclass(frozen=True)
class FlowPath:
    """A member's gradient flow, integrated apart from its gradient-descent runs (the compressed
    engine's: :mod:`dlnjax.theory.end_to_end_flow`, made by the depth loop).

    ``solve(save_times, t_max) -> (t_ct, times, states, solver_steps)``: ``t_ct`` the first flow
    time with E <= threshold (None: not within ``t_max``), and the flow's states at the save
    times before it and at its end (the crossing, or ``t_max``), with their times;
    ``sharpness(state)`` the top Hessian eigenvalue there; ``member_at(state)`` a
    :data:`MemberFn` that runs gradient descent from that state (the check of the flow against
    the network itself)."""

    solve: Callable[[np.ndarray, float], tuple[float | None, list, list, int]]
    sharpness: Callable[[Any], float]
    member_at: Callable[[Any], MemberFn]
