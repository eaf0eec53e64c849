"""Whitened inputs and a linear teacher with prescribed singular values (exact theory checks)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dlnjax.data.core import Dataset


def teacher(
    singular_values: Sequence[float],
    n_in: int,
    n_out: int,
    n_examples: int | None = None,
    noise_std: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """``X`` with orthonormal columns (``Sigma11 = X^T X = I``) and ``Y = X W^T + noise``.

    ``W = U diag(s) V^T`` with Haar-random U, V, so ``Sigma31 = W`` exactly (without
    noise) and its singular values are ``singular_values`` (sorted descending, at most
    ``min(n_in, n_out)`` of them). ``n_examples`` defaults to ``n_in``.
    """
    s = np.sort(np.asarray(singular_values, dtype=float))[::-1]
    p = n_in if n_examples is None else int(n_examples)
    if len(s) > min(n_in, n_out):
        raise ValueError(f"teacher: {len(s)} singular values do not fit a {n_out} x {n_in} map")
    if p < n_in:
        raise ValueError(f"teacher: n_examples ({p}) must be >= n_in ({n_in}) for Sigma11 = I")
    if np.any(s < 0):
        raise ValueError("teacher: singular values must be >= 0")
    rng = np.random.default_rng(seed)

    def haar(n: int, m: int) -> np.ndarray:
        q, r = np.linalg.qr(rng.standard_normal((n, m)))
        return q * np.sign(np.diag(r))

    x = haar(p, n_in)  # orthonormal columns
    u = haar(n_out, len(s))
    v = haar(n_in, len(s))
    w = (u * s) @ v.T
    y = x @ w.T + noise_std * rng.standard_normal((p, n_out))
    info = dict(singular_values=s.tolist(), n_in=n_in, n_out=n_out, n_examples=p, noise_std=noise_std, seed=seed)
    return Dataset("teacher", x, y, info=info)
