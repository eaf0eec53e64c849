"""Fig. 6A's figure (``init_comparison``): learning time and best rate against depth per
initialisation, drawn from an :class:`InitComparisonResult`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import depth_ticks

COLOURS = dict(scaled_gaussian="tab:blue", orthogonal="tab:green", pretrained="tab:red", decoupled="k")
LABELS = dict(
    scaled_gaussian="scaled Gaussian (var 1/N)",
    orthogonal="random orthogonal",
    pretrained="greedy pretraining",
    decoupled="decoupled, u0 (reference)",
)


@dataclass(frozen=True)
class InitComparisonResult:
    """What the figure draws (plain numbers and numpy arrays; no config).

    ``per_init[kind]`` holds ``learning_time`` and ``best_learning_rate`` per depth (None where
    no rate learned), as the summary stores them. ``theory_learning_time`` is Eq. 15 for the
    decoupled reference at its chosen rate (None if that init did not run); it is exact only when
    ``whitened``. ``orthogonal_eigenvalues``: one Haar orthogonal matrix's eigenvalues."""

    dataset: str
    depths: list[int]
    learning_rates: np.ndarray
    kinds: list[str]
    per_init: dict[str, dict]
    theory_learning_time: list[float | None] | None
    theory_optimal_rate: list[float]
    orthogonal_eigenvalues: np.ndarray
    max_steps: int
    whitened: bool
    stopped: dict[str, np.ndarray] | None = None  # per init, (D, R): a seed stopped once it could no longer matter


def figure(out: Path, r: InitComparisonResult) -> None:
    """``init_comparison.{png,pdf}``: learning time vs depth (× at depths an init did not learn
    within ``max_steps``, Eq. 15 for the decoupled reference), best rate vs depth (with the
    supplement's 1/λ₁(a_opt)), and the orthogonal example's eigenvalues on the unit circle."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    d = np.asarray(r.depths, float)
    eig = r.orthogonal_eigenvalues
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw=dict(width_ratios=[1.3, 1.3, 1]))
    any_t = False
    for kind in r.kinds:
        p = r.per_init[kind]
        ok = np.asarray([t is not None for t in p["learning_time"]])
        if ok.any():
            any_t = True
            a1.plot(d[ok], [t for t in p["learning_time"] if t is not None], "o-", color=COLOURS.get(kind), label=LABELS.get(kind, kind))
            a2.plot(d[ok], [b for b in p["best_learning_rate"] if b is not None], "o-", color=COLOURS.get(kind), label=LABELS.get(kind, kind))
        lost = ~ok
        if lost.any():  # stacked just above max_steps, one row per initialisation
            a1.plot(d[lost], np.full(lost.sum(), r.max_steps * 1.08 ** (1 + r.kinds.index(kind))), "x", color=COLOURS.get(kind), ms=8)
    if r.theory_learning_time is not None:
        okt = np.asarray([t is not None for t in r.theory_learning_time])
        if okt.any():
            label = "decoupled: theory (Eq. 15) at its rate" + ("" if r.whitened else "\n(diagonal approx., poor for Σ11 ≠ I)")
            a1.plot(d[okt], [t for t in r.theory_learning_time if t is not None], "s--", color="0.4", mfc="none", label=label)
    a1.axhline(r.max_steps, color="0.8", lw=0.8)
    a1.set_xscale("log")
    if any_t:
        a1.set_yscale("log")
    depth_ticks(a1, r.depths)
    a1.set_xlabel("depth N_l (layers)")
    a1.set_ylabel("learning time (fine-tuning steps)")
    a1.set_title(f"Learning time vs depth ({r.dataset}); × not learned in {r.max_steps}")
    a1.legend(fontsize=7, loc="lower right")
    _stopped_marks(a2, r)
    if "decoupled" in r.kinds:
        a2.plot(d, r.theory_optimal_rate, ":", color="0.4", label="decoupled: supplement 1/λ₁(a_opt)")
    a2.axhline(r.learning_rates[0], color="0.8", lw=0.8)
    a2.axhline(r.learning_rates[-1], color="0.8", lw=0.8)
    a2.set_xscale("log")
    a2.set_yscale("log")
    depth_ticks(a2, r.depths)
    a2.set_xlabel("depth N_l (layers)")
    a2.set_ylabel("best learning rate")
    a2.set_title("Best learning rate vs depth (grey: grid edges)")
    a2.legend(fontsize=8)
    th = np.linspace(0, 2 * np.pi, 400)
    a3.plot(np.cos(th), np.sin(th), color="0.7", lw=1)
    a3.plot(eig.real, eig.imag, ".", color="tab:green")
    a3.set_aspect("equal")
    a3.set_xlabel("Re λ")
    a3.set_ylabel("Im λ")
    a3.set_title(f"Eigenvalues of one random {len(eig)} x {len(eig)} orthogonal matrix")
    fig.tight_layout()
    save_figure(fig, out / "init_comparison")


def _stopped_marks(ax, r: InitComparisonResult) -> None:
    """The grid rates each init stopped (a seed halted once it could no longer change the init's
    fastest time or band; ``init_comparison.stop_rule``), as small crosses at (depth, rate)."""
    labelled = False
    for kind in r.kinds:
        m = None if r.stopped is None else r.stopped.get(kind)
        if m is None or not np.asarray(m).any():
            continue
        di, ri = np.nonzero(np.asarray(m))
        off = 1.0 + 0.04 * r.kinds.index(kind)  # side by side when two inits stopped the same rate
        ax.plot(np.asarray(r.depths, float)[di] * off, np.asarray(r.learning_rates)[ri], "x", ms=3, alpha=0.5,
                color=COLOURS.get(kind), label=None if labelled else "stopped (could no longer matter)")
        labelled = True
