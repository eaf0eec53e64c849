"""The problem of a Fig. 4-family run: data set, statistics (run dtype and float64), task
structure, the input rotation of the compressed engine, and the learning-rate grid."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from omegaconf import DictConfig

from .. import schemas

log = logging.getLogger("dlnjax")


@dataclass
class Problem:
    ds: Any  # the data set (dlnjax.data)
    task: Any  # dlnjax.data.statistics.Task in the run's dtype
    stats64: Any  # dlnjax.data.statistics.Stats in float64 numpy (for exact reductions and E*)

    @property
    def whitened(self) -> bool:
        """Sigma11 = I (exactly, up to rounding): the paper's theory is exact there
        (:func:`dlnjax.data.statistics.is_whitened` on the float64 statistics)."""
        from dlnjax.data.statistics import is_whitened

        return is_whitened(self.stats64.sigma11)

    @cached_property
    def rotation(self) -> Any:
        """Sigma11's eigenbasis (:func:`dlnjax.networks.compressed.rotate_inputs` on the float64
        statistics), computed once: the compressed engine's and the rotated full-width runs' basis."""
        from dlnjax.networks import compressed

        return compressed.rotate_inputs(self.stats64.sigma11)

    @cached_property
    def whitened_sv64(self) -> np.ndarray:
        """:func:`dlnjax.data.statistics.whitened_singular_values` of the float64 statistics,
        computed once: E* at every depth (:func:`best_error`) without another eigendecomposition."""
        from dlnjax.data.statistics import whitened_singular_values

        return whitened_singular_values(self.stats64)

    def best_error(self, rank: int) -> float:
        """E* of rank ``rank`` on the float64 statistics (:func:`dlnjax.data.statistics.best_error`)."""
        from dlnjax.data.statistics import best_error

        return best_error(self.stats64, rank, whitened_sv=self.whitened_sv64)

    def full_width_rotation(self, cfg: DictConfig) -> Any:
        """The rotation for :func:`dlnjax.measure.sweep.run_batch` when ``cfg.rotate_inputs`` (else None)."""
        return self.rotation if bool(cfg.get("rotate_inputs", False)) else None


def learning_rate_grid(cfg: DictConfig) -> np.ndarray:
    lr = cfg.learning_rates
    if lr["values"] is not None:
        return np.sort(np.asarray(list(lr["values"]), np.float64))
    return np.geomspace(lr["min"], lr["max"], int(lr["num"]))


def theory_optimal_rate(task: Any, depth: int) -> float:
    """1 / max_alpha lambda_1 over the task's modes (supplement Eq. 19 with s_eff, d per mode)."""
    s_eff, d = task.effective_modes()
    n = depth - 1
    return float(1.0 / np.max(n * d * s_eff ** (2.0 - 2.0 / n)))


def prepare(cfg: DictConfig) -> Problem:
    """Data set, statistics and task structure (once per run)."""
    from dlnjax.data.statistics import Stats, Task, stats_from_examples
    import jax
    import jax.numpy as jnp


    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    from dlnjax.data import registry as data_registry

    ds = data_registry.load(cfg.data)
    if ds.n_in < 1 or ds.n_out < 1:
        raise schemas.ConfigError(f"invalid config: data={cfg.data.name} gives an empty problem")
    stats = stats_from_examples(ds.x, ds.y, dtype=jnp.float64 if dtype == jnp.float64 else None).astype(dtype)
    task = Task.from_stats(stats)
    x = np.asarray(ds.x, np.float64)
    y = np.asarray(ds.y, np.float64)
    stats64 = Stats(x.T @ x, y.T @ x, float(np.sum(y * y)))
    log.info(
        "data %s: %d examples, %d inputs, %d outputs, preprocessing %s, s_1 = %.4g",
        ds.name, ds.n_train, ds.n_in, ds.n_out, ds.info.get("preprocessing", "-"), task.s[0],
    )
    return Problem(ds, task, stats64)
