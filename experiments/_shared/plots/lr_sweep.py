"""The figures of one depth's rate sweep (``lr_sweep``): learning curves, learning time against
rate with the measured optimum, edge and predictions, and progressive sharpening, drawn from an
:class:`LrSweepResult`; and the edge-of-stability run, drawn from an :class:`LrSweepSharpening`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# outcome of a (depth, rate) run -> (marker, colour, label) in the learning-time panel
OUTCOME_MARKS = dict(diverged=("x", "tab:red", "diverged"), stopped=("v", "0.4", "stopped (3× the fastest)"),
                     unsettled=("^", "tab:purple", "unsettled"), skipped=(".", "0.6", "skipped (slower still)"))


@dataclass(frozen=True)
class LrSweepResult:
    """What :func:`figure` draws: the run's ``summary`` (as ``summary.json`` holds it) and its
    ``arrays`` (as ``results.npz`` holds them) for the one ``depth`` swept; no config."""

    summary: dict
    arrays: dict
    depth: int


@dataclass(frozen=True)
class LrSweepSharpening:
    """What :func:`sharpening_figure` draws: the sharpening run's ``info`` (``summary["sharpening"]``)
    and ``arrays`` (``sharpening_*``), the depth, dataset name and learning threshold."""

    info: dict
    arrays: dict
    depth: int
    dataset: str
    threshold: float


def _curves_panel(fig: Any, ax: Any, r: LrSweepResult, rates: np.ndarray) -> None:
    """Every rate's learning curve, coloured by rate, with the threshold and E*."""
    import matplotlib.pyplot as plt
    from matplotlib import cm
    from matplotlib.colors import LogNorm

    summary, depth = r.summary, r.depth
    steps, loss = r.arrays[f"steps_depth{depth}"], r.arrays[f"loss_depth{depth}"]
    norm = LogNorm(vmin=rates.min(), vmax=max(rates.max(), rates.min() * 1.0001))
    cmap = plt.get_cmap("viridis")
    for j, lr in enumerate(rates):
        if np.isfinite(loss[j]).any():
            ax.plot(steps, loss[j], color=cmap(norm(lr)), lw=1.0)
    thr = summary["threshold"]
    ax.axhline(thr["value_per_depth"][0], color="tab:red", ls="--", lw=1, label="threshold")
    ax.axhline(thr["best_error_per_depth"][0], color="k", ls=":", lw=1, label="best error E*")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training error E")
    ax.set_title(f"Learning curves, depth {depth} ({summary['dataset']})")
    ax.legend(fontsize=8)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="learning rate")


def _measured_times(ax: Any, summary: dict, arrays: dict, rates: np.ndarray) -> float:
    """The measured learning times, the finite-rate theory, spiking runs and the other outcomes
    (drawn at the returned height ``top``)."""
    lt, st = arrays["learning_time"][0], arrays["status"][0]
    ok = np.isfinite(lt)
    ax.plot(rates[ok], lt[ok], "o-", color="k", label="learning time (measured)")
    if summary.get("finite_rate_theory_learning_time"):
        pr = np.asarray([np.nan if p is None else p for p in summary["finite_rate_theory_learning_time"]])
        ax.plot(rates, pr, "+", color="tab:red", ms=10, label="finite-rate theory (exact scalar maps)")
        ax.axvline(summary["finite_rate_theory_edge"], color="tab:red", ls="-.", lw=0.8,
                   label=f"top mode's edge {summary['finite_rate_theory_edge']:.2g}")
    spk = arrays["spikes"][0] > 0
    if (ok & spk).any():
        ax.plot(rates[ok & spk], lt[ok & spk], "o", mfc="none", mec="tab:orange", ms=9, label="loss spikes before crossing (EoS)")
    top = float(np.nanmax(lt)) * 1.2 if ok.any() else 1.0
    for s, (m, c, lab) in OUTCOME_MARKS.items():
        sel = st == s
        if sel.any():
            ax.plot(rates[sel], np.full(sel.sum(), top), m, color=c, mfc="none" if m in "v^" else None, label=lab)
    return top


def _rate_marks(ax: Any, summary: dict, rates: np.ndarray) -> None:
    """The measured optimum and its band, T_ct/rate, 1/λ*, 2/λ*, the measured edge and 1/λ₁(a_opt)."""
    best, t_best = summary["best_learning_rate"][0], summary["learning_time"][0]
    band = summary["best_rate_band"][0]
    if band:
        ax.axvspan(band[0], band[1], color="0.88", zorder=0, label=f"rates within 10% of the fastest [{band[0]:.2g}, {band[1]:.2g}]")
    if best:
        ax.axvline(best, color="k", lw=1.5, label=f"measured optimum (band centre) {best:.2g}, {t_best:.0f} steps")
    if not summary["bracketed"][0]:
        ax.text(0.02, 0.02, "optimum not bracketed (stats.extend_max reached)", transform=ax.transAxes, color="tab:red", fontsize=8)
    if summary["t_ct"][0]:
        ax.plot(np.geomspace(rates.min(), rates.max(), 50), summary["t_ct"][0] / np.geomspace(rates.min(), rates.max(), 50),
                "-", color="tab:blue", lw=0.8, label=f"gradient flow T_ct/λ (T_ct = {summary['t_ct'][0]:.3g})")
    if summary["inv_lambda_star"][0]:
        ax.axvline(summary["inv_lambda_star"][0], color="0.4", ls=":", lw=1, label=f"1/λ* = {summary['inv_lambda_star'][0]:.2g}")
        ax.axvline(summary["stability_edge_predicted"][0], color="0.4", ls="--", lw=1, label=f"2/λ* = {summary['stability_edge_predicted'][0]:.2g}")
    em = summary["stability_edge_measured"][0]
    if em:
        ax.axvline(em, color="tab:red", lw=1, label=f"measured edge {em:.2g}")
    opt = summary["theory_optimal_learning_rate"][0]
    ax.axvline(opt, color="tab:red", ls=":", lw=1, label=f"supplement 1/λ₁(a_opt) = {opt:.2g} (prediction)")


def _time_panel(ax: Any, r: LrSweepResult, rates: np.ndarray) -> None:
    """Learning time against rate, with the measured optimum, edge and the predictions."""
    lt = r.arrays["learning_time"][0]
    ok = np.isfinite(lt)
    top = _measured_times(ax, r.summary, r.arrays, rates)
    _rate_marks(ax, r.summary, rates)
    ax.set_xscale("log")
    if ok.any():
        ax.set_yscale("log")
        ax.set_ylim(max(np.nanmin(lt[ok]) * 0.5, 1), top * 1.6)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("learning time (steps)")
    ax.set_title("Learning time vs rate")
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: the valley stays visible


def _sharpness_panel(ax: Any, r: LrSweepResult) -> None:
    """λ_max along the flow path (the small-rate run or the end-to-end flow, against flow time:
    the run's rate adapts) against 2/rate at the fastest rate and at 1/λ*."""
    summary, depth = r.summary, r.depth
    s_time = r.arrays[f"sharpness_times_depth{depth}"]  # this run's own arrays: one time per value
    s_val = r.arrays[f"sharpness_depth{depth}"]
    if len(s_val):
        if (summary.get("flow_method") or [None])[0] == "end_to_end":
            label = "λ_max along the gradient flow (balanced, on the end-to-end map)"
        else:
            label = f"λ_max along the small-rate run (last rate {summary['t_ct_rate'][0]:.2g})"
        ax.plot(s_time, s_val, "o-", color="k", ms=3, label=label)
        for lr, c in ((summary["fastest_rate"][0], "tab:orange"), (summary["inv_lambda_star"][0], "0.4")):
            if lr:
                ax.axhline(2.0 / lr, color=c, ls="--", lw=1, label=f"2/λ at rate {lr:.2g}")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("gradient-flow time (rate × steps)")
    ax.set_ylabel("top Hessian eigenvalue")
    ax.set_title("Progressive sharpening vs 2/rate")


def figure(out: Path, r: LrSweepResult) -> None:
    """``lr_sweep.{png,pdf}``: learning curves, learning time vs rate, progressive sharpening."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    rates = np.asarray(r.arrays["learning_rates"], float)
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 6.2))
    _curves_panel(fig, a1, r, rates)
    _time_panel(a2, r, rates)
    _sharpness_panel(a3, r)
    fig.tight_layout()
    save_figure(fig, out / "lr_sweep")


def sharpening_figure(out: Path, r: LrSweepSharpening) -> None:
    """``lr_sweep_sharpening.{png,pdf}``: λ_max against 2/rate (with the top eigenvector's share
    along Σ11's top eigenvector), and the loss, along the edge-of-stability run."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    info, arrays = r.info, r.arrays
    st, lam = arrays["sharpening_steps"], arrays["sharpening_lambda"]
    loss, ovl = arrays["sharpening_loss"], arrays["sharpening_overlap"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7.5, 6.5), sharex=True)
    a1.plot(st, lam, "o-", color="k", ms=2.5, lw=1, label="top Hessian eigenvalue λ_max")
    a1.axhline(info["two_over_rate"], color="tab:red", ls="--", lw=1.2, label=f"2 / rate = {info['two_over_rate']:.3g}")
    a1.set_yscale("log")
    a1.set_ylabel("λ_max")
    ax = a1.twinx()
    ax.plot(st, ovl, "-", color="tab:blue", lw=1, alpha=0.8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("eigvec share on W¹ along Σ11's top eigvec", color="tab:blue", fontsize=8)
    a1.set_title(f"Edge of stability, depth {r.depth} ({r.dataset}): rate {info['rate']:.3g} "
                 f"= {info['rate_factor']:g} × 2/λ*")
    a2.plot(np.arange(len(loss)), loss, "-", color="k", lw=0.8, label="training error E")
    a2.axhline(r.threshold, color="tab:red", ls=":", lw=1, label="learning threshold")
    for key, c, lab in (("first_snapshot_step_lambda_above_2_over_rate", "tab:red", "λ_max reaches 2/rate"),
                        ("first_loss_rise_step", "tab:orange", "first loss rise")):
        if info.get(key) is not None:
            for a in (a1, a2):
                a.axvline(info[key], color=c, lw=0.8, ls="-.", label=lab if a is a2 else None)
    a2.set_yscale("log")
    a2.set_xlabel("step")
    a2.set_ylabel("E")
    a1.legend(fontsize=7, loc="lower right")
    a2.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "lr_sweep_sharpening")
