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


def _ci(x: Any, fmt: str) -> str:
    return "" if not x else " [" + (fmt % x[0]) + ", " + (fmt % x[1]) + "]"


def _titles(summary: dict) -> tuple[str, str]:
    """The two panels' titles: the measured headline with its 90% interval."""
    ds = summary["dataset"]
    late = summary.get("lr_exponent_fit_depths") or []
    where = f"N_l ≥ {min(late)}" if late else "late depths"
    t1 = f"Learning time vs depth ({ds})"
    if summary.get("learning_time_late_slope") is not None:
        t1 += (f"\nlate slope {summary['learning_time_late_slope']:.2f}{_ci(summary.get('learning_time_late_slope_ci'), '%.2f')}"
               f" ({where}; Eq. 15: {summary.get('theory_learning_time_late_slope') or float('nan'):.2f})")
    if summary.get("learning_time_growth") is not None:
        t1 += f", growth ×{summary['learning_time_growth']:.2f}{_ci(summary.get('learning_time_growth_ci'), '%.2f')}"
    t2 = f"Optimal rate vs depth ({ds})"
    if summary.get("lr_exponent") is not None:
        t2 += (f"\nslope {summary['lr_exponent']:.2f}{_ci(summary.get('lr_exponent_ci'), '%.2f')} ({where}; "
               f"1/λ₁(a_opt): {summary.get('theory_lr_exponent') or float('nan'):.2f})")
    return t1, t2


def _lines(ax: Any, d: np.ndarray, summary: dict, lines: Sequence[tuple]) -> None:
    """The prediction lines of a panel: (summary key, line style, colour, width, label), each
    drawn where the summary has finite values."""
    for key, style, colour, lw, label in lines:
        y = _arr(summary.get(key) or [None] * len(d))
        if np.isfinite(y).any():
            ax.plot(d, y, style, color=colour, lw=lw, label=label)


def fig4(out: Path, summary: dict) -> None:
    """Fig. 4 as the paper measured it: per depth the learning time (fastest crossing) and the
    empirically optimal rate (centre of the 10% band, band shaded), in black, with the
    predictions drawn over them as lines: the paper's own (supplement Eqs. 19-20 and Eq. 15 at
    that rate), the gradient-flow path's 1/λ* and T_ct·λ*, and the flow time at the predicted
    rate. Depths whose optimum the extended grid could not bracket are ringed in red."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    whitened = bool(summary.get("whitened", False))
    d = np.asarray(summary["depths"], float)
    unbr = np.asarray([not b for b in summary.get("bracketed") or [True] * len(d)], bool)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5.0))
    lt = _arr(summary["learning_time"])
    b = float(summary.get("headline_interval", {}).get("band", 0.1))
    a1.fill_between(d, lt / (1 + b), lt * (1 + b), color="0.85", label=f"measured learning time ±{b:.0%} (its interval)")
    ens = int(summary.get("ensemble", 1) or 1)
    of = f", medians of {ens} starts" if ens > 1 else ""  # both panels' measured curves
    a1.plot(d, lt, "o-", color="k", label=f"measured learning time (fastest crossing{of})")
    _lines(a1, d, summary, [
        ("theory_learning_time_at_optimal_rate", "--", "tab:red", 1.2,
         "paper: Eq. 15 at 1/λ₁(a_opt)" + ("" if whitened else " (diagonal approx., Σ11 ≠ I)")),
        ("predicted_learning_time", "-", "tab:blue", 1.2, "prediction: T_ct(real flow) at 1/λ₁ (critical damping)"),
        ("finite_rate_learning_time", "-", "tab:green", 0.9, "finite-rate maps' fastest rate (× real/diag. flow time)"),
        ("steps_at_inv_lambda_star", ":", "0.4", 1.2, "T_ct·λ*: steps at 1/λ* on the flow path"),
    ])
    spk = np.asarray([x or 0 for x in summary["runs_with_spikes_before_crossing"]])
    if (spk > 0).any():
        a1.plot(d[spk > 0], lt[spk > 0], "x", color="tab:orange", ms=5, label="depth with spiking runs (EoS)")
    if unbr.any():
        a1.plot(d[unbr], lt[unbr], "o", mfc="none", mec="tab:red", ms=11, mew=1.5, label="optimum not bracketed (cap)")
    a1.set_xscale("log")
    if np.isfinite(lt).any():
        a1.set_yscale("log")
    depth_ticks(a1, summary["depths"])
    a1.set_xlabel("depth N_l (layers)")
    a1.set_ylabel("learning time (steps)")
    t1, t2 = _titles(summary)
    a1.set_title(t1, fontsize=9)
    a1.legend(fontsize=7)

    best = _arr(summary["best_learning_rate"])
    band = np.asarray([[np.nan, np.nan] if x is None else [np.nan if y is None else y for y in x]
                       for x in summary["best_rate_band"]], float).reshape(-1, 2)
    if band.size:
        a2.fill_between(d, band[:, 0], band[:, 1], color="0.85", label="rates within 10% of the fastest (the interval)")
    a2.plot(d, best, "o-", color="k", label=f"measured optimal rate (band centre{of})")
    a2.plot(d, _arr(summary["fastest_rate"]), "v", color="0.55", ms=5, label="fastest rate on the grid (raw arg-min)")
    em = _arr(summary["stability_edge_measured"])
    a2.plot(d, em, "^-", color="tab:red", ms=4, lw=0.8, label="measured stability edge (bisection)")
    _lines(a2, d, summary, [
        ("theory_optimal_learning_rate", "--", "tab:blue", 1.2, "paper 1/λ₁(a_opt) (Eqs. 19–20) = prediction (critical damping)"),
        ("theory_stability_edge", "-.", "tab:red", 0.9, "top mode's finite-rate edge 2/λ₁"),
        ("finite_rate_optimal_rate", "-", "tab:green", 0.9, "finite-rate maps' fastest rate (below 2/λ₁)"),
        ("inv_lambda_star", ":", "0.4", 1.2, "1/λ* (λ*: max Hessian eig. on the flow path)"),
    ])
    if unbr.any():
        a2.plot(d[unbr], best[unbr], "o", mfc="none", mec="tab:red", ms=11, mew=1.5, label="optimum not bracketed (cap)")
    rates = np.asarray(summary["learning_rates"], float)
    a2.axhline(rates.min(), color="0.8", lw=0.6)
    a2.axhline(rates.max(), color="0.8", lw=0.6)
    a2.set_xscale("log")
    a2.set_yscale("log")
    depth_ticks(a2, summary["depths"])
    a2.set_xlabel("depth N_l (layers)")
    a2.set_ylabel("learning rate")
    a2.set_title(t2, fontsize=9)
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
    in_grid = arrays.get("in_grid")
    for i in range(len(depths)):
        for j in range(len(rates)):
            s = str(st[i, j])
            if s in marks:
                ax.text(j, i, marks[s][0], ha="center", va="center", color=marks[s][1], fontsize=9)
            elif sp[i, j] > 0:
                ax.plot(j + 0.32, i + 0.25, ".", color="tab:orange", ms=4)
    if in_grid is not None and not np.all(in_grid):
        ext = np.nonzero(~np.asarray(in_grid, bool))[0]
        for j in ext:
            ax.axvline(j, color="tab:red", lw=0.4, alpha=0.4)
    ax.set_yticks(range(len(depths)), [str(x) for x in depths])
    step = max(1, len(rates) // 8)
    ax.set_xticks(range(0, len(rates), step), [f"{r:.1e}" for r in rates[::step]], rotation=45)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("depth N_l")
    ax.set_title("Learning time; × diverged, ▽ stopped (3× the fastest), · skipped (slower still),\n"
                 "~ unsettled, orange dot: loss spikes before the crossing; red lines: rates added to bracket the optimum",
                 fontsize=9)
    if norm is not None:
        fig.colorbar(im, ax=ax, label="learning time (steps)")
    fig.tight_layout()
    save_figure(fig, out / stem)


def sharpening_figure(out: Path, arrays: dict, summary: dict, stem: str = "depth_sweep_sharpening") -> None:
    """Progressive sharpening: the Hessian's top eigenvalue along each depth's gradient-flow path
    (no figure when no path was run, ``stats.flow_run=false``)."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    depths = [int(x) for x in arrays["depths"]]
    if not any(len(arrays.get(f"sharpness_depth{dd}", [])) for dd in depths):
        return  # no gradient-flow path was run (stats.flow_run=false): nothing to draw
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    cmap = plt.get_cmap("viridis")
    for i, dd in enumerate(depths):
        s = arrays.get(f"sharpness_times_depth{dd}")  # flow time (rate x steps) at each snapshot
        if s is None or len(s) == 0:  # a run made before flow times were kept: its steps
            s = arrays.get(f"sharpness_steps_depth{dd}")
        v = arrays.get(f"sharpness_depth{dd}")
        if s is None or len(s) == 0 or v is None or len(v) != len(s):
            continue
        frac = np.asarray(s, float) / max(float(np.max(s)), 1e-300)
        ax.plot(frac, v, "-", color=cmap(i / max(len(depths) - 1, 1)), lw=1.2, label=f"N_l = {dd}")
    ax.set_yscale("log")
    ax.set_xlabel("fraction of the gradient-flow time to the crossing")
    ax.set_ylabel("top Hessian eigenvalue λ_max")
    ax.set_title("Progressive sharpening along the gradient-flow path")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, out / stem)
