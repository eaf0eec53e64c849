"""Fig. 3's figure (``mode_dynamics``): mode strengths over training and the half-learning delay
per mode, drawn from a :class:`ModeDynamicsResult`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ModeDynamicsResult:
    """What the figure draws (numpy arrays and plain numbers; no config).

    ``mode_index`` holds the plotted modes' 0-based indices; ``u_*`` are (T, M) on ``t`` (the
    linear and tanh curves are the first random start's), ``u_decoupled`` (T', M) on
    ``t_decoupled`` at ``lr`` × ``decoupled_factor``; ``delay_*`` are (M,) over all modes."""

    t: np.ndarray
    mode_index: np.ndarray
    u_linear: np.ndarray
    u_tanh: np.ndarray
    u_analytic: np.ndarray
    t_decoupled: np.ndarray
    u_decoupled: np.ndarray
    decoupled_factor: float
    delay_linear_mean: np.ndarray
    delay_linear_std: np.ndarray
    delay_tanh_mean: np.ndarray
    delay_tanh_std: np.ndarray
    lr: float
    hidden: int
    u0: float
    n_init: int


def figure(out: Path, r: ModeDynamicsResult) -> None:
    """``mode_dynamics.{png,pdf}``: mode strengths (linear, tanh, Eq. 12 and the decoupled start)
    and the relative half-learning delay per plotted mode, mean ± std over the random starts."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    t, mi = r.t, r.mode_index
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw=dict(width_ratios=[1.6, 1]))
    for k, m in enumerate(mi):
        ax.plot(t, r.u_linear[:, m], color="tab:blue", lw=1.6, label="linear network" if k == 0 else None)
        ax.plot(t, r.u_tanh[:, m], color="tab:green", lw=1.6, label="tanh network" if k == 0 else None)
        ax.plot(t, r.u_analytic[:, m], color="tab:red", lw=1.3, ls="--", label="analytic (Eq. 12)" if k == 0 else None)
        ax.text(t[-1] * 1.01, r.u_analytic[-1, m], str(m + 1), fontsize=7, va="center")
    ax.plot(r.t_decoupled, r.u_decoupled[:, mi[0]], color="k", lw=0.8, ls=":", label=f"decoupled start (lr × {r.decoupled_factor:g})")
    for m in mi[1:]:
        ax.plot(r.t_decoupled, r.u_decoupled[:, m], color="k", lw=0.8, ls=":")
    ax.set_xlabel("t (full-batch steps)")
    ax.set_ylabel("mode strength  u_α")
    ax.set_title(f"Mode strengths (λ = {r.lr:g}, N2 = {r.hidden}, u0 = {r.u0:g})")
    ax.legend(fontsize=8, loc="lower right")
    x = np.arange(len(mi))
    delays = dict(linear=(r.delay_linear_mean, r.delay_linear_std), tanh=(r.delay_tanh_mean, r.delay_tanh_std))
    for off, act, col in ((-0.12, "linear", "tab:blue"), (0.12, "tanh", "tab:green")):
        mean, std = delays[act]
        ax2.errorbar(x + off, mean[mi], yerr=std[mi], fmt="o", color=col, capsize=3, label=act)
    ax2.axhline(0.0, color="tab:red", lw=1, ls="--")
    ax2.set_xticks(x, [str(m + 1) for m in mi])
    ax2.set_xlabel("mode α")
    ax2.set_ylabel("(t½ simulated − t½ analytic) / t½ analytic")
    ax2.set_title(f"Half-learning delay, mean ± std over {r.n_init} inits")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "mode_dynamics")
