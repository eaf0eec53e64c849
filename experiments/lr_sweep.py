"""The inner sweep of Fig. 4 for one depth: learning curves for every rate; learning time against
rate with the measured optimum (the centre of the band of rates within 10% of the fastest,
band shaded), the measured stability edge, and the predictions 1/lambda*, 2/lambda* (lambda*: the
largest top Hessian eigenvalue on the gradient-flow path) and the supplement's 1/lambda_1; and
the progressive sharpening along the gradient-flow path.
``lr_sweep_sharpening.png``: the Hessian's top eigenvalue along one run at a rate near the edge
(``SHARPENING_RATE_FACTOR`` x the predicted edge 2/lambda*) against the line 2/rate, with the loss
and the share of the top eigenvector on the first layer's column along Sigma11's top eigenvector
(on raw pixels: the mean-image direction), so the edge of stability is visible.

The same robust statistics and engines as ``depth_sweep`` (compressed by default; see
``experiments/_shared/depth_loop.py`` and ``dlnjax.measure.robust``).

    python -m experiments.lr_sweep depth=10
    python -m experiments.lr_sweep depth=20 data=fashion_mnist learning_rates.num=30
"""

from __future__ import annotations

import logging
import time

import numpy as np
from omegaconf import DictConfig

from ._shared import depth_loop
from ._shared.problem import learning_rate_grid, prepare
from .common import entry, resolved_config, run_dir, save_figure, write_results

log = logging.getLogger("dlnjax")

# The sharpening run's rate: this many times the predicted edge 2/lambda* (so lambda_max, which
# grows to lambda* along the gradient-flow path, meets 2/rate = lambda*/factor on the way).
SHARPENING_RATE_FACTOR = 1.5
SHARPENING_SNAPSHOTS = 100


def make_figure(out, summary: dict, arrays: dict, depth: int, max_steps: int) -> None:
    import matplotlib.pyplot as plt
    from matplotlib import cm
    from matplotlib.colors import LogNorm

    rates = np.asarray(arrays["learning_rates"], float)
    lt, st = arrays["learning_time"][0], arrays["status"][0]
    steps, loss = arrays[f"steps_depth{depth}"], arrays[f"loss_depth{depth}"]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 6.2))
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
    band = summary["best_rate_band"][0]
    if band:
        a2.axvspan(band[0], band[1], color="0.88", zorder=0, label=f"rates within 10% of the fastest [{band[0]:.2g}, {band[1]:.2g}]")
    if best:
        a2.axvline(best, color="k", lw=1.5, label=f"measured optimum (band centre) {best:.2g}, {t_best:.0f} steps")
    if not summary["bracketed"][0]:
        a2.text(0.02, 0.02, "optimum not bracketed (stats.extend_max reached)", transform=a2.transAxes, color="tab:red", fontsize=8)
    if summary["t_ct"][0]:
        a2.plot(np.geomspace(rates.min(), rates.max(), 50), summary["t_ct"][0] / np.geomspace(rates.min(), rates.max(), 50),
                "-", color="tab:blue", lw=0.8, label=f"gradient flow T_ct/λ (T_ct = {summary['t_ct'][0]:.3g})")
    if summary["inv_lambda_star"][0]:
        a2.axvline(summary["inv_lambda_star"][0], color="0.4", ls=":", lw=1, label=f"1/λ* = {summary['inv_lambda_star'][0]:.2g}")
        a2.axvline(summary["stability_edge_predicted"][0], color="0.4", ls="--", lw=1, label=f"2/λ* = {summary['stability_edge_predicted'][0]:.2g}")
    em = summary["stability_edge_measured"][0]
    if em:
        a2.axvline(em, color="tab:red", lw=1, label=f"measured edge {em:.2g}")
    opt = summary["theory_optimal_learning_rate"][0]
    a2.axvline(opt, color="tab:red", ls=":", lw=1, label=f"supplement 1/λ₁(a_opt) = {opt:.2g} (prediction)")
    a2.set_xscale("log")
    if ok.any():
        a2.set_yscale("log")
        a2.set_ylim(max(np.nanmin(lt[ok]) * 0.5, 1), top * 1.6)
    a2.set_xlabel("learning rate")
    a2.set_ylabel("learning time (steps)")
    a2.set_title("Learning time vs rate")
    a2.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: the valley stays visible

    s_steps = arrays[f"sharpness_steps_depth{depth}"]
    s_val = arrays[f"sharpness_depth{depth}"]
    if len(s_steps):
        a3.plot(s_steps, s_val, "o-", color="k", ms=3, label=f"λ_max along the small-rate run (rate {summary['t_ct_rate'][0]:.2g})")
        for lr, c in ((summary["fastest_rate"][0], "tab:orange"), (summary["inv_lambda_star"][0], "0.4")):
            if lr:
                a3.axhline(2.0 / lr, color=c, ls="--", lw=1, label=f"2/λ at rate {lr:.2g}")
        a3.set_yscale("log")
        a3.legend(fontsize=7)
    a3.set_xlabel("step of the small-rate run")
    a3.set_ylabel("top Hessian eigenvalue")
    a3.set_title("Progressive sharpening vs 2/rate")
    fig.tight_layout()
    save_figure(fig, out / "lr_sweep")


def sharpening_run(cfg: DictConfig, problem, engine, rec, depth: int) -> tuple[dict, dict] | None:
    """One run from the decoupled start at ``SHARPENING_RATE_FACTOR * 2 / lambda*`` for twice the
    gradient-flow estimate ``T_ct / rate`` of its learning time (capped at 4 x max_steps), not
    stopped at the threshold: the loss at every step, and at ``SHARPENING_SNAPSHOTS`` snapshots
    the Hessian's top eigenvalue (power iteration, warm-started from the previous snapshot's
    eigenvector) and the share of that eigenvector on the first layer's column along Sigma11's top
    eigenvector (:func:`dlnjax.networks.compressed.input_direction_overlap`). Compressed engine only."""
    import jax.numpy as jnp

    from dlnjax.networks import compressed

    lam_star, t_ct = rec.stats.get("lam_star"), rec.stats.get("t_ct")  # the flow path's 1/lambda*, not the optimum
    if not engine.compress or not lam_star or not t_ct:
        return None
    lr = SHARPENING_RATE_FACTOR * 2.0 / float(lam_star)
    n_steps = int(min(2.0 * float(t_ct) / lr, 4 * int(cfg.max_steps)))
    n_snap = max(1, min(SHARPENING_SNAPSHOTS, n_steps))
    every = max(1, n_steps // n_snap)
    n_steps = every * n_snap
    task = problem.task
    dtype = task.stats.sigma11.dtype
    cores = compressed.decoupled_cores(rec.widths, float(cfg.u0), task.u, task.v, engine.rot,
                                       l_cap=compressed.capacity([depth]), dtype=dtype)
    member = compressed.member_fn(engine.cs, cores, -float("inf"), record_every=1, max_steps=n_steps,
                                  last_trained=depth > 2)
    q_top = np.asarray(engine.rot.q[:, 0], np.float64)
    mean = np.asarray(problem.ds.x, np.float64).mean(axis=0)
    mean_norm = float(np.linalg.norm(mean))
    cos_mean = float(abs(mean @ q_top) / mean_norm) if mean_norm > 0 else None
    steps, lam, ovl, first_share = [0], [], [], []
    o, v0 = None, None
    sharp = jax_sharpness(depth)
    for k in range(n_snap + 1):
        if k > 0:
            o = member(lr, k * every, o)
            if o.diverge_step >= 0:
                break
            steps.append(k * every)
        c = cores if o is None else o.state.cores
        val, vec = sharp(c, engine.cs, v0)
        v0 = vec
        lam.append(float(val))
        ovl.append(float(compressed.input_direction_overlap(vec, engine.rot, q_top)))
        first_share.append(float(jnp.sum(vec.first**2) / compressed._dot(vec._replace(n_hidden=None), vec._replace(n_hidden=None))))
    loss = np.asarray(o.loss, np.float64) if o is not None else np.zeros(0)
    n_done = (o.steps if o is not None else 0) + 1
    loss = loss[: min(n_done, len(loss))]
    rtol = float(cfg.stats.spike_rtol)
    rise = np.nonzero(loss[1:] > (1.0 + rtol) * loss[:-1])[0]
    lam_a = np.asarray(lam)
    above = np.nonzero(lam_a >= 2.0 / lr)[0]
    after = lam_a[above[0]:] if above.size else lam_a[:0]
    below_thr = np.nonzero(loss < rec.threshold)[0]
    info = dict(
        rate=lr, rate_factor=SHARPENING_RATE_FACTOR, two_over_rate=2.0 / lr, steps=int(steps[-1]), snapshots=len(steps),
        diverged=bool(o is not None and o.diverge_step >= 0),
        lambda_max_start=lam[0], lambda_max_peak=float(lam_a.max()), lambda_max_end=lam[-1],
        first_snapshot_step_lambda_above_2_over_rate=int(steps[above[0]]) if above.size else None,
        first_loss_rise_step=int(rise[0] + 1) if rise.size else None,
        loss_rises=int(rise.size),
        threshold_crossing_step=int(below_thr[0]) if below_thr.size else None,
        lambda_max_over_2_over_rate_after_crossing_median=float(np.median(after * lr / 2.0)) if after.size else None,
        top_eigvec_overlap_sigma11_top=dict(start=ovl[0], at_peak=ovl[int(np.argmax(lam_a))], end=ovl[-1],
                                            median=float(np.median(ovl))),
        top_eigvec_first_layer_share=dict(start=first_share[0], at_peak=first_share[int(np.argmax(lam_a))], end=first_share[-1]),
        sigma11_top_eigenvalue=float(engine.rot.lam[0]),
        cos_sigma11_top_vs_mean_input=cos_mean,
    )
    arrays = dict(sharpening_steps=np.asarray(steps), sharpening_lambda=lam_a, sharpening_overlap=np.asarray(ovl),
                  sharpening_first_share=np.asarray(first_share), sharpening_loss=loss)
    return info, arrays


def jax_sharpness(depth: int):
    import jax

    from dlnjax.networks import compressed

    f = jax.jit(lambda c, cs, v0: compressed.sharpness(c, cs, v0, iters=60, last_trained=depth > 2))
    return f


def sharpening_figure(out, info: dict, arrays: dict, depth: int, dataset: str, threshold: float) -> None:
    import matplotlib.pyplot as plt

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
    a1.set_title(f"Edge of stability, depth {depth} ({dataset}): rate {info['rate']:.3g} "
                 f"= {info['rate_factor']:g} × 2/λ*")
    a2.plot(np.arange(len(loss)), loss, "-", color="k", lw=0.8, label="training error E")
    a2.axhline(threshold, color="tab:red", ls=":", lw=1, label="learning threshold")
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


def finite_rate_prediction(cfg: DictConfig, problem, depth: int, rates: np.ndarray, rec) -> list:
    """Whitened inputs: a decoupled network *is* one exact scalar map per mode
    (:func:`dlnjax.theory.finite_rate.learning_time`), so its learning time at every rate is predicted
    to the step (None where the maps do not cross within max_steps or diverge)."""
    import jax
    import jax.numpy as jnp

    from dlnjax.theory import finite_rate

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
    recs, engine = depth_loop.run_depths(cfg, problem, [depth], rates, "lr_sweep")
    summary = dict(experiment="lr_sweep", depth=depth, **depth_loop.summary_fields(cfg, problem, [depth], rates, recs, engine))
    for k in ("depths", "lr_exponent", "lr_exponent_ci", "learning_time_growth", "learning_time_growth_ci",
              "learning_time_late_slope", "learning_time_late_slope_ci", "t_ct_growth", "lr_exponent_fit_depths",
              "edge_exponent", "inv_lambda_star_exponent", "steps_at_inv_lambda_star_late_slope", "theory_lr_exponent",
              "theory_learning_time_late_slope", "prediction_depths_on_target",
              "finite_rate_prediction_depths_on_target"):
        summary.pop(k, None)
    arrays = depth_loop.result_arrays([depth], rates, recs)
    if problem.whitened:
        summary["finite_rate_theory_learning_time"] = finite_rate_prediction(cfg, problem, depth, np.sort(rates), recs[0])
        lt = arrays["learning_time"][0]
        pred = np.asarray([np.nan if p is None else p for p in summary["finite_rate_theory_learning_time"]])
        from dlnjax.theory import finite_rate

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
    sh = sharpening_run(cfg, problem, engine, recs[0], depth)
    if sh is not None:
        summary["sharpening"], sh_arrays = sh
        arrays.update(sh_arrays)
        sharpening_figure(out, summary["sharpening"], sh_arrays, depth, summary["dataset"], recs[0].threshold)
        log.info("sharpening run at rate %.3g (2/rate %.3g): lambda_max %.3g -> peak %.3g; reaches 2/rate at step %s, "
                 "first loss rise at step %s; top eigenvector's share on W1 along Sigma11's top eigenvector: median %.3g",
                 sh[0]["rate"], sh[0]["two_over_rate"], sh[0]["lambda_max_start"], sh[0]["lambda_max_peak"],
                 sh[0]["first_snapshot_step_lambda_above_2_over_rate"], sh[0]["first_loss_rise_step"],
                 sh[0]["top_eigvec_overlap_sigma11_top"]["median"])
    summary["seconds_total"] = time.time() - t_start
    summary["config"] = resolved_config(cfg)
    write_results(out, summary, **arrays)
    log.info("depth %d: best rate %s (band %s), learning time %s, measured edge %s, 1/lambda* %s; wrote %s", depth,
             summary["best_learning_rate"][0], summary["best_rate_band"][0], summary["learning_time"][0],
             summary["stability_edge_measured"][0], summary["inv_lambda_star"][0], out)
    return summary


main = entry("lr_sweep", run)


if __name__ == "__main__":
    main()
