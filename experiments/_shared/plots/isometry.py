"""Fig. 7's figure (``isometry``): histograms of the end-to-end Jacobian's singular values per
gain, for orthogonal and scaled Gaussian weights, drawn from an :class:`IsometryResult`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class IsometryResult:
    """What the figure draws (numpy arrays and plain numbers; no config).

    ``sv_orthogonal`` and ``sv_gaussian`` are the singular values (G, Q, N) per gain and input
    variance; ``orthogonal_within_2x`` (G, Q) the orthogonal networks' fraction of singular
    values within a factor 2 of their median; ``eps`` the working precision's machine epsilon."""

    width: int
    depth: int
    gains: np.ndarray  # (G,)
    input_variances: np.ndarray  # (Q,)
    sv_orthogonal: np.ndarray
    sv_gaussian: np.ndarray
    orthogonal_within_2x: np.ndarray
    eps: float

    def singular_values(self) -> dict[str, np.ndarray]:
        """The singular values by weight kind, orthogonal first."""
        return {"orthogonal": self.sv_orthogonal, "gaussian": self.sv_gaussian}


def _panel(ax: Any, r: IsometryResult, a: int, colors: np.ndarray) -> None:
    """Gain ``a``'s panel: one histogram per input variance and weight kind, and the SVD's resolution."""
    sv = r.singular_values()
    qs, g, n = r.input_variances, r.gains[a], r.width
    allv = np.log10(np.clip(np.concatenate([sv[k][a].ravel() for k in sv]), 1e-30, None))
    bins = np.linspace(np.percentile(allv, 0.5), np.percentile(allv, 99.5) + 1e-9, 60)
    for b, q in enumerate(qs):
        for kind, ls in (("orthogonal", "-"), ("gaussian", ":")):
            v = np.log10(np.clip(sv[kind][a, b], 1e-30, None))
            h, e = np.histogram(v, bins=bins, density=True)
            lab = f"q¹ = {q:g}, {kind}" if a == 0 else None
            ax.plot(0.5 * (e[1:] + e[:-1]), h, ls, color=colors[b], lw=1.4, label=lab)
    res = max(r.eps * n * float(sv[k][a].max()) for k in sv)
    ax.axvline(np.log10(res), color="tab:red", lw=0.8, ls="--", label="SVD resolution (eps·N·σmax)" if a == 0 else None)
    m = r.orthogonal_within_2x[a][len(qs) // 2]
    ax.set_title(f"g = {g:g}  (orth., q¹={qs[len(qs) // 2]:g}: {100 * m:.0f}% within 2× of median)", fontsize=8)
    ax.set_xlabel("log10 singular value of J")


def figure(out: Path, r: IsometryResult) -> None:
    """``isometry.{png,pdf}``: per gain, log-singular-value histograms of J (solid: orthogonal W,
    dotted: scaled Gaussian W; colour: input variance q¹) with the SVD's resolution limit."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    gains, qs = r.gains, r.input_variances
    ncol = min(3, len(gains))
    nrow = -(-len(gains) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.4 * nrow), squeeze=False)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(qs)))
    for a in range(len(gains)):
        _panel(axes[a // ncol][a % ncol], r, a, colors)
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=6)
    for k in range(len(gains), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.suptitle(f"End-to-end Jacobian of tanh networks, N = {r.width}, N_l = {r.depth} (solid: orthogonal W, dotted: scaled Gaussian W)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "isometry")
