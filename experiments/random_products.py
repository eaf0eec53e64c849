"""Fig. 6B-C: spectra of products of N_l - 1 independent random N x N matrices.

B: histograms of the singular values of products of i.i.d. Gaussian matrices (entries std
1/sqrt(N)): norm-preserving on average, but with depth most singular values vanish while a
long tail grows (highly kurtotic). C: 2-D histograms of their eigenvalues in the complex
plane (bin width ``bin_width``), the bin at the origin removed for display and its share
reported. Products of Haar orthogonal matrices, for contrast, keep every singular value at 1.
All realisations of a depth are one vmapped batch; float64 by default so that small singular
values are resolved (an SVD resolves down to ~eps x the largest).

    python -m experiments.random_products [width=1000 realisations=500]   # = experiment=paper (GPU)
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
    from matplotlib.colors import LogNorm
    from scipy import stats

    from dlnjax.nonlinear import chaos
    from dlnjax.measure import devices

    out = run_dir()
    t0 = time.time()
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    n, reps = int(cfg.width), int(cfg.realisations)
    depths = sorted(int(d) for d in cfg.depths)
    key = jax.random.PRNGKey(cfg.seed)
    sv, ev, sv_orth = {}, {}, {}
    prog = Progress("random_products", len(depths))
    for i, d in enumerate(depths):
        keys = jax.random.split(jax.random.fold_in(key, d), reps)

        def spectra(k, d=d, kind="gaussian"):
            p = chaos.random_product(k, n, d - 1, kind, dtype)
            return jnp.linalg.svd(p, compute_uv=False), jnp.linalg.eigvals(p)

        s, e = devices.sharded_vmap(spectra)(keys)
        sv[d], ev[d] = np.asarray(s, np.float64).ravel(), np.asarray(e).ravel()
        so, _ = jax.jit(lambda k, d=d: spectra(k, d, "orthogonal"))(keys[0])
        sv_orth[d] = np.asarray(so, np.float64)
        prog.update(i + 1, f"depth {d}: {reps} products of {d - 1} matrices of {n} x {n}")

    bw = float(cfg.bin_width)
    frac_small = [float(np.mean(sv[d] < 0.1)) for d in depths]
    origin = [float(np.mean((np.abs(ev[d].real) < bw / 2) & (np.abs(ev[d].imag) < bw / 2))) for d in depths]
    fig, axes = plt.subplots(2, len(depths), figsize=(3.4 * len(depths), 6.6), squeeze=False)
    for j, d in enumerate(depths):
        ax = axes[0][j]
        hi = np.percentile(sv[d], 99)
        ax.hist(sv[d], bins=np.linspace(0, max(hi, 1.5), 80), density=True, color="tab:blue", alpha=0.8, label="Gaussian")
        ax.axvline(1.0, color="tab:red", lw=1.5, label="orthogonal (all = 1)")
        ax.set_title(f"N_l = {d}: {100 * frac_small[j]:.0f}% of σ < 0.1", fontsize=9)
        ax.set_xlabel("singular value")
        if j == 0:
            ax.legend(fontsize=7)
        ax2 = axes[1][j]
        edges = np.arange(-1.5 - bw / 2, 1.5 + bw, bw)
        h, xe, ye = np.histogram2d(ev[d].real, ev[d].imag, bins=[edges, edges])
        c = np.searchsorted(xe, 0.0) - 1
        h[c, c] = 0.0  # the bin at the origin is removed for display (its share is in the title)
        ax2.imshow(h.T, origin="lower", extent=[xe[0], xe[-1], ye[0], ye[-1]], cmap="magma", norm=LogNorm(vmin=1, vmax=max(h.max(), 2)))
        th = np.linspace(0, 2 * np.pi, 200)
        ax2.plot(np.cos(th), np.sin(th), color="w", lw=0.6, ls="--")
        ax2.set_title(f"eigenvalues; origin bin {100 * origin[j]:.0f}%", fontsize=9)
        ax2.set_xlabel("Re")
        ax2.set_ylabel("Im")
    fig.suptitle(f"Products of N_l − 1 random {n} × {n} matrices (Gaussian, std 1/√N), {reps} realisations per depth", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "random_products")

    summary = dict(
        experiment="random_products",
        width=n,
        realisations=reps,
        depths=depths,
        sv_fraction_below_0_1=frac_small,
        sv_max=[float(sv[d].max()) for d in depths],
        sv_mean_square=[float(np.mean(sv[d] ** 2)) for d in depths],
        sv_kurtosis=[float(stats.kurtosis(sv[d], fisher=False)) for d in depths],
        eig_origin_bin_fraction=origin,
        orthogonal_sv_max_abs_deviation_from_1=[float(np.max(np.abs(sv_orth[d] - 1.0))) for d in depths],
        bin_width=bw,
        seconds_total=time.time() - t0,
        config=resolved_config(cfg),
    )
    write_results(out, summary, depths=np.asarray(depths), **{f"sv_depth{d}": sv[d] for d in depths}, **{f"eig_depth{d}": ev[d] for d in depths})
    log.info("fraction of singular values < 0.1 by depth %s; origin bin %s; wrote %s", np.round(frac_small, 3), np.round(origin, 3), out)
    return summary


main = entry("random_products", run)


if __name__ == "__main__":
    main()
