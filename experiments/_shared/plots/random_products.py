"""Fig. 6B-C's figure (``random_products``): per depth, the singular-value histogram and the
2-D eigenvalue histogram of products of random matrices, drawn from a :class:`RandomProductsResult`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RandomProductsResult:
    """What the figure draws (numpy arrays and plain numbers; no config).

    Per depth (``depths`` order): ``singular_values`` and ``eigenvalues`` of all realisations'
    Gaussian products (flattened), the fraction of singular values below 0.1, and the share of
    eigenvalues in the bin at the origin (bins of width ``bin_width``)."""

    width: int
    realisations: int
    depths: list[int]
    singular_values: list[np.ndarray]
    eigenvalues: list[np.ndarray]
    fraction_below_0_1: list[float]
    origin_bin_fraction: list[float]
    bin_width: float


def _sv_panel(ax: Any, r: RandomProductsResult, j: int) -> None:
    """Depth ``j``'s singular-value histogram, against orthogonal products' (all 1)."""
    sv = r.singular_values[j]
    hi = np.percentile(sv, 99)
    ax.hist(sv, bins=np.linspace(0, max(hi, 1.5), 80), density=True, color="tab:blue", alpha=0.8, label="Gaussian")
    ax.axvline(1.0, color="tab:red", lw=1.5, label="orthogonal (all = 1)")
    ax.set_title(f"N_l = {r.depths[j]}: {100 * r.fraction_below_0_1[j]:.0f}% of σ < 0.1", fontsize=9)
    ax.set_xlabel("singular value")
    if j == 0:
        ax.legend(fontsize=7)


def _eig_panel(ax: Any, r: RandomProductsResult, j: int) -> None:
    """Depth ``j``'s 2-D eigenvalue histogram (origin bin removed) with the unit circle."""
    from matplotlib.colors import LogNorm

    ev, bw = r.eigenvalues[j], r.bin_width
    edges = np.arange(-1.5 - bw / 2, 1.5 + bw, bw)
    h, xe, ye = np.histogram2d(ev.real, ev.imag, bins=[edges, edges])
    c = np.searchsorted(xe, 0.0) - 1
    h[c, c] = 0.0  # the bin at the origin is removed for display (its share is in the title)
    ax.imshow(h.T, origin="lower", extent=[xe[0], xe[-1], ye[0], ye[-1]], cmap="magma", norm=LogNorm(vmin=1, vmax=max(h.max(), 2)))
    th = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(th), np.sin(th), color="w", lw=0.6, ls="--")
    ax.set_title(f"eigenvalues; origin bin {100 * r.origin_bin_fraction[j]:.0f}%", fontsize=9)
    ax.set_xlabel("Re")
    ax.set_ylabel("Im")


def figure(out: Path, r: RandomProductsResult) -> None:
    """``random_products.{png,pdf}``: top row singular-value histograms, bottom row eigenvalue
    histograms in the complex plane, one column per depth."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    fig, axes = plt.subplots(2, len(r.depths), figsize=(3.4 * len(r.depths), 6.6), squeeze=False)
    for j in range(len(r.depths)):
        _sv_panel(axes[0][j], r, j)
        _eig_panel(axes[1][j], r, j)
    fig.suptitle(f"Products of N_l − 1 random {r.width} × {r.width} matrices (Gaussian, std 1/√N), "
                 f"{r.realisations} realisations per depth", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "random_products")
