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
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ._shared.plots.random_products import RandomProductsResult, figure
from .common import Progress, entry, resolved_config, run_dir, write_results

log = logging.getLogger("dlnjax")


def depth_spectra(key: Any, d: int, n: int, reps: int, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth ``d``: all realisations' Gaussian singular values and eigenvalues (flattened), and one
    orthogonal product's singular values."""
    import jax
    import jax.numpy as jnp

    from dlnjax.measure import devices
    from dlnjax.nonlinear import chaos

    keys = jax.random.split(jax.random.fold_in(key, d), reps)

    def spectra(k, d=d, kind="gaussian"):
        p = chaos.random_product(k, n, d - 1, kind, dtype)
        return jnp.linalg.svd(p, compute_uv=False), jnp.linalg.eigvals(p)

    s, e = devices.sharded_vmap(spectra)(keys)
    sv, ev = np.asarray(s, np.float64).ravel(), np.asarray(e).ravel()
    so, _ = jax.jit(lambda k, d=d: spectra(k, d, "orthogonal"))(keys[0])
    return sv, ev, np.asarray(so, np.float64)


def all_spectra(cfg: DictConfig, depths: list[int], dtype: Any) -> tuple[dict, dict, dict]:
    """Every depth's spectra (keys folded from one seed by depth), with progress."""
    import jax

    n, reps = int(cfg.width), int(cfg.realisations)
    key = jax.random.PRNGKey(cfg.seed)
    sv, ev, sv_orth = {}, {}, {}
    prog = Progress("random_products", len(depths))
    for i, d in enumerate(depths):
        sv[d], ev[d], sv_orth[d] = depth_spectra(key, d, n, reps, dtype)
        prog.update(i + 1, f"depth {d}: {reps} products of {d - 1} matrices of {n} x {n}")
    return sv, ev, sv_orth


def origin_bin_fraction(ev: np.ndarray, bw: float) -> float:
    """The share of eigenvalues in the bin of width ``bw`` centred on the origin."""
    return float(np.mean((np.abs(ev.real) < bw / 2) & (np.abs(ev.imag) < bw / 2)))


def make_summary(cfg: DictConfig, depths: list[int], sv: dict, sv_orth: dict, frac_small: list, origin: list, t0: float) -> dict:
    """The run's summary: singular-value statistics and the origin bin's share per depth."""
    from scipy import stats

    return dict(
        experiment="random_products",
        width=int(cfg.width),
        realisations=int(cfg.realisations),
        depths=depths,
        sv_fraction_below_0_1=frac_small,
        sv_max=[float(sv[d].max()) for d in depths],
        sv_mean_square=[float(np.mean(sv[d] ** 2)) for d in depths],
        sv_kurtosis=[float(stats.kurtosis(sv[d], fisher=False)) for d in depths],
        eig_origin_bin_fraction=origin,
        orthogonal_sv_max_abs_deviation_from_1=[float(np.max(np.abs(sv_orth[d] - 1.0))) for d in depths],
        bin_width=float(cfg.bin_width),
        seconds_total=time.time() - t0,
        config=resolved_config(cfg),
    )


def run(cfg: DictConfig) -> dict:
    """Compute the spectra for every depth, draw the figure and write the results."""
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")

    out = run_dir()
    t0 = time.time()
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    depths = sorted(int(d) for d in cfg.depths)
    sv, ev, sv_orth = all_spectra(cfg, depths, dtype)

    bw = float(cfg.bin_width)
    frac_small = [float(np.mean(sv[d] < 0.1)) for d in depths]
    origin = [origin_bin_fraction(ev[d], bw) for d in depths]
    figure(out, RandomProductsResult(width=int(cfg.width), realisations=int(cfg.realisations), depths=depths,
                                     singular_values=[sv[d] for d in depths], eigenvalues=[ev[d] for d in depths],
                                     fraction_below_0_1=frac_small, origin_bin_fraction=origin, bin_width=bw))
    summary = make_summary(cfg, depths, sv, sv_orth, frac_small, origin, t0)
    write_results(out, summary, depths=np.asarray(depths), **{f"sv_depth{d}": sv[d] for d in depths}, **{f"eig_depth{d}": ev[d] for d in depths})
    log.info("fraction of singular values < 0.1 by depth %s; origin bin %s; wrote %s", np.round(frac_small, 3), np.round(origin, 3), out)
    return summary


main = entry("random_products", run)


if __name__ == "__main__":
    main()
