"""Deep nonlinear networks at the edge of chaos (ICLR version, Section 4, Figs. 7-8, App. G).

Networks ``x^{l+1} = g W^{l} phi(x^l)`` with ``N x N`` weights (random orthogonal or scaled
Gaussian), ``N_l`` layers (``N_l - 1`` weight matrices), ``phi = tanh`` by default.

Mean-field variance map (App. G): with ``q^l = (1/N) sum_i (x^l_i)^2``,
``q^{l+1} = g^2 int Dz phi(sqrt(q^l) z)^2`` (Gaussian measure Dz; Gauss-Hermite quadrature).
For tanh, ``tanh(x)^2 < x^2`` gives ``q^{l+1} < g^2 q^l``: the only fixed point is 0 for
``g <= 1``, and for ``g > 1`` a positive one ``q_inf(g) <= g^2`` appears (found by bisection).
``chi = g^2 int Dz phi'(sqrt(q_inf) z)^2`` is the mean squared singular value of a layer's
Jacobian at the fixed point; it crosses 1 at the edge of chaos ``g_c = 1``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = Any


def gauss_hermite(n: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for ``int Dz f(z)`` with Dz the standard normal measure."""
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / np.sqrt(2.0 * np.pi)


def variance_map(q: Array, g: Array, phi: Callable = jnp.tanh, n: int = 101) -> Array:
    """``g^2 int Dz phi(sqrt(q) z)^2`` (App. G), broadcasting over q and g."""
    z, w = gauss_hermite(n)
    q, g = jnp.asarray(q), jnp.asarray(g)
    vals = phi(jnp.sqrt(q)[..., None] * z) ** 2
    return g**2 * jnp.sum(vals * w, axis=-1)


def q_fixed_point(g: Array, phi: Callable = jnp.tanh, n: int = 101, iters: int = 80) -> Array:
    """Largest fixed point ``q_inf(g)`` of the variance map (0 when g <= 1 for tanh).

    Bisection on ``f(q) = variance_map(q, g) - q`` over ``(0, g^2]``: for tanh and g > 1,
    ``f > 0`` for small q (``f ~ (g^2 - 1) q``) and ``f(g^2) < 0``.
    """
    g = jnp.asarray(g, dtype=jnp.result_type(float))
    lo = jnp.full_like(g, 1e-12)
    hi = g**2

    def body(_, lohi):
        lo_, hi_ = lohi
        mid = 0.5 * (lo_ + hi_)
        up = variance_map(mid, g, phi, n) > mid
        return jnp.where(up, mid, lo_), jnp.where(up, hi_, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    return jnp.where(g > 1.0, 0.5 * (lo + hi), 0.0)


def chi(g: Array, q: Array, dphi: Callable | None = None, n: int = 101) -> Array:
    """``g^2 int Dz phi'(sqrt(q) z)^2`` (default phi' = 1 - tanh^2)."""
    dphi = dphi or (lambda x: 1.0 - jnp.tanh(x) ** 2)
    z, w = gauss_hermite(n)
    q, g = jnp.asarray(q), jnp.asarray(g)
    return g**2 * jnp.sum(dphi(jnp.sqrt(q)[..., None] * z) ** 2 * w, axis=-1)


def random_weights(key: Array, n: int, n_layers: int, kind: str = "orthogonal", dtype: Any = None) -> Array:
    """``n_layers`` stacked N x N matrices: Haar orthogonal, or i.i.d. N(0, 1/N) ('gaussian' or
    'scaled_gaussian'): the :meth:`dlnjax.init.registry.Init.square_stack` of init ``kind``."""
    from dlnjax.init.registry import INITS

    return INITS[kind].square_stack(key, n, n_layers, dtype)


def forward_variances(x1: Array, weights: Array, g: Array, phi: Callable = jnp.tanh) -> Array:
    """``q^l`` for l = 1 .. N_l along ``x^{l+1} = g W^l phi(x^l)`` (weights stacked (L, N, N))."""

    def step(x, w):
        x = g * (w @ phi(x))
        return x, jnp.mean(x * x)

    _, qs = jax.lax.scan(step, x1, weights)
    return jnp.concatenate([jnp.mean(x1 * x1)[None], qs])


def end_to_end_jacobian(x1: Array, weights: Array, g: Array, phi: Callable = jnp.tanh) -> Array:
    """``d x^{N_l} / d x^1``, accumulated as ``prod_l g W^l diag(phi'(x^l))`` along the forward pass.

    One N x N product per layer (no differentiation through N outputs).
    """
    dphi = jax.vmap(jax.grad(lambda s: phi(s)))

    def step(carry, w):
        x, jac = carry
        d = dphi(x)
        jac = g * (w @ (d[:, None] * jac))
        x = g * (w @ phi(x))
        return (x, jac), None

    n = x1.shape[0]
    (_, jac), _ = jax.lax.scan(step, (x1, jnp.eye(n, dtype=x1.dtype)), weights)
    return jac


def isometry_measures(sv: np.ndarray) -> dict:
    """Median singular value; fraction within a factor 2 of the median; p90 / p10 ratio.

    An exactly isometric map (all singular values equal) gives fraction 1 and ratio 1.
    """
    sv = np.asarray(sv, np.float64)
    med = float(np.median(sv))
    frac = float(np.mean((sv >= med / 2) & (sv <= med * 2))) if med > 0 else 0.0
    p10, p90 = np.percentile(sv, [10, 90])
    return {"median": med, "fraction_within_2x_of_median": frac, "p90_over_p10": float(p90 / p10) if p10 > 0 else float("inf")}


def random_product(key: Array, n: int, n_factors: int, kind: str = "gaussian", dtype: Any = None) -> Array:
    """Product of ``n_factors`` independent N x N matrices: i.i.d. N(0, 1/N) or Haar orthogonal (Fig. 6B-C)."""
    w = random_weights(key, n, n_factors, kind, dtype)
    return jax.lax.fori_loop(1, n_factors, lambda i, p: w[i] @ p, w[0])


def eigen_angle_uniformity(q: np.ndarray) -> float:
    """Kolmogorov-Smirnov p-value of the eigenvalue angles of ``q`` against the uniform law on (-pi, pi]."""
    from scipy import stats

    angles = np.angle(np.linalg.eigvals(np.asarray(q, np.float64)))
    return float(stats.kstest((angles + np.pi) / (2 * np.pi), "uniform").pvalue)
