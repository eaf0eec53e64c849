"""Fig. 8: the edge of chaos of deep tanh networks.

The fixed point q_inf(g) of the variance map ``q^{l+1} = g^2 int Dz tanh(sqrt(q^l) z)^2``
(App. G; Gauss-Hermite quadrature, exact bisection for the fixed point) against the
variance ``q^{N_l}`` of simulated networks ``x^{l+1} = g W phi(x^l)`` with random orthogonal W
(depth 30, several widths, mean over seeds), and ``chi = g^2 int Dz tanh'(sqrt(q_inf) z)^2``,
which crosses 1 at the critical gain g_c = 1.

    python -m experiments.edge_of_chaos [widths='[100,300,1000]'] [depth=30] [weights=gaussian]
"""

from __future__ import annotations

import logging
import time

import numpy as np
from omegaconf import DictConfig

from .common import Progress, entry, resolved_config, run_dir, save_figure, write_results

log = logging.getLogger("dlnjax")


def critical_gain(lo: float = 0.5, hi: float = 2.0, tol: float = 1e-6) -> float:
    """Smallest g with a positive fixed point, by bisection on q_inf(g) > 0."""
    from dlnjax.nonlinear import chaos

    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if float(chaos.q_fixed_point(mid)) > 1e-9:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def run(cfg: DictConfig) -> dict:
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlnjax.nonlinear import chaos
    from dlnjax.measure import devices

    out = run_dir()
    t0 = time.time()
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    g_fine = np.linspace(cfg.gain_min, cfg.gain_max, int(cfg.gain_points))
    q_fine = np.asarray(chaos.q_fixed_point(jnp.asarray(g_fine)))
    chi_fine = np.asarray(chaos.chi(jnp.asarray(g_fine), jnp.asarray(q_fine)))
    gs = np.asarray(list(cfg.sim_gains), np.float64)
    q_th = np.asarray(chaos.q_fixed_point(jnp.asarray(gs)))
    chi_sim = np.asarray(chaos.chi(jnp.asarray(gs), jnp.asarray(q_th)))
    gc = critical_gain()
    kind = cfg.weights.value
    n_layers = int(cfg.depth) - 1
    sim, traj = {}, {}
    prog = Progress("edge_of_chaos", len(cfg.widths))
    key = jax.random.PRNGKey(cfg.seed)
    for i, n in enumerate(cfg.widths):
        qs = []
        for s in range(int(cfg.n_seeds)):
            kw, kx = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, n), s))
            w = chaos.random_weights(kw, int(n), n_layers, kind, dtype=dtype)
            x1 = jnp.sqrt(cfg.q1) * jax.random.normal(kx, (int(n),), dtype)
            f = devices.sharded_vmap(lambda g, x1=x1, w=w: chaos.forward_variances(x1, w, g))
            qs.append(np.asarray(f(jnp.asarray(gs, dtype)), np.float64))  # (G, depth)
        qs = np.stack(qs)  # (seeds, G, depth)
        sim[int(n)] = qs[:, :, -1].mean(0)
        traj[int(n)] = qs.mean(0)
        prog.update(i + 1, f"width {n}")

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.3))
    a1.plot(g_fine, q_fine, color="tab:red", lw=2, label="theory: fixed point of the variance map")
    for n, m in zip(sim, ("o", "s", "^", "D", "v")):
        a1.plot(gs, sim[n], m, mfc="none", label=f"simulated q at depth {cfg.depth}, N = {n}")
    a1.axvline(gc, color="0.5", ls=":", lw=1)
    a1.set_xlabel("gain g")
    a1.set_ylabel("q∞")
    a1.set_title(f"Fixed point of the variance map ({kind} weights)")
    a1.legend(fontsize=7)
    nmax = max(sim)
    cols = plt.get_cmap("plasma")(np.linspace(0, 0.9, len(gs)))
    for j, g in enumerate(gs):
        a2.plot(np.arange(1, int(cfg.depth) + 1), traj[nmax][j], color=cols[j], label=f"g = {g:g}")
        if q_th[j] > 0:
            a2.axhline(q_th[j], color="0.8", lw=0.6)
    a2.set_yscale("log")
    a2.set_xlabel("layer l")
    a2.set_ylabel("q^l")
    a2.set_title(f"Variance through the layers (N = {nmax}, q¹ = {cfg.q1:g})")
    a2.legend(fontsize=6, ncol=2)
    a3.plot(g_fine, chi_fine, color="tab:blue", lw=2, label="χ = g² ∫Dz tanh'(√q∞ z)²")
    a3.axhline(1.0, color="k", lw=0.8)
    a3.axvline(gc, color="0.5", ls=":", lw=1, label=f"g_c = {gc:.4f}")
    a3.set_xlabel("gain g")
    a3.set_ylabel("χ")
    a3.set_title("Order (χ < 1) and chaos (χ > 1)")
    a3.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "edge_of_chaos")

    summary = dict(
        experiment="edge_of_chaos",
        weights=kind,
        depth=int(cfg.depth),
        q1=float(cfg.q1),
        gains=gs,
        q_inf_theory=q_th,
        q_inf_simulated={str(n): v for n, v in sim.items()},
        q_inf_simulated_abs_error={str(n): np.abs(v - q_th) for n, v in sim.items()},
        chi=chi_sim,
        critical_gain=gc,
        seconds_total=time.time() - t0,
        config=resolved_config(cfg),
    )
    write_results(out, summary, gains_fine=g_fine, q_inf_fine=q_fine, chi_fine=chi_fine, gains=gs, q_inf_theory=q_th,
             **{f"q_layers_N{n}": traj[n] for n in traj})
    log.info("critical gain %.5f; wrote %s", gc, out)
    return summary


main = entry("edge_of_chaos", run)


if __name__ == "__main__":
    main()
