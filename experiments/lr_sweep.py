"""The inner sweep of Fig. 4 for one depth: learning curves for every rate, and learning time
against rate with the stability edge (measured and the supplement's estimate) marked.

    python -m experiments.lr_sweep depth=10
    python -m experiments.lr_sweep depth=20 data=fashion_mnist learning_rates.num=30
"""

from __future__ import annotations

import logging
import time

import numpy as np
from omegaconf import DictConfig

from . import schema  # noqa: F401
from .common import entry, resolved_config, run_dir, save_figure, write_results
from .depth_sweep import learning_rate_grid, prepare, sweep_depths, theory_optimal_rate

log = logging.getLogger("dlnjax")


def run(cfg: DictConfig) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm
    from matplotlib.colors import LogNorm

    from dlnjax import sweep

    out = run_dir()
    t_start = time.time()
    ds, task = prepare(cfg)
    depth = int(cfg.depth)
    rates = learning_rate_grid(cfg)
    (res,) = sweep_depths(cfg, task, [depth], rates, progress_label="lr_sweep")
    best, best_t = sweep.best_rate(res)
    opt = theory_optimal_rate(task, depth)
    diverged_rates = rates[res.diverged]
    measured_edge = float(diverged_rates.min()) if diverged_rates.size else None

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11.5, 4.3))
    norm = LogNorm(vmin=rates.min(), vmax=max(rates.max(), rates.min() * 1.0001))
    cmap = plt.get_cmap("viridis")
    for j, lr in enumerate(rates):
        a1.plot(res.record_steps, res.loss[j], color=cmap(norm(lr)), lw=1.1)
    a1.axhline(res.threshold, color="tab:red", ls="--", lw=1, label="threshold")
    a1.axhline(res.e_star, color="k", ls=":", lw=1, label="best error E*")
    if np.any(np.isfinite(res.loss) & (res.loss > 0)):
        a1.set_yscale("log")
    a1.set_xlabel("step")
    a1.set_ylabel("training error E")
    a1.set_title(f"Learning curves, depth {depth} ({ds.name})")
    a1.legend(fontsize=8)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=a1, label="learning rate")
    ok = np.isfinite(res.learning_time)
    a2.plot(rates[ok], res.learning_time[ok], "o-", color="k", label="learning time")
    # Rates that neither learned nor diverged (still above the threshold when training stopped)
    # sit with the diverged ones on a row above the curve, so no rate of the grid goes unshown.
    top = float(np.nanmax(res.learning_time)) * 1.15 if ok.any() else 1.0
    if res.diverged.any():
        a2.plot(rates[res.diverged], np.full(res.diverged.sum(), top), "x", color="tab:red", label="diverged")
    stalled = ~ok & ~res.diverged
    if stalled.any():
        a2.plot(rates[stalled], np.full(stalled.sum(), top), "^", mfc="none", color="tab:gray",
                label=f"not learned in {int(cfg.max_steps)} steps")
    if measured_edge is not None:
        a2.axvline(measured_edge, color="tab:red", lw=1, label=f"first diverging rate {measured_edge:.2g}")
    a2.axvline(opt, color="tab:red", ls="--", lw=1, label=f"supplement 1/λ₁(a_opt) = {opt:.2g}")
    a2.axvline(2 * opt, color="tab:orange", ls=":", lw=1, label=f"stability edge 2/λ₁ = {2 * opt:.2g}")
    a2.set_xscale("log")
    if ok.any():
        a2.set_yscale("log")
    else:
        a2.text(0.5, 0.5, "no rate learned within max_steps", transform=a2.transAxes, ha="center")
    a2.set_xlabel("learning rate")
    a2.set_ylabel("learning time (steps)")
    a2.set_title("Learning time vs rate")
    a2.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "lr_sweep")

    summary = dict(
        experiment="lr_sweep",
        dataset=ds.name,
        n_train=ds.n_train,
        preprocessing=ds.info.get("preprocessing", "none"),
        depth=depth,
        learning_rates=rates,
        learning_time=res.learning_time,
        diverged=res.diverged,
        best_learning_rate=best,
        best_learning_time=best_t,
        first_diverging_rate=measured_edge,
        theory_optimal_learning_rate=opt,
        theory_stability_edge=2 * opt,
        threshold=dict(kind=cfg.threshold.kind.value, value=res.threshold, best_error=res.e_star, initial_error=res.loss0),
        seconds_total=time.time() - t_start,
        config=resolved_config(cfg),
    )
    write_results(out, summary, learning_rates=rates, steps=res.record_steps, loss=res.loss,
             learning_time=res.learning_time, diverged=res.diverged)
    log.info("depth %d: best rate %s (theory %.3g), first diverging %s; wrote %s", depth, best, opt, measured_edge, out)
    return summary


main = entry("lr_sweep", run)


if __name__ == "__main__":
    main()
