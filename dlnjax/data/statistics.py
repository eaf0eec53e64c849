"""The problem a deep linear network is trained on: the sufficient statistics of a regression
data set (Eq. 2), the best error any network of a given rank reaches, and the task's singular
structure (Eq. 5's SVD of Sigma31, with ``d_a = v_a^T Sigma11 v_a`` per mode).

Conventions (paper README): sums over examples, not means; ``E = 1/2 sum ||y - W x||^2``. Defined
here only: every room that needs them imports them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

Array = Any


class Stats(NamedTuple):
    """Sufficient statistics of a regression data set (sums over examples, Eq. 2)."""

    sigma11: Array  # (N1, N1) = sum x x^T
    sigma31: Array  # (N3, N1) = sum y x^T
    tr33: Array  # scalar  = sum ||y||^2

    @property
    def n_in(self) -> int:
        return int(self.sigma11.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.sigma31.shape[0])

    def astype(self, dtype: Any) -> "Stats":
        return Stats(*(jnp.asarray(v, dtype) for v in self))


def stats_from_examples(x: Array, y: Array, dtype: Any = None) -> Stats:
    """Sigma11 = X^T X, Sigma31 = Y^T X, tr Sigma33 = ||Y||_F^2 with examples as rows.

    Accumulated in float64 when x64 is on, else float32 (sums of up to 60,000 examples).
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    dtype = dtype or jnp.result_type(float)
    x = x.astype(dtype)
    y = y.astype(dtype)
    return Stats(x.T @ x, y.T @ x, jnp.sum(y * y))


def whitened_singular_values(stats: Stats) -> np.ndarray:
    """Singular values (descending, float64) of ``Sigma31 L^{+T}``, with ``Sigma11 = L L^T`` its
    eigendecomposition and zero directions dropped: the task's modes in whitened coordinates, from
    which :func:`best_error` reads E* at every rank. One eigendecomposition of Sigma11 (N1 x N1),
    so a run that needs E* at several depths computes it once (:attr:`Task.whitened_sv`)."""
    # one-off, outside any jit: always in float64
    s11 = np.asarray(stats.sigma11, np.float64)
    s31 = np.asarray(stats.sigma31, np.float64)
    evals, evecs = np.linalg.eigh(s11)
    keep = evals > evals.max() * 1e-12
    m = (s31 @ evecs[:, keep]) / np.sqrt(evals[keep])
    return np.linalg.svd(m, compute_uv=False)


def best_error(stats: Stats, rank: int | None = None, *, whitened_sv: np.ndarray | None = None) -> float:
    """Smallest E any product of rank <= ``rank`` reaches on these statistics (exact).

    With ``Sigma11 = L L^T`` (eigendecomposition, zero directions dropped), E(W) =
    1/2 tr S33 - 1/2 ||S31 L^+T||^2 + 1/2 ||W L - S31 L^+T||^2, so the minimum over
    rank-k W is ``1/2 tr S33 - 1/2 sum_{i <= k} sigma_i^2`` with sigma_i the singular
    values of ``S31 L^{+T}`` (Eckart-Young in the whitened coordinates). ``whitened_sv``: those
    singular values (:func:`whitened_singular_values` of the same ``stats``) when already known.
    """
    sv = whitened_singular_values(stats) if whitened_sv is None else np.asarray(whitened_sv, np.float64)
    if rank is not None:
        sv = sv[: int(rank)]
    return float(0.5 * float(stats.tr33) - 0.5 * np.sum(sv**2))


def full_svd_basis(sigma31: Array) -> tuple[Array, Array, Array]:
    """Full SVD ``Sigma31 = U S V^T`` with square U (N3 x N3) and V (N1 x N1), s descending."""
    u, s, vt = jnp.linalg.svd(jnp.asarray(sigma31), full_matrices=True)
    return u, s, vt.T


def is_whitened(sigma11: Array, atol: float | None = None) -> bool:
    """``Sigma11 = I`` up to rounding (``np.allclose`` with its default rtol and ``atol`` times
    ``max(1, max |Sigma11|)``; ``atol`` 1e-8 for float64 statistics, 1e-5 for float32)."""
    s = np.asarray(sigma11)
    if atol is None:
        atol = 1e-8 if s.dtype == np.float64 else 1e-5
    s = s.astype(np.float64)
    return bool(np.allclose(s, np.eye(s.shape[0]), atol=atol * max(1.0, float(np.abs(s).max()))))


@dataclass
class Task:
    """Statistics plus the task's singular structure (computed once per run)."""

    stats: Stats
    u: Array  # (N3, N3) output singular vectors
    s: np.ndarray  # singular values of Sigma31 (descending)
    v: Array  # (N1, N1) input singular vectors
    d: np.ndarray  # v_a^T Sigma11 v_a for each mode (1 for whitened inputs)

    @classmethod
    def from_stats(cls, stats: Stats) -> "Task":
        u, s, v = full_svd_basis(stats.sigma31)
        r = len(s)
        d = jnp.einsum("ia,ij,ja->a", v[:, :r], stats.sigma11, v[:, :r])
        return cls(stats, u, np.asarray(s, np.float64), v, np.asarray(d, np.float64))

    @cached_property
    def whitened_sv(self) -> np.ndarray:
        """:func:`whitened_singular_values` of the statistics, computed once per task."""
        return whitened_singular_values(self.stats)

    def best_error(self, rank: int | None = None) -> float:
        """:func:`best_error` of the statistics at ``rank``, from :attr:`whitened_sv`."""
        return best_error(self.stats, rank, whitened_sv=self.whitened_sv)

    @property
    def is_whitened(self) -> bool:
        """Sigma11 = I up to the statistics' rounding: the paper's closed forms are exact there
        (:func:`is_whitened`)."""
        return is_whitened(self.stats.sigma11)

    @property
    def n_modes(self) -> int:
        return int(np.sum(self.s > self.s[0] * 1e-10))

    def effective_modes(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-mode (s_eff, d) of the diagonal approximation ``tau du/dt = n d u^(2-2/n)(s/d - u)``.

        Exact when ``V^T Sigma11 V`` is diagonal (whitened inputs: d = 1, s_eff = s), i.e. when
        the consistency condition of Eq. 18 holds; an approximation otherwise.
        """
        k = self.n_modes
        return self.s[:k] / self.d[:k], self.d[:k]
