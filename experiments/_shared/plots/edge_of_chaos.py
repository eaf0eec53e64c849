"""Fig. 8's figure (``edge_of_chaos``): the variance map's fixed point against simulated
networks, the variance through the layers, and chi, drawn from an :class:`EdgeOfChaosResult`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class EdgeOfChaosResult:
    """What the figure draws (numpy arrays and plain numbers; no config).

    ``gains_fine`` with ``q_inf_fine`` and ``chi_fine``: the theory on a fine grid; ``gains``
    (G,) the simulated gains with ``q_inf_theory`` (G,); per width N, ``q_inf_simulated[N]`` (G,)
    is the mean variance at the last layer and ``q_layers[N]`` (G, depth) the mean per layer."""

    weights: str
    depth: int
    q1: float
    gains_fine: np.ndarray
    q_inf_fine: np.ndarray
    chi_fine: np.ndarray
    gains: np.ndarray
    q_inf_theory: np.ndarray
    q_inf_simulated: dict[int, np.ndarray]
    q_layers: dict[int, np.ndarray]
    critical_gain: float


def figure(out: Path, r: EdgeOfChaosResult) -> None:
    """``edge_of_chaos.{png,pdf}``: q_inf(g) in theory and simulated per width, q^l through the
    layers of the widest network per gain, and chi(g) crossing 1 at the critical gain."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    sim, gs, gc = r.q_inf_simulated, r.gains, r.critical_gain
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.3))
    a1.plot(r.gains_fine, r.q_inf_fine, color="tab:red", lw=2, label="theory: fixed point of the variance map")
    for n, m in zip(sim, ("o", "s", "^", "D", "v")):
        a1.plot(gs, sim[n], m, mfc="none", label=f"simulated q at depth {r.depth}, N = {n}")
    a1.axvline(gc, color="0.5", ls=":", lw=1)
    a1.set_xlabel("gain g")
    a1.set_ylabel("q∞")
    a1.set_title(f"Fixed point of the variance map ({r.weights} weights)")
    a1.legend(fontsize=7)
    nmax = max(sim)
    cols = plt.get_cmap("plasma")(np.linspace(0, 0.9, len(gs)))
    for j, g in enumerate(gs):
        a2.plot(np.arange(1, r.depth + 1), r.q_layers[nmax][j], color=cols[j], label=f"g = {g:g}")
        if r.q_inf_theory[j] > 0:
            a2.axhline(r.q_inf_theory[j], color="0.8", lw=0.6)
    a2.set_yscale("log")
    a2.set_xlabel("layer l")
    a2.set_ylabel("q^l")
    a2.set_title(f"Variance through the layers (N = {nmax}, q¹ = {r.q1:g})")
    a2.legend(fontsize=6, ncol=2)
    a3.plot(r.gains_fine, r.chi_fine, color="tab:blue", lw=2, label="χ = g² ∫Dz tanh'(√q∞ z)²")
    a3.axhline(1.0, color="k", lw=0.8)
    a3.axvline(gc, color="0.5", ls=":", lw=1, label=f"g_c = {gc:.4f}")
    a3.set_xlabel("gain g")
    a3.set_ylabel("χ")
    a3.set_title("Order (χ < 1) and chaos (χ > 1)")
    a3.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "edge_of_chaos")
