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

import numpy as np
from omegaconf import DictConfig

from .common import entry, resolved_config, run_dir, save_figure, write_results

log = logging.getLogger("dlnjax")


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


def run(cfg: DictConfig) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlnjax.theory import closed_form as theory

    out = run_dir()
    s, tau, dt = float(cfg.s), float(cfg.tau), float(cfg.dt)
    n_steps = int(round(cfg.t_max / dt))
    t = np.arange(n_steps + 1) * dt
    uf = cfg.uf_fraction * s
    sims, anas, drifts, time_errs, rows = [], [], [], [], []
    for a0, b0 in cfg.starts:
        sim = simulate(a0, b0, s, tau, dt, n_steps)
        ana = analytic(t, a0, b0, s, tau)
        sims.append(sim)
        anas.append(ana)
        c = sim[:, 0] ** 2 - sim[:, 1] ** 2
        drifts.append(float(np.max(np.abs(c - c[0]))))
        sign = 1.0 if a0 + b0 >= 0 else -1.0
        u = sim[:, 0] * sim[:, 1]
        t_an = t_sim = float("nan")
        if a0 * b0 < uf and a0 + b0 != 0:
            t_an = float(theory.hyperbolic_learning_time(s, sign * a0, sign * b0, uf, tau))
            idx = np.nonzero(u >= uf)[0]
            if len(idx) and idx[0] > 0:
                i = idx[0]
                t_sim = t[i - 1] + (uf - u[i - 1]) / (u[i] - u[i - 1]) * dt
            time_errs.append(abs(t_sim - t_an) / t_an)
        rows.append(dict(a0=a0, b0=b0, c=a0 * a0 - b0 * b0, t_analytic=t_an, t_simulated=t_sim,
                         max_traj_diff=float(np.max(np.abs(sim - ana)))))
        log.info("start (%.2f, %.2f): t(u=%.2f) analytic %.4f simulated %.4f", a0, b0, uf, t_an, t_sim)

    # ---- figure
    ext = float(cfg.extent)
    fig, ax = plt.subplots(figsize=(6.2, 6))
    g = np.linspace(-ext, ext, int(cfg.grid))
    A, B = np.meshgrid(g, g)
    E = s - A * B
    ax.quiver(A, B, B * E / tau, A * E / tau, color="tab:blue", alpha=0.55, angles="xy", width=0.003)
    fine = np.linspace(-ext, ext, 400)
    AA, BB = np.meshgrid(fine, fine)
    ax.contour(AA, BB, AA**2 - BB**2, levels=np.linspace(-3, 3, 13), colors="0.75", linewidths=0.6, linestyles="-")
    ax.contour(AA, BB, AA * BB - s, levels=[0.0], colors="tab:red", linewidths=2.0)
    for k, (sim, ana) in enumerate(zip(sims, anas)):
        ax.plot(sim[:, 0], sim[:, 1], color="tab:green", lw=2.4, alpha=0.8, label="gradient descent" if k == 0 else None)
        ax.plot(ana[:, 0], ana[:, 1], color="k", lw=1.0, ls="--", label="analytic (supp. Eq. 1-4)" if k == 0 else None)
        ax.plot(sim[0, 0], sim[0, 1], "o", color="tab:green", ms=5)
    ax.plot([], [], color="tab:red", lw=2, label="fixed points ab = s")
    ax.plot([], [], color="0.75", lw=0.8, label="invariant a² − b² = c")
    ax.set_xlim(-ext, ext)
    ax.set_ylim(-ext, ext)
    ax.set_aspect("equal")
    ax.set_xlabel("a")
    ax.set_ylabel("b")
    ax.set_title(f"Phase portrait of Eq. 8 (τ = {tau:g}, s = {s:g})")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    save_figure(fig, out / "phase_portrait")

    summary = dict(
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
    write_results(out, summary, t=t, simulated=np.stack(sims), analytic=np.stack(anas), starts=np.asarray(cfg.starts))
    log.info("max conserved drift %.3g, max analytic time error %.3g", summary["max_conserved_drift"], summary["max_analytic_time_error"] or float("nan"))
    return summary


main = entry("phase_portrait", run)


if __name__ == "__main__":
    main()
