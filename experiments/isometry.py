"""Fig. 7: dynamical isometry in deep tanh networks.

Singular values of the end-to-end Jacobian ``d x^{N_l} / d x^1`` of ``x^{l+1} = g W phi(x^l)``,
accumulated along the forward pass as ``prod_l g W diag(tanh'(x^l))`` from an input of
population variance q^1, over a grid of gains and input variances (one vmapped batch), for
random orthogonal W and, for contrast (Fig. 6B), scaled Gaussian W (i.i.d. N(0, 1/N)).

Isometry measure (reported per gain and input variance): the fraction of singular values
within a factor 2 of their median, and the ratio of the 90th to the 10th percentile
(an exact isometry gives 1 and 1). Singular values below ``eps * N * sigma_max`` cannot be
resolved by an SVD of the explicit product (they are zero to working precision); their
fraction is reported as ``fraction_below_resolution`` and the figure marks that limit.
Products of scaled Gaussian matrices put most singular values there at depth 100.

    python -m experiments.isometry [width=1000 depth=100] ['gains=[0.9,1.0,1.1]']
"""

from __future__ import annotations

import logging
import time

import numpy as np
from omegaconf import DictConfig

from .common import Progress, entry, resolved_config, run_dir, save_figure, write_results

log = logging.getLogger("dlnjax")


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
    n, n_layers = int(cfg.width), int(cfg.depth) - 1
    gains = np.asarray(list(cfg.gains), np.float64)
    qs = np.asarray(list(cfg.input_variances), np.float64)
    key = jax.random.PRNGKey(cfg.seed)
    kx, kw = jax.random.split(key)
    z = jax.random.normal(kx, (n,), dtype)
    z = z / jnp.sqrt(jnp.mean(z * z))  # population variance exactly q1 after scaling
    sv, measures = {}, {}
    prog = Progress("isometry", 2)
    for i, kind in enumerate(("orthogonal", "gaussian")):
        w = chaos.random_weights(kw, n, n_layers, kind, dtype=dtype)

        def one(g, q, w=w):
            jac = chaos.end_to_end_jacobian(jnp.sqrt(q) * z, w, g)
            return jnp.linalg.svd(jac, compute_uv=False)

        f = devices.sharded_vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))  # gains over devices
        sv[kind] = np.asarray(f(jnp.asarray(gains, dtype), jnp.asarray(qs, dtype)), np.float64)  # (G, Q, N)
        measures[kind] = [[chaos.isometry_measures(sv[kind][a, b]) for b in range(len(qs))] for a in range(len(gains))]
        eps = float(np.finfo(np.float64 if dtype == jnp.float64 else np.float32).eps)
        for a in range(len(gains)):
            for b in range(len(qs)):
                s_ = sv[kind][a, b]
                # singular values below eps * N * sigma_max are zero to working precision
                measures[kind][a][b]["fraction_below_resolution"] = float(np.mean(s_ < eps * n * s_.max()))
        prog.update(i + 1, f"{kind}: {len(gains) * len(qs)} networks of {n} units x {cfg.depth} layers")

    ncol = min(3, len(gains))
    nrow = -(-len(gains) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.4 * nrow), squeeze=False)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(qs)))
    for a, g in enumerate(gains):
        ax = axes[a // ncol][a % ncol]
        allv = np.log10(np.clip(np.concatenate([sv[k][a].ravel() for k in sv]), 1e-30, None))
        bins = np.linspace(np.percentile(allv, 0.5), np.percentile(allv, 99.5) + 1e-9, 60)
        for b, q in enumerate(qs):
            for kind, ls in (("orthogonal", "-"), ("gaussian", ":")):
                v = np.log10(np.clip(sv[kind][a, b], 1e-30, None))
                h, e = np.histogram(v, bins=bins, density=True)
                lab = f"q¹ = {q:g}, {kind}" if a == 0 else None
                ax.plot(0.5 * (e[1:] + e[:-1]), h, ls, color=colors[b], lw=1.4, label=lab)
        res = max(float(np.finfo(np.float64 if jax.config.jax_enable_x64 else np.float32).eps) * n * float(sv[k][a].max()) for k in sv)
        ax.axvline(np.log10(res), color="tab:red", lw=0.8, ls="--", label="SVD resolution (eps·N·σmax)" if a == 0 else None)
        m = measures["orthogonal"][a][len(qs) // 2]
        ax.set_title(f"g = {g:g}  (orth., q¹={qs[len(qs) // 2]:g}: {100 * m['fraction_within_2x_of_median']:.0f}% within 2× of median)", fontsize=8)
        ax.set_xlabel("log10 singular value of J")
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(fontsize=6)
    for k in range(len(gains), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.suptitle(f"End-to-end Jacobian of tanh networks, N = {n}, N_l = {cfg.depth} (solid: orthogonal W, dotted: scaled Gaussian W)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "isometry")

    summary = dict(
        experiment="isometry",
        width=n,
        depth=int(cfg.depth),
        gains=gains,
        input_variances=qs,
        isometry_measure="fraction of singular values within a factor 2 of the median; p90/p10 ratio",
        orthogonal=measures["orthogonal"],
        gaussian=measures["gaussian"],
        median_singular_value={k: [[m["median"] for m in row] for row in measures[k]] for k in measures},
        fraction_within_2x_of_median={k: [[m["fraction_within_2x_of_median"] for m in row] for row in measures[k]] for k in measures},
        p90_over_p10={k: [[m["p90_over_p10"] for m in row] for row in measures[k]] for k in measures},
        seconds_total=time.time() - t0,
        config=resolved_config(cfg),
    )
    write_results(out, summary, gains=gains, input_variances=qs, sv_orthogonal=sv["orthogonal"], sv_gaussian=sv["gaussian"])
    log.info("wrote %s", out)
    return summary


main = entry("isometry", run)


if __name__ == "__main__":
    main()
