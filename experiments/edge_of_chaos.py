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
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ._shared.plots.edge_of_chaos import EdgeOfChaosResult, figure
from .common import Progress, entry, resolved_config, run_dir, write_results

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


def theory(gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The variance map's fixed point q_inf and chi at each gain (numpy, from the JAX theory)."""
    import jax.numpy as jnp

    from dlnjax.nonlinear import chaos

    q = np.asarray(chaos.q_fixed_point(jnp.asarray(gains)))
    return q, np.asarray(chaos.chi(jnp.asarray(gains), jnp.asarray(q)))


def simulate_width(key: Any, n: int, gs: np.ndarray, cfg: DictConfig, kind: str, dtype: Any) -> np.ndarray:
    """The variance per layer of width-``n`` networks at every gain, for each seed: (seeds, G, depth)."""
    import jax
    import jax.numpy as jnp

    from dlnjax.measure import devices
    from dlnjax.nonlinear import chaos

    n_layers = int(cfg.depth) - 1
    qs = []
    for s in range(int(cfg.n_seeds)):
        kw, kx = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, n), s))
        w = chaos.random_weights(kw, int(n), n_layers, kind, dtype=dtype)
        x1 = jnp.sqrt(cfg.q1) * jax.random.normal(kx, (int(n),), dtype)
        f = devices.sharded_vmap(lambda g, x1=x1, w=w: chaos.forward_variances(x1, w, g))
        qs.append(np.asarray(f(jnp.asarray(gs, dtype)), np.float64))  # (G, depth)
    return np.stack(qs)  # (seeds, G, depth)


def simulate(cfg: DictConfig, gs: np.ndarray, kind: str, dtype: Any) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Per width, the seed-mean variance at the last layer (G,) and through the layers (G, depth)."""
    import jax

    sim, traj = {}, {}
    prog = Progress("edge_of_chaos", len(cfg.widths))
    key = jax.random.PRNGKey(cfg.seed)
    for i, n in enumerate(cfg.widths):
        qs = simulate_width(key, n, gs, cfg, kind, dtype)
        sim[int(n)] = qs[:, :, -1].mean(0)
        traj[int(n)] = qs.mean(0)
        prog.update(i + 1, f"width {n}")
    return sim, traj


def run(cfg: DictConfig) -> dict:
    """Compare the theory with simulated networks, draw the figure and write the results."""
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")

    out = run_dir()
    t0 = time.time()
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    g_fine = np.linspace(cfg.gain_min, cfg.gain_max, int(cfg.gain_points))
    q_fine, chi_fine = theory(g_fine)
    gs = np.asarray(list(cfg.sim_gains), np.float64)
    q_th, chi_sim = theory(gs)
    gc = critical_gain()
    kind = cfg.weights.value
    sim, traj = simulate(cfg, gs, kind, dtype)

    figure(out, EdgeOfChaosResult(weights=kind, depth=int(cfg.depth), q1=float(cfg.q1), gains_fine=g_fine,
                                  q_inf_fine=q_fine, chi_fine=chi_fine, gains=gs, q_inf_theory=q_th,
                                  q_inf_simulated=sim, q_layers=traj, critical_gain=gc))

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
