"""Fig. 2: phase portrait of the decoupled three-layer dynamics (Eq. 8).

Vector field of ``tau da/dt = b(s - ab)``, ``tau db/dt = a(s - ab)``, the fixed-point
hyperbola ``ab = s``, the invariant hyperbolas ``a^2 - b^2 = c``, and trajectories from
several starts, each simulated by discrete gradient descent (step ``dt`` in units of tau)
and drawn again from the analytic solution (supplement Eqs. 1-4, both branches; see
:func:`dlnjax.theory.closed_form.hyperbolic_trajectory`).

    python -m experiments.phase_portrait [dt=0.01] [starts='[[0.05,0.6],[1.4,-0.2]]']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from omegaconf import DictConfig

from .common import entry, resolved_config, run_dir, write_results
from ._shared.plots.phase_portrait import PhasePortraitResult, figure

log = logging.getLogger("dlnjax")


@dataclass(frozen=True)
class StartRun:
    """One start's simulated and analytic trajectories and what the summary reports about them."""

    sim: np.ndarray  # (T, 2) gradient descent
    ana: np.ndarray  # (T, 2) supplement Eqs. 1-4
    drift: float  # max |c(t) - c(0)| of the conserved a^2 - b^2 along the simulation
    time_err: float | None  # relative error of the simulated time to reach uf (None if not measured)
    row: dict  # the summary's entry for this start


def simulate(a0: float, b0: float, s: float, tau: float, dt: float, n_steps: int) -> np.ndarray:
    """Discrete gradient descent on E = (s - ab)^2 / (2 tau) with step dt (float64, NumPy)."""
    out = np.empty((n_steps + 1, 2))
    a, b = float(a0), float(b0)
    out[0] = a, b
    for i in range(n_steps):
        e = (s - a * b) / tau
        a, b = a + dt * b * e, b + dt * a * e
        out[i + 1] = a, b
    return out


def analytic(t: np.ndarray, a0: float, b0: float, s: float, tau: float) -> np.ndarray:
    """Supplement Eqs. 1-4 (corrected, see dlnjax.theory.closed_form); the basin a + b < 0 by symmetry."""
    from dlnjax.theory import closed_form as theory

    sign = 1.0 if a0 + b0 >= 0 else -1.0
    a, b = theory.hyperbolic_trajectory(t, s, sign * a0, sign * b0, tau)
    return sign * np.stack([np.asarray(a), np.asarray(b)], axis=1)


def crossing_time(sim: np.ndarray, t: np.ndarray, uf: float, dt: float) -> float:
    """When the simulated u = ab first reaches uf (linear interpolation); nan if never or at t = 0."""
    u = sim[:, 0] * sim[:, 1]
    t_sim = float("nan")
    idx = np.nonzero(u >= uf)[0]
    if len(idx) and idx[0] > 0:
        i = idx[0]
        t_sim = t[i - 1] + (uf - u[i - 1]) / (u[i] - u[i - 1]) * dt
    return t_sim


def run_start(a0: float, b0: float, s: float, tau: float, dt: float, n_steps: int, t: np.ndarray, uf: float) -> StartRun:
    """Simulate and solve one start; compare their times to reach uf when it starts below uf (logged)."""
    from dlnjax.theory import closed_form as theory

    sim = simulate(a0, b0, s, tau, dt, n_steps)
    ana = analytic(t, a0, b0, s, tau)
    c = sim[:, 0] ** 2 - sim[:, 1] ** 2
    drift = float(np.max(np.abs(c - c[0])))
    sign = 1.0 if a0 + b0 >= 0 else -1.0
    t_an = t_sim = float("nan")
    time_err = None
    if a0 * b0 < uf and a0 + b0 != 0:
        t_an = float(theory.hyperbolic_learning_time(s, sign * a0, sign * b0, uf, tau))
        t_sim = crossing_time(sim, t, uf, dt)
        time_err = abs(t_sim - t_an) / t_an
    row = dict(a0=a0, b0=b0, c=a0 * a0 - b0 * b0, t_analytic=t_an, t_simulated=t_sim,
               max_traj_diff=float(np.max(np.abs(sim - ana))))
    log.info("start (%.2f, %.2f): t(u=%.2f) analytic %.4f simulated %.4f", a0, b0, uf, t_an, t_sim)
    return StartRun(sim=sim, ana=ana, drift=drift, time_err=time_err, row=row)


def summarise(cfg: DictConfig, s: float, tau: float, dt: float, runs: list[StartRun]) -> dict:
    """The run's summary dict: the worst conserved drift, time error and trajectory difference, per-start rows."""
    drifts = [r.drift for r in runs]
    time_errs = [r.time_err for r in runs if r.time_err is not None]
    rows = [r.row for r in runs]
    return dict(
        experiment="phase_portrait",
        s=s,
        tau=tau,
        dt=dt,
        max_conserved_drift=max(drifts),
        max_analytic_time_error=max(time_errs) if time_errs else None,
        max_trajectory_difference=max(r["max_traj_diff"] for r in rows),
        starts=rows,
        config=resolved_config(cfg),
    )


def run(cfg: DictConfig) -> dict:
    """Fig. 2: simulate and solve each start, draw the phase portrait, write the results."""
    import matplotlib

    matplotlib.use("Agg")

    out = run_dir()
    s, tau, dt = float(cfg.s), float(cfg.tau), float(cfg.dt)
    n_steps = int(round(cfg.t_max / dt))
    t = np.arange(n_steps + 1) * dt
    uf = cfg.uf_fraction * s
    runs = [run_start(a0, b0, s, tau, dt, n_steps, t, uf) for a0, b0 in cfg.starts]
    sims, anas = np.stack([r.sim for r in runs]), np.stack([r.ana for r in runs])
    figure(out, PhasePortraitResult(s=s, tau=tau, extent=float(cfg.extent), grid=int(cfg.grid), simulated=sims, analytic=anas))
    summary = summarise(cfg, s, tau, dt, runs)
    write_results(out, summary, t=t, simulated=sims, analytic=anas, starts=np.asarray(cfg.starts))
    log.info("max conserved drift %.3g, max analytic time error %.3g", summary["max_conserved_drift"], summary["max_analytic_time_error"] or float("nan"))
    return summary


main = entry("phase_portrait", run)


if __name__ == "__main__":
    main()
