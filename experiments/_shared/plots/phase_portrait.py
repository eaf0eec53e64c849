"""Fig. 2's figure (``phase_portrait``): the vector field of Eq. 8, its fixed-point and invariant
hyperbolas, and the simulated and analytic trajectories, drawn from a :class:`PhasePortraitResult`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PhasePortraitResult:
    """What the figure draws (numpy arrays and plain numbers; no config).

    ``simulated`` and ``analytic`` are (n_starts, T, 2) trajectories (a, b); the field is drawn on
    a ``grid`` x ``grid`` mesh over [-extent, extent]^2."""

    s: float
    tau: float
    extent: float
    grid: int
    simulated: np.ndarray
    analytic: np.ndarray


def figure(out: Path, r: PhasePortraitResult) -> None:
    """``phase_portrait.{png,pdf}``: the field ``(b(s - ab), a(s - ab)) / tau``, the hyperbolas
    ``a^2 - b^2 = c`` and ``ab = s``, and each start's gradient-descent and analytic trajectory."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    s, tau, ext = r.s, r.tau, r.extent
    fig, ax = plt.subplots(figsize=(6.2, 6))
    g = np.linspace(-ext, ext, r.grid)
    A, B = np.meshgrid(g, g)
    E = s - A * B
    ax.quiver(A, B, B * E / tau, A * E / tau, color="tab:blue", alpha=0.55, angles="xy", width=0.003)
    fine = np.linspace(-ext, ext, 400)
    AA, BB = np.meshgrid(fine, fine)
    ax.contour(AA, BB, AA**2 - BB**2, levels=np.linspace(-3, 3, 13), colors="0.75", linewidths=0.6, linestyles="-")
    ax.contour(AA, BB, AA * BB - s, levels=[0.0], colors="tab:red", linewidths=2.0)
    for k, (sim, ana) in enumerate(zip(r.simulated, r.analytic)):
        ax.plot(sim[:, 0], sim[:, 1], color="tab:green", lw=2.4, alpha=0.8, label="gradient descent" if k == 0 else None)
        ax.plot(ana[:, 0], ana[:, 1], color="k", lw=1.0, ls="--", label="analytic (supp. Eq. 1-4)" if k == 0 else None)
        ax.plot(sim[0, 0], sim[0, 1], "o", color="tab:green", ms=5)
    ax.plot([], [], color="tab:red", lw=2, label="fixed points ab = s")
    ax.plot([], [], color="0.75", lw=0.8, label="invariant a² − b² = c")
    ax.set_xlim(-ext, ext)
    ax.set_ylim(-ext, ext)
    ax.set_aspect("equal")
    ax.set_xlabel("a")
    ax.set_ylabel("b")
    ax.set_title(f"Phase portrait of Eq. 8 (τ = {tau:g}, s = {s:g})")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    save_figure(fig, out / "phase_portrait")
