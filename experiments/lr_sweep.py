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
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ._shared import depth_loop
from ._shared.plots.lr_sweep import LrSweepResult, LrSweepSharpening, figure, sharpening_figure
from ._shared.problem import learning_rate_grid, prepare
from .common import entry, resolved_config, run_dir, write_results

log = logging.getLogger("dlnjax")

# The sharpening run's rate: this many times the predicted edge 2/lambda* (so lambda_max, which
# grows to lambda* along the gradient-flow path, meets 2/rate = lambda*/factor on the way).
SHARPENING_RATE_FACTOR = 1.5
SHARPENING_SNAPSHOTS = 100

# depth_loop's summary fields that only mean something across depths (dropped for one depth)
ACROSS_DEPTH_KEYS = ("depths", "lr_exponent", "lr_exponent_ci", "learning_time_growth", "learning_time_growth_ci",
                     "learning_time_late_slope", "learning_time_late_slope_ci", "t_ct_growth", "lr_exponent_fit_depths",
                     "edge_exponent", "inv_lambda_star_exponent", "steps_at_inv_lambda_star_late_slope", "theory_lr_exponent",
                     "theory_learning_time_late_slope", "prediction_depths_on_target",
                     "finite_rate_prediction_depths_on_target")


def sharpening_schedule(lam_star: float, t_ct: float, max_steps: int) -> tuple[float, int, int, int]:
    """The sharpening run's rate, snapshot count, steps between snapshots and total steps."""
    lr = SHARPENING_RATE_FACTOR * 2.0 / float(lam_star)
    n_steps = int(min(2.0 * float(t_ct) / lr, 4 * max_steps))
    n_snap = max(1, min(SHARPENING_SNAPSHOTS, n_steps))
    every = max(1, n_steps // n_snap)
    n_steps = every * n_snap
    return lr, n_snap, every, n_steps


def mean_input_cosine(problem: Any, q_top: np.ndarray) -> float | None:
    """|cos| of the angle between Sigma11's top eigenvector and the mean input (None if that is 0)."""
    mean = np.asarray(problem.ds.x, np.float64).mean(axis=0)
    mean_norm = float(np.linalg.norm(mean))
    return float(abs(mean @ q_top) / mean_norm) if mean_norm > 0 else None


def track_sharpness(member: Any, cores: Any, engine: Any, lr: float, n_snap: int, every: int, q_top: np.ndarray,
                    depth: int) -> tuple[list, list, list, list, Any]:
    """Train in ``n_snap`` chunks of ``every`` steps (until divergence); at the start and after each
    chunk: lambda_max, its eigenvector's overlap with Sigma11's top direction and first-layer share."""
    import jax.numpy as jnp

    from dlnjax.networks import compressed

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
    return steps, lam, ovl, first_share, o


def run_loss(o: Any) -> np.ndarray:
    """The sharpening run's loss at every step it took (empty if it never trained)."""
    loss = np.asarray(o.loss, np.float64) if o is not None else np.zeros(0)
    n_done = (o.steps if o is not None else 0) + 1
    return loss[: min(n_done, len(loss))]


def sharpening_events(loss: np.ndarray, lam_a: np.ndarray, steps: list, lr: float, rtol: float, threshold: float) -> dict:
    """When lambda_max first reaches 2/rate, the loss first rises, and it crosses the threshold."""
    rise = np.nonzero(loss[1:] > (1.0 + rtol) * loss[:-1])[0]
    above = np.nonzero(lam_a >= 2.0 / lr)[0]
    after = lam_a[above[0]:] if above.size else lam_a[:0]
    below_thr = np.nonzero(loss < threshold)[0]
    return dict(
        first_snapshot_step_lambda_above_2_over_rate=int(steps[above[0]]) if above.size else None,
        first_loss_rise_step=int(rise[0] + 1) if rise.size else None,
        loss_rises=int(rise.size),
        threshold_crossing_step=int(below_thr[0]) if below_thr.size else None,
        lambda_max_over_2_over_rate_after_crossing_median=float(np.median(after * lr / 2.0)) if after.size else None,
    )


def sharpening_run(cfg: DictConfig, problem, engine, rec, depth: int) -> tuple[dict, dict] | None:
    """One run from the decoupled start at ``SHARPENING_RATE_FACTOR * 2 / lambda*`` for twice the
    gradient-flow estimate ``T_ct / rate`` of its learning time (capped at 4 x max_steps), not
    stopped at the threshold: the loss at every step, and at ``SHARPENING_SNAPSHOTS`` snapshots
    the Hessian's top eigenvalue (power iteration, warm-started from the previous snapshot's
    eigenvector) and the share of that eigenvector on the first layer's column along Sigma11's top
    eigenvector (:func:`dlnjax.networks.compressed.input_direction_overlap`). Compressed engine only."""
    from dlnjax.networks import compressed

    lam_star, t_ct = rec.stats.get("lam_star"), rec.stats.get("t_ct")  # the flow path's 1/lambda*, not the optimum
    if not engine.compress or not lam_star or not t_ct:
        return None
    lr, n_snap, every, n_steps = sharpening_schedule(lam_star, t_ct, int(cfg.max_steps))
    task = problem.task
    dtype = task.stats.sigma11.dtype
    cores = compressed.decoupled_cores(rec.widths, float(cfg.u0), task.u, task.v, engine.rot,
                                       l_cap=compressed.capacity([depth]), dtype=dtype)
    member = compressed.member_fn(engine.cs, cores, -float("inf"), record_every=1, max_steps=n_steps,
                                  last_trained=depth > 2)
    q_top = np.asarray(engine.rot.q[:, 0], np.float64)
    cos_mean = mean_input_cosine(problem, q_top)
    steps, lam, ovl, first_share, o = track_sharpness(member, cores, engine, lr, n_snap, every, q_top, depth)
    loss = run_loss(o)
    lam_a = np.asarray(lam)
    peak = int(np.argmax(lam_a))
    info = dict(
        rate=lr, rate_factor=SHARPENING_RATE_FACTOR, two_over_rate=2.0 / lr, steps=int(steps[-1]), snapshots=len(steps),
        diverged=bool(o is not None and o.diverge_step >= 0),
        lambda_max_start=lam[0], lambda_max_peak=float(lam_a.max()), lambda_max_end=lam[-1],
        **sharpening_events(loss, lam_a, steps, lr, float(cfg.stats.spike_rtol), rec.threshold),
        top_eigvec_overlap_sigma11_top=dict(start=ovl[0], at_peak=ovl[peak], end=ovl[-1], median=float(np.median(ovl))),
        top_eigvec_first_layer_share=dict(start=first_share[0], at_peak=first_share[peak], end=first_share[-1]),
        sigma11_top_eigenvalue=float(engine.rot.lam[0]),
        cos_sigma11_top_vs_mean_input=cos_mean,
    )
    arrays = dict(sharpening_steps=np.asarray(steps), sharpening_lambda=lam_a, sharpening_overlap=np.asarray(ovl),
                  sharpening_first_share=np.asarray(first_share), sharpening_loss=loss)
    return info, arrays


def jax_sharpness(depth: int):
    """The jitted power iteration for the Hessian's top eigenpair (60 iterations) at this depth."""
    import jax

    from dlnjax.networks import compressed

    f = jax.jit(lambda c, cs, v0: compressed.sharpness(c, cs, v0, iters=60, last_trained=depth > 2))
    return f


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


def finite_rate_fields(cfg: DictConfig, problem, depth: int, rates: np.ndarray, rec, lt: np.ndarray) -> dict:
    """Whitened inputs: the finite-rate prediction per rate, the top mode's edge, and how well the
    prediction matches the measured learning times ``lt`` below and above that edge."""
    from dlnjax.theory import finite_rate

    fields = dict(finite_rate_theory_learning_time=finite_rate_prediction(cfg, problem, depth, np.sort(rates), rec))
    pred = np.asarray([np.nan if p is None else p for p in fields["finite_rate_theory_learning_time"]])
    edge = float(finite_rate.stability_edge(float(problem.task.s[0]), 1.0, depth))
    below = np.sort(rates) < edge
    both = np.isfinite(lt) & np.isfinite(pred) & below
    # below the top mode's edge the maps are the network (to rounding); above it, in the
    # chaotic window, only the outcome (learned or not) is compared
    fields["finite_rate_theory_edge"] = edge
    fields["finite_rate_theory_max_abs_step_error_below_edge"] = float(np.max(np.abs(lt[both] - pred[both]))) if both.any() else None
    fields["finite_rate_theory_outcome_agreement_above_edge"] = (
        float(np.mean(np.isfinite(lt[~below]) == np.isfinite(pred[~below]))) if (~below).any() else None)
    return fields


def log_sharpening(info: dict) -> None:
    """One log line on the sharpening run."""
    log.info("sharpening run at rate %.3g (2/rate %.3g): lambda_max %.3g -> peak %.3g; reaches 2/rate at step %s, "
             "first loss rise at step %s; top eigenvector's share on W1 along Sigma11's top eigenvector: median %.3g",
             info["rate"], info["two_over_rate"], info["lambda_max_start"], info["lambda_max_peak"],
             info["first_snapshot_step_lambda_above_2_over_rate"], info["first_loss_rise_step"],
             info["top_eigvec_overlap_sigma11_top"]["median"])


def run(cfg: DictConfig) -> dict:
    """Sweep the rates at one depth, draw both figures and write the results."""
    import matplotlib

    matplotlib.use("Agg")

    out = run_dir()
    t_start = time.time()
    problem = prepare(cfg)
    depth = int(cfg.depth)
    rates = learning_rate_grid(cfg)
    recs, engine = depth_loop.run_depths(cfg, problem, [depth], rates, "lr_sweep")
    summary = dict(experiment="lr_sweep", depth=depth, **depth_loop.summary_fields(cfg, problem, [depth], rates, recs, engine))
    for k in ACROSS_DEPTH_KEYS:
        summary.pop(k, None)
    arrays = depth_loop.result_arrays([depth], rates, recs)
    if problem.whitened:
        summary.update(finite_rate_fields(cfg, problem, depth, rates, recs[0], arrays["learning_time"][0]))
    figure(out, LrSweepResult(summary=summary, arrays=arrays, depth=depth))
    sh = sharpening_run(cfg, problem, engine, recs[0], depth)
    if sh is not None:
        summary["sharpening"], sh_arrays = sh
        arrays.update(sh_arrays)
        sharpening_figure(out, LrSweepSharpening(info=summary["sharpening"], arrays=sh_arrays, depth=depth,
                                                 dataset=summary["dataset"], threshold=recs[0].threshold))
        log_sharpening(sh[0])
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
