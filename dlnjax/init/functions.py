"""Initialisations of deep linear networks.

``widths = (N_1, ..., N_{N_l})`` lists every layer (input first, output last); the weights
are ``W^l`` of shape ``(N_{l+1}, N_l)``. Every function takes an explicit PRNG key and is
jit/vmap friendly (``widths`` static).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp


Array = Any

__all__ = [
    "haar_orthogonal",
    "small_gaussian",
    "scaled_gaussian",
    "random_orthogonal",
    "decoupled",
]


def _dtype(dtype: Any) -> Any:
    return dtype or jnp.result_type(float)


def haar_orthogonal(key: Array, n: int, m: int | None = None, dtype: Any = None) -> Array:
    """A Haar-distributed (semi-)orthogonal ``n x m`` matrix (QR of a Gaussian, sign-corrected).

    The signs of R's diagonal are folded into Q (Mezzadri 2007), without which QR's output
    is not Haar. For ``n != m`` the result has orthonormal columns (n > m) or rows (n < m).
    """
    m = n if m is None else m
    big, small = max(n, m), min(n, m)
    z = jax.random.normal(key, (big, small), _dtype(dtype))
    q, r = jnp.linalg.qr(z)
    d = jnp.sign(jnp.diagonal(r))
    d = jnp.where(d == 0, 1.0, d)
    q = q * d[None, :]
    return q if n >= m else q.T


def small_gaussian(key: Array, widths: Sequence[int], std: float, dtype: Any = None) -> tuple:
    """i.i.d. N(0, std^2) entries in every layer (the paper's 'small random weights')."""
    keys = jax.random.split(key, len(widths) - 1)
    return tuple(
        std * jax.random.normal(k, (widths[i + 1], widths[i]), _dtype(dtype)) for i, k in enumerate(keys)
    )


def scaled_gaussian(key: Array, widths: Sequence[int], gain: float = 1.0, dtype: Any = None) -> tuple:
    """i.i.d. N(0, gain^2 / N_in) entries: norm-preserving on average (Glorot-style scaling)."""
    keys = jax.random.split(key, len(widths) - 1)
    return tuple(
        gain / jnp.sqrt(widths[i]) * jax.random.normal(k, (widths[i + 1], widths[i]), _dtype(dtype))
        for i, k in enumerate(keys)
    )


def random_orthogonal(key: Array, widths: Sequence[int], gain: float = 1.0, dtype: Any = None) -> tuple:
    """Haar (semi-)orthogonal layers times ``gain`` (ICLR version, Section 3)."""
    keys = jax.random.split(key, len(widths) - 1)
    return tuple(gain * haar_orthogonal(k, widths[i + 1], widths[i], dtype) for i, k in enumerate(keys))


def decoupled(
    key: Array,
    widths: Sequence[int],
    u0: float | Array,
    u_basis: Array,
    v_basis: Array,
    n_modes: int | None = None,
    hidden_basis: str = "random",
    dtype: Any = None,
) -> tuple:
    """Decoupled initial conditions (Section 2): ``W^l = R_{l+1} D_l R_l^T``.

    ``R_1 = V`` (input singular vectors of Sigma31, N1 x N1), ``R_{N_l} = U`` (output singular
    vectors, N3 x N3); the hidden bases ``R_l`` are Haar-random (``hidden_basis='random'``)
    or the identity. ``D_l`` carries ``a0 = u0^(1/(N_l-1))`` on its first ``n_modes`` diagonal
    entries (default: the narrowest layer), so the end-to-end map is
    ``W = sum_{alpha <= n_modes} u0 u_alpha v_alpha^T``: every mode starts with strength
    ``u0``, balanced over the layers (``a_i = a_j``). ``u0`` may be an array of per-mode
    strengths (length ``n_modes``).
    """
    dtype = _dtype(dtype)
    n = len(widths) - 1
    r = min(widths) if n_modes is None else int(n_modes)
    if r > min(widths):
        raise ValueError(f"n_modes={r} exceeds the narrowest layer ({min(widths)})")
    u0 = jnp.broadcast_to(jnp.asarray(u0, dtype), (r,))
    a0 = jnp.sign(u0) * jnp.abs(u0) ** (1.0 / n)
    # sign of a negative u0 carried by the first layer only
    a_first = jnp.where(u0 < 0, a0, jnp.abs(a0))
    bases = [jnp.asarray(v_basis, dtype)]
    keys = jax.random.split(key, max(n - 1, 1))
    for i in range(1, n):
        if hidden_basis == "random":
            bases.append(haar_orthogonal(keys[i - 1], widths[i], dtype=dtype))
        elif hidden_basis == "identity":
            bases.append(jnp.eye(widths[i], dtype=dtype))
        else:
            raise ValueError(f"hidden_basis must be 'random' or 'identity', got {hidden_basis!r}")
    bases.append(jnp.asarray(u_basis, dtype))
    weights = []
    for l in range(n):
        strengths = a_first if l == 0 else jnp.abs(a0)
        left = bases[l + 1][:, :r]
        right = bases[l][:, :r]
        weights.append((left * strengths[None, :]) @ right.T)
    return tuple(weights)
