"""The figure of ``balanced_dynamics``: mode strengths from beta-balanced starts per sign of beta
(exact lines, gradient-descent dots) and the NTK's movement against the initial scale, drawn from a
:class:`BalancedDynamicsResult`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

NAMES = {-1: "β < 0", 0: "β = 0", 1: "β > 0"}
MARKERS = {-1: "v", 0: "o", 1: "^"}


@dataclass(frozen=True)
class BalancedDynamicsResult:
    """What the figure draws (numpy arrays and plain numbers; no config).

    Arrays are indexed [sign, scale, ...]: ``fine_modes`` (S, C, F, r) is the exact solution on the
    flow times ``fine`` (F,), ``sim_modes`` (S, C, T, r) gradient descent at its records ``times``
    (S, C, T); ``movement``/``movement_sim`` (S, C) the NTK's relative change, exact and simulated."""

    signs: list[int]
    scales: list[float]
    singular_values: np.ndarray  # (r,) the teacher's, drawn as dotted references
    beta_factor: float  # |beta| = beta_factor * scale^2
    fine: np.ndarray
    fine_modes: np.ndarray
    times: np.ndarray
    sim_modes: np.ndarray
    movement: np.ndarray
    movement_sim: np.ndarray


def _modes_panel(ax, r: BalancedDynamicsResult, i: int, cmap) -> None:
    """Mode strengths against flow time for the ``i``-th sign, one colour per scale."""
    sign = r.signs[i]
    for j, scale in enumerate(r.scales):
        col = cmap(j / max(len(r.scales) - 1, 1))
        for a in range(len(r.singular_values)):
            ax.plot(r.fine, r.fine_modes[i, j, :, a], color=col, lw=1.2,
                    label=f"scale {scale:g}" if a == 0 else None)
            ax.plot(r.times[i, j], r.sim_modes[i, j, :, a], "o", color=col, ms=2.5, alpha=0.7)
    for sv in r.singular_values:
        ax.axhline(sv, color="0.8", lw=0.6, ls=":")
    ax.set_xlabel("flow time t = rate × steps")
    ax.set_ylabel("mode strength uᵀ W₂W₁ v")
    ax.set_yscale("symlog", linthresh=1.0)  # large starts (scale² ~ 100) would flatten the rest
    ax.set_title(f"{NAMES[sign]} (|β| = {r.beta_factor:g}·scale²)")
    if i == 0:
        ax.legend(fontsize=7, loc="lower right", title="lines: exact, dots: GD", title_fontsize=7)


def _movement_panel(ax, r: BalancedDynamicsResult) -> None:
    """The NTK's relative movement against the initial scale, per sign (exact) and GD (crosses)."""
    for i, sign in enumerate(r.signs):
        ax.loglog(r.scales, r.movement[i], marker=MARKERS[sign], label=f"{NAMES[sign]} exact")
        ax.loglog(r.scales, r.movement_sim[i], ls="none", marker="x", color="k", ms=5, label="GD" if i == 0 else None)
    ax.set_xlabel("initial scale")
    ax.set_ylabel("‖Θ(t_max) − Θ(0)‖_F / ‖Θ(0)‖_F")
    ax.set_title("NTK movement: rich → lazy")
    ax.legend(fontsize=7)


def figure(out: Path, r: BalancedDynamicsResult) -> None:
    """``balanced_dynamics.{png,pdf}``: mode strengths per sign (exact lines, simulation dots), and
    the kernel movement against the initial scale."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    n = len(r.signs)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.0 * (n + 1), 3.8))
    cmap = plt.get_cmap("viridis")
    for i in range(n):
        _modes_panel(axes[i], r, i, cmap)
    _movement_panel(axes[-1], r)
    fig.tight_layout()
    save_figure(fig, out / "balanced_dynamics")
