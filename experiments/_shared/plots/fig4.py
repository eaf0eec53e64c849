"""The figures of Fig. 4 (``depth_sweep``, ``lr_sweep``, ``aggregate``): each takes a run's own
outputs, the ``summary`` dict that ``summary.json`` holds and the ``arrays`` that
``results.npz`` holds, so any run directory can be redrawn without its config."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import depth_ticks


def _arr(v: Sequence[Any]) -> np.ndarray:
    return np.asarray([np.nan if x is None else x for x in v], np.float64)


def _causes_text(summary: dict, flow_lt: np.ndarray, th: np.ndarray, lt: np.ndarray, spk: np.ndarray) -> str:
    """The three gaps of the left panel as ranges over depth (empty without the diffrax flow)."""
    ok = np.isfinite(flow_lt)
    if not ok.any():
        return ""

    def rng(x: np.ndarray, fmt: str) -> str:
        x = x[np.isfinite(x)]
        return "n/a" if x.size == 0 else (fmt % x.min()) + " .. " + (fmt % x.max())

    fast = _arr(summary["fastest_learning_time"])
    return "\n".join([
        "non-white inputs  flow / Eq.15       " + rng(flow_lt / th, "%.2f"),
        "finite rate       run / flow - 1     " + rng(lt / flow_lt - 1.0, "%+.1e"),
        "edge of stability fastest / flow     " + rng(fast / flow_lt, "%.2f")
        + f"  ({int((spk > 0).sum())}/{len(spk)} depths spike)",
    ])


def fig4(out: Path, summary: dict) -> None:
    """Fig. 4: learning time and rates against depth, robust statistics in black, the measured
    finite-rate ones (which the edge of stability moves) in grey/red, theory overlaid. Whether
    Eq. 15 is exact (whitened inputs) and the depths of the slope fit come from the summary."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    whitened = bool(summary.get("whitened", False))
    d = np.asarray(summary["depths"], float)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    lt = _arr(summary["learning_time"])
    a1.plot(d, lt, "o-", color="k", label="learning time at the best rate, T_ct·λ* (robust)")
    a1.plot(d, _arr(summary["fastest_learning_time"]), "v", color="0.55", label="fastest measured crossing (edge of stability)")
    th = _arr(summary["theory_learning_time_at_best_rate"])
    lab = "Eq. 15 at the best rate" + ("" if whitened else " (diagonal approx., Σ11 ≠ I)")
    if np.isfinite(th).any():
        a1.plot(d, th, "s--", color="tab:red", mfc="none", label=lab)
    # the continuous gradient flow on the real (non-white) statistics, by diffrax, at the same
    # best rate: T_ct(diffrax) * lambda*. Eq. 15 vs this: the diagonal approximation (non-white
    # inputs); this vs the black line: the small-rate run's finite rate; black vs grey: finite
    # rates near the edge of stability
    lam = _arr(summary.get("lambda_star") or [None] * len(d))
    tfl = _arr(summary.get("t_ct_diffrax") or [None] * len(d))
    flow_lt = tfl * lam
    if np.isfinite(flow_lt).any():
        a1.plot(d, flow_lt, "D", color="tab:blue", mfc="none", ms=9, mew=1.2,
                label="gradient flow on the real Σ11 (diffrax), T_ct(flow)·λ*")
    spk = np.asarray([x or 0 for x in summary["runs_with_spikes_before_crossing"]])
    if (spk > 0).any():
        ft = _arr(summary["fastest_learning_time"])
        a1.plot(d[spk > 0], ft[spk > 0], "x", color="tab:orange", ms=5, label="depth with spiking runs (EoS)")
    box = _causes_text(summary, flow_lt, th, lt, spk)
    if box:
        a1.text(0.02, 0.97, box, transform=a1.transAxes, ha="left", va="top", multialignment="left", fontsize=6.5,
                family="monospace",
                bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
    a1.set_xscale("log")
    if np.isfinite(lt).any():
        a1.set_yscale("log")
    depth_ticks(a1, summary["depths"])
    a1.set_xlabel("depth N_l (layers)")
    a1.set_ylabel("learning time (steps)")
    a1.set_title(f"Learning time vs depth ({summary['dataset']}, growth ×{summary['learning_time_growth']:.2f})"
                 if summary.get("learning_time_growth") else f"Learning time vs depth ({summary['dataset']})")
    a1.legend(fontsize=7)

    best = _arr(summary["best_learning_rate"])
    a2.plot(d, best, "o-", color="k", label="best rate 1/λ* (λ*: max Hessian eig. along the path)")
    a2.plot(d, _arr(summary["stability_edge_predicted"]), "--", color="k", lw=1, label="predicted edge 2/λ*")
    em = _arr(summary["stability_edge_measured"])
    a2.plot(d, em, "^-", color="tab:red", ms=4, lw=0.8, label="measured edge (bisection)")
    a2.plot(d, _arr(summary["fastest_rate"]), "v", color="0.55", label="fastest measured rate")
    band = np.asarray([[np.nan if x is None else x for x in b] for b in summary["band_10pct"]], float)
    if band.size:
        a2.fill_between(d, band[:, 0], band[:, 1], color="0.85", label="rates within 10% of the fastest")
    a2.plot(d, summary["theory_optimal_learning_rate"], ":", color="tab:red", label="supplement 1/λ₁(a_opt), diag. approx.")
    rates = np.asarray(summary["learning_rates"], float)
    a2.axhline(rates.min(), color="0.8", lw=0.6)
    a2.axhline(rates.max(), color="0.8", lw=0.6)
    a2.set_xscale("log")
    a2.set_yscale("log")
    depth_ticks(a2, summary["depths"])
    a2.set_xlabel("depth N_l (layers)")
    a2.set_ylabel("learning rate")
    ttl = "Rates vs depth"
    if summary.get("lr_exponent") is not None and summary.get("lr_exponent_fit_depths"):
        ttl += f" (best-rate slope {summary['lr_exponent']:.2f} for N_l ≥ {min(summary['lr_exponent_fit_depths'])})"
    a2.set_title(ttl)
    a2.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "depth_sweep")


def grid_figure(out: Path, arrays: dict, stem: str = "depth_sweep_grid") -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from ...common import save_figure

    depths, rates = arrays["depths"], arrays["learning_rates"]
    lt, st, sp = arrays["learning_time"], arrays["status"], arrays["spikes"]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(depths) + 2.2))
    finite = lt[np.isfinite(lt)]
    norm = LogNorm(vmin=max(finite.min(), 1), vmax=max(finite.max(), 2)) if finite.size else None
    im = ax.imshow(np.where(np.isfinite(lt), lt, np.nan), aspect="auto", origin="lower", cmap="viridis_r", norm=norm)
    marks = dict(diverged=("×", "tab:red"), stopped=("▽", "0.35"), skipped=("·", "0.6"), unsettled=("~", "tab:purple"))
    for i in range(len(depths)):
        for j in range(len(rates)):
            s = str(st[i, j])
            if s in marks:
                ax.text(j, i, marks[s][0], ha="center", va="center", color=marks[s][1], fontsize=9)
            elif sp[i, j] > 0:
                ax.plot(j + 0.32, i + 0.25, ".", color="tab:orange", ms=4)
    ax.set_yticks(range(len(depths)), [str(x) for x in depths])
    step = max(1, len(rates) // 8)
    ax.set_xticks(range(0, len(rates), step), [f"{r:.1e}" for r in rates[::step]], rotation=45)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("depth N_l")
    ax.set_title("Learning time; × diverged, ▽ stopped (3× the fastest), · skipped (slower still),\n"
                 "~ unsettled, orange dot: loss spikes before the crossing", fontsize=9)
    if norm is not None:
        fig.colorbar(im, ax=ax, label="learning time (steps)")
    fig.tight_layout()
    save_figure(fig, out / stem)


def sharpening_figure(out: Path, arrays: dict, summary: dict, stem: str = "depth_sweep_sharpening") -> None:
    """Progressive sharpening: the Hessian's top eigenvalue along each depth's gradient-flow path."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    depths = [int(x) for x in arrays["depths"]]
    cmap = plt.get_cmap("viridis")
    for i, dd in enumerate(depths):
        s = arrays.get(f"sharpness_steps_depth{dd}")
        v = arrays.get(f"sharpness_depth{dd}")
        if s is None or len(s) == 0:
            continue
        frac = np.asarray(s, float) / max(float(np.max(s)), 1.0)
        ax.plot(frac, v, "-", color=cmap(i / max(len(depths) - 1, 1)), lw=1.2, label=f"N_l = {dd}")
    ax.set_yscale("log")
    ax.set_xlabel("fraction of the way to the crossing (small-rate run)")
    ax.set_ylabel("top Hessian eigenvalue λ_max")
    ax.set_title("Progressive sharpening along the gradient-flow path")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, out / stem)
