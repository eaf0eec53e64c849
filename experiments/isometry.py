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
from typing import Any

import numpy as np
from omegaconf import DictConfig

from ._shared.plots.isometry import IsometryResult, figure
from .common import Progress, entry, resolved_config, run_dir, write_results

log = logging.getLogger("dlnjax")

KINDS = ("orthogonal", "gaussian")


def singular_values(kw: Any, z: Any, gains: np.ndarray, qs: np.ndarray, n: int, n_layers: int, kind: str, dtype: Any) -> np.ndarray:
    """The end-to-end Jacobian's singular values (G, Q, N) for one weight kind, gains over devices."""
    import jax
    import jax.numpy as jnp

    from dlnjax.measure import devices
    from dlnjax.nonlinear import chaos

    w = chaos.random_weights(kw, n, n_layers, kind, dtype=dtype)

    def one(g, q, w=w):
        jac = chaos.end_to_end_jacobian(jnp.sqrt(q) * z, w, g)
        return jnp.linalg.svd(jac, compute_uv=False)

    f = devices.sharded_vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))  # gains over devices
    return np.asarray(f(jnp.asarray(gains, dtype), jnp.asarray(qs, dtype)), np.float64)  # (G, Q, N)


def isometry_measures(sv: np.ndarray, eps: float, n: int) -> list[list[dict]]:
    """Per gain and input variance: the isometry measures and the fraction below SVD resolution."""
    from dlnjax.nonlinear import chaos

    measures = [[chaos.isometry_measures(sv[a, b]) for b in range(sv.shape[1])] for a in range(sv.shape[0])]
    for a in range(sv.shape[0]):
        for b in range(sv.shape[1]):
            s_ = sv[a, b]
            # singular values below eps * N * sigma_max are zero to working precision
            measures[a][b]["fraction_below_resolution"] = float(np.mean(s_ < eps * n * s_.max()))
    return measures


def spectra(cfg: DictConfig, gains: np.ndarray, qs: np.ndarray, dtype: Any) -> tuple[dict, dict, float]:
    """Singular values and measures for both weight kinds (one input z, one weight key), and eps."""
    import jax
    import jax.numpy as jnp

    n, n_layers = int(cfg.width), int(cfg.depth) - 1
    key = jax.random.PRNGKey(cfg.seed)
    kx, kw = jax.random.split(key)
    z = jax.random.normal(kx, (n,), dtype)
    z = z / jnp.sqrt(jnp.mean(z * z))  # population variance exactly q1 after scaling
    sv, measures = {}, {}
    prog = Progress("isometry", 2)
    eps = float(np.finfo(np.float64 if dtype == jnp.float64 else np.float32).eps)
    for i, kind in enumerate(KINDS):
        sv[kind] = singular_values(kw, z, gains, qs, n, n_layers, kind, dtype)
        measures[kind] = isometry_measures(sv[kind], eps, n)
        prog.update(i + 1, f"{kind}: {len(gains) * len(qs)} networks of {n} units x {cfg.depth} layers")
    return sv, measures, eps


def _per_kind(measures: dict, name: str) -> dict:
    """One measure's (G, Q) table per weight kind."""
    return {k: [[m[name] for m in row] for row in measures[k]] for k in measures}


def make_summary(cfg: DictConfig, gains: np.ndarray, qs: np.ndarray, measures: dict, t0: float) -> dict:
    """The run's summary: the measures per weight kind, gain and input variance."""
    return dict(
        experiment="isometry",
        width=int(cfg.width),
        depth=int(cfg.depth),
        gains=gains,
        input_variances=qs,
        isometry_measure="fraction of singular values within a factor 2 of the median; p90/p10 ratio",
        orthogonal=measures["orthogonal"],
        gaussian=measures["gaussian"],
        median_singular_value=_per_kind(measures, "median"),
        fraction_within_2x_of_median=_per_kind(measures, "fraction_within_2x_of_median"),
        p90_over_p10=_per_kind(measures, "p90_over_p10"),
        seconds_total=time.time() - t0,
        config=resolved_config(cfg),
    )


def run(cfg: DictConfig) -> dict:
    """Compute both kinds' Jacobian spectra, draw the figure and write the results."""
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")

    out = run_dir()
    t0 = time.time()
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    gains = np.asarray(list(cfg.gains), np.float64)
    qs = np.asarray(list(cfg.input_variances), np.float64)
    sv, measures, eps = spectra(cfg, gains, qs, dtype)
    within = np.asarray(_per_kind(measures, "fraction_within_2x_of_median")["orthogonal"], np.float64)
    figure(out, IsometryResult(width=int(cfg.width), depth=int(cfg.depth), gains=gains, input_variances=qs,
                               sv_orthogonal=sv["orthogonal"], sv_gaussian=sv["gaussian"],
                               orthogonal_within_2x=within, eps=eps))
    summary = make_summary(cfg, gains, qs, measures, t0)
    write_results(out, summary, gains=gains, input_variances=qs, sv_orthogonal=sv["orthogonal"], sv_gaussian=sv["gaussian"])
    log.info("wrote %s", out)
    return summary


main = entry("isometry", run)


if __name__ == "__main__":
    main()
