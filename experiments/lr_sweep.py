"""The inner sweep of Fig. 4 for one depth: learning curves for every rate; learning time against
rate with the measured stability edge, the sharpness-limited best rate 1/lambda* and the
predicted edge 2/lambda*; and the progressive sharpening along the gradient-flow path.

The same robust statistics and engines as ``depth_sweep`` (compressed by default; see
``experiments/_shared/fig4.py`` and ``dlnjax.robust``).

    python -m experiments.lr_sweep depth=10
    python -m experiments.lr_sweep depth=20 data=fashion_mnist learning_rates.num=30
"""

from __future__ import annotations

import logging
import time

import numpy as np
from omegaconf import DictConfig

from ._shared import fig4
from ._shared.problem import learning_rate_grid, prepare
from .common import entry, resolved_config, run_dir, save_figure, write_results

log = logging.getLogger("dlnjax")


def make_figure(out, summary: dict, arrays: dict, depth: int, max_steps: int) -> None:
    import matplotlib.pyplot as plt
    from matplotlib import cm
    from matplotlib.colors import LogNorm

    rates = np.asarray(arrays["learning_rates"], float)
    lt, st = arrays["learning_time"][0], arrays["status"][0]
    steps, loss = arrays[f"steps_depth{depth}"], arrays[f"loss_depth{depth}"]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4.4))
    norm = LogNorm(vmin=rates.min(), vmax=max(rates.max(), rates.min() * 1.0001))
    cmap = plt.get_cmap("viridis")
    for j, lr in enumerate(rates):
        if np.isfinite(loss[j]).any():
            a1.plot(steps, loss[j], color=cmap(norm(lr)), lw=1.0)
    thr = summary["threshold"]
    a1.axhline(thr["value_per_depth"][0], color="tab:red", ls="--", lw=1, label="threshold")
    a1.axhline(thr["best_error_per_depth"][0], color="k", ls=":", lw=1, label="best error E*")
    a1.set_yscale("log")
    a1.set_xlabel("step")
    a1.set_ylabel("training error E")
    a1.set_title(f"Learning curves, depth {depth} ({summary['dataset']})")
    a1.legend(fontsize=8)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=a1, label="learning rate")

    ok = np.isfinite(lt)
    a2.plot(rates[ok], lt[ok], "o-", color="k", label="learning time (measured)")
    if summary.get("finite_rate_theory_learning_time"):
        pr = np.asarray([np.nan if p is None else p for p in summary["finite_rate_theory_learning_time"]])
        a2.plot(rates, pr, "+", color="tab:red", ms=10, label="finite-rate theory (exact scalar maps)")
        a2.axvline(summary["finite_rate_theory_edge"], color="tab:red", ls="-.", lw=0.8,
                   label=f"top mode's edge {summary['finite_rate_theory_edge']:.2g}")
    spk = arrays["spikes"][0] > 0
    if (ok & spk).any():
        a2.plot(rates[ok & spk], lt[ok & spk], "o", mfc="none", mec="tab:orange", ms=9, label="loss spikes before crossing (EoS)")
    top = float(np.nanmax(lt)) * 1.2 if ok.any() else 1.0
    for s, (m, c, lab) in dict(diverged=("x", "tab:red", "diverged"), stopped=("v", "0.4", "stopped (3× the fastest)"),
                               unsettled=("^", "tab:purple", f"unsettled"), skipped=(".", "0.6", "skipped (slower still)")).items():
        sel = st == s
        if sel.any():
            a2.plot(rates[sel], np.full(sel.sum(), top), m, color=c, mfc="none" if m in "v^" else None, label=lab)
    best, t_best = summary["best_learning_rate"][0], summary["learning_time"][0]
    if best:
        a2.plot(np.geomspace(rates.min(), rates.max(), 50), summary["t_ct"][0] / np.geomspace(rates.min(), rates.max(), 50),
                "-", color="tab:blue", lw=0.8, label=f"gradient flow T_ct/λ (T_ct = {summary['t_ct'][0]:.3g})")
        a2.axvline(best, color="k", lw=1, label=f"best rate 1/λ* = {best:.2g}")
        a2.axvline(summary["stability_edge_predicted"][0], color="k", ls="--", lw=1, label=f"predicted edge 2/λ* = {summary['stability_edge_predicted'][0]:.2g}")
    em = summary["stability_edge_measured"][0]
    if em:
        a2.axvline(em, color="tab:red", lw=1, label=f"measured edge {em:.2g}")
    opt = summary["theory_optimal_learning_rate"][0]
    a2.axvline(opt, color="tab:red", ls=":", lw=1, label=f"supplement 1/λ₁(a_opt) = {opt:.2g}")
    a2.set_xscale("log")
    if ok.any():
        a2.set_yscale("log")
        a2.set_ylim(max(np.nanmin(lt[ok]) * 0.5, 1), top * 1.6)
    a2.set_xlabel("learning rate")
    a2.set_ylabel("learning time (steps)")
    a2.set_title("Learning time vs rate")
    a2.legend(fontsize=6.5)

    s_steps = arrays[f"sharpness_steps_depth{depth}"]
    s_val = arrays[f"sharpness_depth{depth}"]
    if len(s_steps):
        a3.plot(s_steps, s_val, "o-", color="k", ms=3, label=f"λ_max along the small-rate run (rate {summary['t_ct_rate'][0]:.2g})")
        for lr, c in ((summary["fastest_rate"][0], "tab:orange"), (best, "k")):
            if lr:
                a3.axhline(2.0 / lr, color=c, ls="--", lw=1, label=f"2/λ at rate {lr:.2g}")
        a3.set_yscale("log")
        a3.legend(fontsize=7)
    a3.set_xlabel("step of the small-rate run")
    a3.set_ylabel("top Hessian eigenvalue")
    a3.set_title("Progressive sharpening vs 2/rate")
    fig.tight_layout()
    save_figure(fig, out / "lr_sweep")


def finite_rate_prediction(cfg: DictConfig, problem, depth: int, rates: np.ndarray, rec) -> list:
    """Whitened inputs: a decoupled network *is* one exact scalar map per mode
    (:func:`dlnjax.finite_rate.learning_time`), so its learning time at every rate is predicted
    to the step (None where the maps do not cross within max_steps or diverge)."""
    import jax
    import jax.numpy as jnp

    from dlnjax import finite_rate

    r = min(rec.widths)
    s = jnp.asarray(problem.task.s[:r], jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    u0 = jnp.full_like(s, float(cfg.u0))
    eps = float(cfg.threshold.eps) if cfg.threshold.kind.value == "relative" else None
    thr = None if eps is not None else float(cfg.threshold.value) - rec.e_star
    out = []
    for lr in rates:
        lt = finite_rate.learning_time(u0, float(lr), s, 1.0, depth=depth, eps=eps, threshold=thr,
                                       max_steps=int(cfg.max_steps), e_star=rec.e_star)
        st = int(lt.step)
        out.append(float(st) if st >= 0 else None)
    return out


def run(cfg: DictConfig) -> dict:
    import matplotlib

    matplotlib.use("Agg")

    out = run_dir()
    t_start = time.time()
    problem = prepare(cfg)
    depth = int(cfg.depth)
    rates = learning_rate_grid(cfg)
    recs, engine = fig4.run_depths(cfg, problem, [depth], rates, "lr_sweep")
    summary = dict(experiment="lr_sweep", depth=depth, **fig4.summary_fields(cfg, problem, [depth], rates, recs, engine))
    for k in ("depths", "lr_exponent", "learning_time_growth", "t_ct_growth", "lr_exponent_fit_depths", "edge_exponent",
              "fastest_time_growth", "band_centre_exponent"):
        summary.pop(k, None)
    arrays = fig4.result_arrays([depth], rates, recs)
    if problem.whitened:
        summary["finite_rate_theory_learning_time"] = finite_rate_prediction(cfg, problem, depth, np.sort(rates), recs[0])
        lt = arrays["learning_time"][0]
        pred = np.asarray([np.nan if p is None else p for p in summary["finite_rate_theory_learning_time"]])
        from dlnjax import finite_rate

        edge = float(finite_rate.stability_edge(float(problem.task.s[0]), 1.0, depth))
        below = np.sort(rates) < edge
        both = np.isfinite(lt) & np.isfinite(pred) & below
        # below the top mode's edge the maps are the network (to rounding); above it, in the
        # chaotic window, only the outcome (learned or not) is compared
        summary["finite_rate_theory_edge"] = edge
        summary["finite_rate_theory_max_abs_step_error_below_edge"] = float(np.max(np.abs(lt[both] - pred[both]))) if both.any() else None
        summary["finite_rate_theory_outcome_agreement_above_edge"] = (
            float(np.mean(np.isfinite(lt[~below]) == np.isfinite(pred[~below]))) if (~below).any() else None)
    make_figure(out, summary, arrays, depth, int(cfg.max_steps))
    summary["seconds_total"] = time.time() - t_start
    summary["config"] = resolved_config(cfg)
    write_results(out, summary, **arrays)
    log.info("depth %d: best rate 1/lambda* %s, measured edge %s; wrote %s", depth, summary["best_learning_rate"][0],
             summary["stability_edge_measured"][0], out)
    return summary


main = entry("lr_sweep", run)


if __name__ == "__main__":
    main()
