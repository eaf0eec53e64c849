"""Curvature of the deep linear loss: top Hessian eigenpair by Lanczos, and closed forms.

The loss is :func:`dlnjax.networks.linear.loss_from_stats` (Eq. 13 with summed statistics):
``E = 1/2 tr S33 - tr(W S31^T) + 1/2 tr(W S11 W^T)``, ``W = W^n ... W^1``. Hessian-vector
products are ``jax.jvp`` of ``jax.grad`` (forward-over-reverse), never the dense Hessian.

Second variation (used by every closed form here). Perturbing every layer,
``W(eps) = W + eps dW + eps^2 d2W + O(eps^3)`` with ``dW = sum_l A_l dW^l B_l`` and
``d2W = sum_{l<m} A_m dW^m (W^{m-1} ... W^{l+1}) dW^l B_l`` (``A_l`` the product above layer l,
``B_l`` the one below), so the Hessian's quadratic form is

    h(dw, dw) = tr(dW S11 dW^T) + 2 <G, d2W>,        G = W S11 - S31,

a Gauss-Newton part plus a part that is linear in the residual G. (Supplement Eqs. 7-9 are this
for one scalar mode: ``h = prod_{k != i} a_k^2`` on the diagonal and
``prod_{k!=i} a_k prod_{k!=j} a_k - (s - prod a) prod_{k != i,j} a_k`` off it.)

**Balanced global minimum, whitened inputs** (:func:`balanced_minimum_spectrum`). Take
``S11 = I``, ``S31 = U diag(s) V^T`` and the decoupled weights ``W^l = R_{l+1} D_l R_l^T`` with
every carried mode balanced, ``a_alpha = s_alpha^{1/n}`` in every layer. In the mode bases a
perturbation of entry (i, j) of layer l moves only entry (i, j) of the product, with coefficient
``c_l(i, j) = a_i^{n-l} a_j^{l-1}`` (``a = 0`` for a direction the network does not carry;
``0^0 = 1``), so the Gauss-Newton part is block diagonal with one rank-one block per output entry:

    lambda_ij = sum_{l=1}^{n} a_i^{2(n-l)} a_j^{2(l-1)}
              = n s_i^{(2n-2)/n}                               (i = j, the supplement's Eq. 19)
              = (s_i^2 - s_j^2) / (s_i^{2/n} - s_j^{2/n})      (i != j: cross-mode couplings)
              = s_i^{(2n-2)/n}                                  (one of the two not carried).

Each cross term is a sum of n terms each at most ``a_1^{2n-2}``, so the top eigenvalue is the
diagonal one of the strongest mode, ``n s_1^{(2n-2)/n}`` (it is Eq. 19 with tau = 1; the
supplement's ``lambda_1`` is the eigenvalue along (1, ..., 1) in one mode, and it is indeed the
network's largest). When the network is rank-limited, G does not vanish: teacher modes beta that
are not carried leave ``G = -sum_beta s_beta u_beta v_beta^T``, and ``<G, d2W>`` couples only
``dW^n[beta, k]`` with ``dW^1[k, beta]`` through the middle product (``A_m`` has a non-zero row beta
only for m = n, ``B_l`` a non-zero column beta only for l = 1) with coefficient ``-s_beta a_k^{n-2}``.
These two entries also carry the Gauss-Newton eigenvalue ``a_k^{2n-2}`` each, giving the 2x2 block
``[[a_k^{2n-2}, -s_beta a_k^{n-2}], [-s_beta a_k^{n-2}, a_k^{2n-2}]]`` with eigenvalues
``s_k^{(2n-2)/n} +- s_beta s_k^{(n-2)/n}``; for ``n = 2`` a hidden unit k that carries no mode
(``a_k = 0``, middle product the identity) adds ``+- s_beta`` (a saddle: that unit could learn beta).

**Compressed networks** (:func:`extra_width_curvature`). If ``W^l = P_{l+1} M_l P_l^T`` with
``P_l`` having orthonormal columns (``P_1 = I``, ``P_{N_l} = I``), E is the same function of the
cores ``M_l`` and the Hessian splits exactly into (i) the cores' Hessian on perturbations
``P_{l+1} dM P_l^T`` and (ii) a block on the directions the extra width adds: the Gauss-Newton part
vanishes on them (``A_l Q_{l+1} = 0``, ``Q_{l+1}`` the complement of ``P_{l+1}``), they meet the core
directions in no second-order term (every such term contains ``P^T Q = 0`` or ``W Q = 0``), and the
only ones that couple are, at each hidden layer h, ``Z`` in ``dW^h = P_{h+1} Z Q_h^T`` and ``Y`` in
``dW^{h-1} = Q_h Y P_{h-1}^T``, through ``2 <G, A~ Z Y B~> = 2 tr(K Z Y)`` with
``A~ = A_h P_{h+1}`` (cores above, mapped to the output), ``B~ = P_{h-1}^T B_{h-1}`` (cores below) and
``K = B~ G^T A~``. On unit (Z, Y) this form has eigenvalues ``+- sigma_i(K)`` (each with the
multiplicity of the extra width) and zeros, so the extra width adds curvature
``max_h ||K_h||_2 <= ||G||_2 prod_{l != h-1, h} ||M_l||_2`` (products of the cores' scales) and

    lambda_max(full) = max(lambda_max(cores), max_h ||K_h||_2).

In fact the second term never wins when every hidden layer keeps at least one core unit: the cores'
own Hessian restricted to ``(dM_h, dM_{h-1})`` is ``GN + 2 tr(K_h dM_h dM_{h-1})`` with the same
``K_h`` and a positive semi-definite GN part (no other second-order term involves only these two
layers), so ``lambda_max(cores) >= ||K_h||_2`` and ``lambda_max(full) = lambda_max(cores)`` exactly.
The extra width only adds the negative eigenvalues ``-sigma_i(K_h)`` (escape directions) and zeros:
``lambda_min(full) = min(lambda_min(cores), -max_h ||K_h||_2)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dlnjax.networks.linear import loss_from_stats, product
from dlnjax.data.statistics import Stats

Array = Any

__all__ = [
    "hvp",
    "TopEigen",
    "top_eigen",
    "balanced_minimum_spectrum",
    "balanced_minimum_top_eigenvalue",
    "extra_width_curvature",
]


def hvp(weights: Sequence[Array], stats: Stats, vector: Sequence[Array]) -> tuple:
    """Hessian-vector product ``H v`` of E at ``weights`` (``jax.jvp`` of ``jax.grad``), a tuple like the weights."""
    weights, vector = tuple(weights), tuple(vector)
    grad = jax.grad(lambda w: loss_from_stats(w, stats))
    return jax.jvp(grad, (weights,), (vector,))[1]


class TopEigen(NamedTuple):
    value: Array  # largest (algebraic) Ritz value: lambda_max estimate
    vector: tuple  # its unit Ritz vector, shaped like the weights
    residual: Array  # ||H v - value v||: an error bound, |lambda_max - value| <= residual for the eigenvalue nearest


def top_eigen(weights: Sequence[Array], stats: Stats, key: Array, num_iters: int = 40) -> TopEigen:
    """Largest eigenvalue of the loss Hessian and its eigenvector, by Lanczos on Hessian-vector products.

    ``num_iters`` (static) Krylov vectors are built from a random start with full
    re-orthogonalisation (twice, classical Gram-Schmidt), storing ``H q_i`` for each; the Ritz
    values are the eigenvalues of ``T = Q H Q^T`` formed from those stored products (not from the
    three-term recurrence), so a breakdown (an invariant subspace found early, e.g. when
    ``num_iters`` exceeds the number of parameters) only adds a random orthogonal direction and
    every Ritz value stays a Rayleigh quotient, bounded by lambda_max (Cauchy interlacing). The
    largest Ritz value converges to lambda_max (the algebraic maximum, not the largest magnitude:
    Lanczos resolves both ends). Memory: ``2 num_iters`` vectors of the parameter count.
    Jit-able; ``residual`` reports ``||H v - lambda v||``.
    """
    weights = tuple(weights)
    flat, unravel = ravel_pytree(weights)
    dim = flat.shape[0]
    k = int(num_iters)
    dtype = flat.dtype

    def matvec(x):
        return ravel_pytree(hvp(weights, stats, unravel(x)))[0]

    k1, k2 = jax.random.split(key)
    q0 = jax.random.normal(k1, (dim,), dtype)
    q0 = q0 / jnp.linalg.norm(q0)
    extra = jax.random.normal(k2, (k, dim), dtype)
    Q = jnp.zeros((k, dim), dtype).at[0].set(q0)
    HQ = jnp.zeros((k, dim), dtype)

    def orth(w, Q):
        for _ in range(2):
            w = w - Q.T @ (Q @ w)
        return w

    def body(i, carry):
        Q, HQ, scale = carry
        w = matvec(Q[i])
        HQ = HQ.at[i].set(w)
        scale = jnp.maximum(scale, jnp.linalg.norm(w))
        w = orth(w, Q)
        nrm = jnp.linalg.norm(w)
        # breakdown: continue with a fresh random direction orthogonal to the basis
        fresh = orth(extra[i], Q)
        fresh = fresh / jnp.maximum(jnp.linalg.norm(fresh), jnp.finfo(dtype).tiny)
        broke = nrm <= 1e3 * jnp.finfo(dtype).eps * jnp.maximum(scale, jnp.finfo(dtype).tiny)
        nxt = jnp.where(broke, fresh, w / jnp.where(broke, 1.0, nrm))
        Q = jnp.where(i + 1 < k, Q.at[jnp.minimum(i + 1, k - 1)].set(nxt), Q)
        return Q, HQ, scale

    Q, HQ, _ = jax.lax.fori_loop(0, k, body, (Q, HQ, jnp.zeros((), dtype)))
    # when k > dim the surplus rows cannot be orthonormal: drop them (rows of a rank-dim basis)
    if k > dim:
        Q, HQ = Q[:dim], HQ[:dim]
    T = Q @ HQ.T
    T = 0.5 * (T + T.T)
    evals, evecs = jnp.linalg.eigh(T)
    y = evecs[:, -1]
    v = Q.T @ y
    v = v / jnp.linalg.norm(v)
    lam = evals[-1]
    resid = jnp.linalg.norm(HQ.T @ y - lam * v)
    return TopEigen(lam, unravel(v), resid)


def balanced_minimum_spectrum(
    s: Sequence[float],
    depth: int,
    widths: Sequence[int],
    s_uncarried: Sequence[float] = (),
) -> np.ndarray:
    """Every Hessian eigenvalue (descending, zeros included) at a balanced decoupled optimum, whitened inputs.

    ``s``: the carried modes' singular values (all > 0, one per carried mode), each with balanced
    per-layer strength ``s^{1/n}``; ``widths`` the layer widths ``(N_1, ..., N_{N_l})``;
    ``s_uncarried``: the teacher's other singular values (a rank-limited network, G != 0).
    Module docstring: Gauss-Newton blocks ``lambda_ij = sum_l a_i^{2(n-l)} a_j^{2(l-1)}`` over output
    index i < N_out and input index j < N_in, merged with the residual couplings into
    ``s_k^{(2n-2)/n} +- s_beta s_k^{(n-2)/n}`` (and ``+- s_beta`` per idle hidden unit when n = 2).
    NumPy, float64 (a reference, not a traced function).
    """
    if int(depth) != len(widths):
        raise ValueError(f"depth {depth} does not match the {len(widths)} widths {tuple(widths)}")
    n = len(widths) - 1
    s = np.asarray(s, float)
    r = len(s)
    sb = np.asarray(s_uncarried, float)
    n_in, n_out = int(widths[0]), int(widths[-1])
    if r + len(sb) > min(n_in, n_out):
        raise ValueError(f"{r} carried + {len(sb)} uncarried modes do not fit a {n_out} x {n_in} map")
    if r > min(widths):
        raise ValueError(f"{r} carried modes need every layer at least {r} wide, got widths {tuple(widths)}")
    dim = sum(int(widths[i + 1]) * int(widths[i]) for i in range(n))
    a2_out = np.zeros(n_out)
    a2_out[:r] = s ** (2.0 / n)
    a2_in = np.zeros(n_in)
    a2_in[:r] = s ** (2.0 / n)
    vals = []
    merged = set()
    for b_idx, sbeta in enumerate(sb):
        beta = r + b_idx  # output and input index of this uncarried teacher mode
        for k in range(r):
            gn = s[k] ** ((2.0 * n - 2.0) / n)
            c = sbeta * s[k] ** ((n - 2.0) / n)
            vals += [gn + c, gn - c]
            merged |= {(beta, k), (k, beta)}
        if n == 2:
            vals += [sbeta, -sbeta] * (int(widths[1]) - r)
    for i in range(n_out):
        for j in range(n_in):
            if (i, j) in merged:
                continue
            lam = sum((a2_out[i] ** (n - l) if n - l else 1.0) * (a2_in[j] ** (l - 1) if l - 1 else 1.0) for l in range(1, n + 1))
            if lam:
                vals.append(lam)
    vals = np.asarray(vals + [0.0] * (dim - len(vals)))
    return np.sort(vals)[::-1]


def balanced_minimum_top_eigenvalue(s1: Array, depth: int) -> Array:
    """``n s_1^{(2n-2)/n}``: lambda_max at the balanced optimum of a whitened network carrying all of
    Sigma31 (``s_1`` its largest singular value, ``n = depth - 1``); supplement Eq. 19 with tau = 1.
    Also lambda_max of a rank-limited one (the residual blocks stay below it; module docstring)."""
    n = int(depth) - 1
    s1 = jnp.asarray(s1, jnp.result_type(float))
    return n * s1 ** ((2.0 * n - 2.0) / n)


def extra_width_curvature(cores: Sequence[Array], projections: Sequence[Array], stats: Stats) -> Array:
    """Largest curvature along the directions that the extra width of ``W^l = P_{l+1} M_l P_l^T`` adds.

    ``cores = (M_1, ..., M_n)``, ``projections = (P_1, ..., P_{n+1})`` with orthonormal columns,
    ``P_1 = I`` and ``P_{n+1} = I``. Returns ``max_h ||K_h||_2`` over hidden layers h with extra
    width (module docstring), ``K_h = B~ G^T A~`` with, for hidden layer h (1-based) between
    ``M_{h-1}`` and ``M_h``, ``A~ = M_n ... M_{h+1}`` and ``B~ = M_{h-2} ... M_1``; the full Hessian's
    ``lambda_max = max(lambda_max(cores), this)``. Jit-able.
    """
    cores = tuple(cores)
    n = len(cores)
    g = product(cores) @ stats.sigma11 - stats.sigma31  # the residual (same for the full network)
    out = jnp.zeros((), g.dtype)
    for h in range(1, n):  # 0-based index of a hidden layer: P = projections[h], between cores[h-1] and cores[h]
        p = projections[h]
        if p.shape[0] == p.shape[1]:
            continue  # no extra width in this layer
        above = jnp.eye(g.shape[0], dtype=g.dtype)
        for m in reversed(cores[h + 1:]):
            above = above @ m  # A~ = M_n ... (the cores above the pair): cores[h+1:]
        below = jnp.eye(g.shape[1], dtype=g.dtype)
        for m in cores[: h - 1]:
            below = m @ below  # B~ = the cores below the pair: cores[:h-1]
        k = below @ g.T @ above  # (r_{h-1}, r_{h+1})
        out = jnp.maximum(out, jnp.linalg.norm(k, 2))
    return out
