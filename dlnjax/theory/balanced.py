"""Exact gradient-flow solutions of a one-hidden-layer linear network from beta-balanced starts.

Setting: ``N_l = 3`` (``W1``: N_h x N_i, ``W2``: N_o x N_h), whitened inputs ``Sigma11 = I``,
summed statistics, flow time ``t = lr x steps`` (:mod:`dlnjax.theory.gradient_flow`):

    dW1/dt = W2^T (S - W2 W1),     dW2/dt = (S - W2 W1) W1^T,     S = Sigma31 (N_o x N_i).

The *balance* ``W2^T W2 - W1 W1^T`` is conserved (its derivative is ``W2^T R W1^T - W2^T R W1^T``
with ``R = S - W2 W1``). A start is beta-balanced when it equals ``beta I_{N_h}`` (beta is the
balance constant, not a learning rate). This generalises the paper's ``a^2 - b^2 = c`` (supplement
Eqs. 1-4) to whole matrices; the solution below is Fukumizu's (1998) matrix Riccati solution as
generalised by Braun, Dominé, Fitzgerald & Saxe (NeurIPS 2022) and Dominé et al. (ICLR 2025,
"From lazy to rich"), derived again here.

Derivation. Stack ``Q = [W1^T; W2]`` ((N_i + N_o) x N_h). Then
``dQ/dt = F Q - [W1^T W2^T W2; W2 W1 W1^T]`` with ``F = [[0, S^T], [S, 0]]``. Balance gives
``W1^T W2^T W2 = W1^T W1 W1^T + beta W1^T`` and ``W2 W1 W1^T = W2 W2^T W2 - beta W2``, while
``Q Q^T Q = [W1^T W1 W1^T + W1^T W2^T W2; W2 W1 W1^T + W2 W2^T W2]``, so the subtracted block is
``1/2 Q Q^T Q + (beta/2) J Q`` with ``J = diag(I_{N_i}, -I_{N_o})``:

    dQ/dt = F_b Q - 1/2 Q Q^T Q,      F_b = F - (beta/2) J   (symmetric),

and ``P = Q Q^T`` obeys the Riccati equation ``dP/dt = F_b P + P F_b - P^2``. Where P is invertible,
``R = P^{-1}`` obeys the *linear* ``dR/dt = I - F_b R - R F_b``, so
``R(t) = e^{-F_b t} R0 e^{-F_b t} + (2 F_b)^{-1} (I - e^{-2 F_b t})``; pushing the inverse through
(``(P0^{-1} + K)^{-1} = Q0 (I + Q0^T K Q0)^{-1} Q0^T`` for ``P0 = Q0 Q0^T``) removes the need for
an invertible P0 (N_h < N_i + N_o always):

    P(t) = e^{F_b t} Q0 [ I_{N_h} + Q0^T K(t) Q0 ]^{-1} Q0^T e^{F_b t},
    K(t) = (e^{2 F_b t} - I) (2 F_b)^{-1}   (entire in F_b: t on a zero eigenvalue).

(The bracket is positive definite for every t >= 0 since ``(e^{2 f t} - 1)/(2f) > 0``.) The
blocks of ``P`` are the quantities of interest: ``W1^T W1`` (top left, the input-side
representation), ``W2 W1`` (bottom left, the end-to-end map) and ``W2 W2^T`` (bottom right).
Eigenvalues of ``F_b``: ``+- sqrt(s_a^2 + beta^2/4)`` on each mode of S (a 2x2 block
``[[-beta/2, s], [s, beta/2]]``), ``-beta/2`` on input directions outside S's row space and
``+beta/2`` on output directions outside its column space.

Which widths the theory covers. The conservation law needs no width condition, but a
beta-balanced start must exist: ``beta > 0`` makes ``W2^T W2 = W1 W1^T + beta I`` positive
definite, so rank ``W2 = N_h``, i.e. ``N_h <= N_o``; ``beta < 0`` likewise needs ``N_h <= N_i``;
``beta = 0`` allows any widths. Inside these conditions the formula above holds for every start
(any widths, any scale); outside them no start exists and the functions raise ``ValueError``.

Neural tangent kernel on the training inputs (rows of X, ``X^T X = Sigma11 = I``): for
``f(x) = W2 W1 x``, ``Theta((mu,i),(nu,j)) = (x_mu . x_nu) (W2 W2^T)_ij + x_mu^T W1^T W1 x_nu delta_ij``,
i.e. ``Theta = X X^T (x) W2 W2^T + X W1^T W1 X^T (x) I_{N_o}``. With orthonormal columns of X its
Frobenius norm needs no kernel: ``||A (x) B||_F = ||A||_F ||B||_F`` and
``<X X^T (x) B, X A X^T (x) I> = tr(A) tr(B)``, so for ``Delta = Theta(t) - Theta(0)``,
``||Delta||_F^2 = N_i ||dB||_F^2 + N_o ||dA||_F^2 + 2 tr(dA) tr(dB)`` (A = W1^T W1, B = W2 W2^T).

Numerics: in the eigenbasis of ``F_b`` (eigenvalues lam), with ``Y = phi^{1/2} C0``
(``phi = (e^{2 lam t} - 1)/(2 lam)``, ``C0 = O^T Q0``) and ``psi = e^{-2 lam t} phi``,
``P = psi^{-1/2} Y (I + Y^T Y)^{-1} Y^T psi^{-1/2} = psi^{-1/2} U diag(sig^2/(1+sig^2)) U^T psi^{-1/2}``
from the SVD ``Y = U sig V^T``: every factor is bounded (no inverse of an ill-conditioned matrix).
Directions still grow at different rates, and once ``e^{(lam_i - lam_j) t}`` passes 1/eps an SVD of
the graded Y loses the slower ones; so the flow is advanced in chunks over which the spread of
``lam t`` is at most 8, restarting each from a factor of the current P (its top N_h eigenpairs;
any factor gives the same P). Each chunk is the exact map, so the only error is rounding,
accumulated over ``~ t (lam_max - lam_min) / 8`` chunks. All functions are jit-able and vmap over ``t``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = Any

__all__ = [
    "check_widths",
    "balance",
    "sample_balanced",
    "BalancedState",
    "solution",
    "end_to_end",
    "ntk",
    "ntk_relative_change",
]


def check_widths(n_in: int, n_hidden: int, n_out: int, beta: float) -> None:
    """Raise ``ValueError`` unless a beta-balanced start exists for these widths (module docstring)."""
    n_in, n_hidden, n_out = int(n_in), int(n_hidden), int(n_out)
    if min(n_in, n_hidden, n_out) < 1:
        raise ValueError(f"widths must be >= 1, got (in, hidden, out) = ({n_in}, {n_hidden}, {n_out})")
    if beta > 0 and n_hidden > n_out:
        raise ValueError(
            f"beta = {beta} > 0 needs hidden <= output width (W2^T W2 = W1 W1^T + beta I has full rank "
            f"{n_hidden}), got hidden {n_hidden} > output {n_out}"
        )
    if beta < 0 and n_hidden > n_in:
        raise ValueError(
            f"beta = {beta} < 0 needs hidden <= input width (W1 W1^T = W2^T W2 + |beta| I has full rank "
            f"{n_hidden}), got hidden {n_hidden} > input {n_in}"
        )


def balance(w1: Array, w2: Array) -> Array:
    """``W2^T W2 - W1 W1^T`` (conserved by the flow; ``beta I`` for a beta-balanced start)."""
    return w2.T @ w2 - w1 @ w1.T


def _haar(key: Array, n: int, m: int, dtype: Any) -> Array:
    """n x m with orthonormal columns (m <= n), Haar (sign-corrected QR)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, m), dtype))
    d = jnp.sign(jnp.diagonal(r))
    return q * jnp.where(d == 0, 1.0, d)[None, :]


def sample_balanced(
    key: Array, n_in: int, n_hidden: int, n_out: int, scale: float, beta: float, dtype: Any = None
) -> tuple[Array, Array]:
    """A random beta-balanced start ``(W1, W2)``: ``W2^T W2 - W1 W1^T = beta I``.

    How: the layer that the balance does not force to full rank is Gaussian, entries
    ``N(0, scale^2 / fan_in)``; the other shares its hidden singular basis and gets singular values
    ``sqrt(c_k^2 + |beta|)``. For ``beta >= 0``: ``W1 = scale G / sqrt(N_i) = R diag(c) V^T`` (c padded
    with zeros to N_h) and ``W2 = U diag(sqrt(c^2 + beta)) R^T`` with U Haar (orthonormal columns);
    for ``beta < 0`` the roles swap (``W2`` Gaussian with fan-in N_h, ``W1 = R diag(sqrt(c^2 + |beta|)) V^T``).
    With ``beta = 0`` and more hidden directions than the output can carry, c is cut to its first
    ``min(N_i, N_o, N_h)`` values (W1 rebuilt with them) so both sides have the same rank. ``scale``
    sets the typical singular value of the Gaussian layer, ``beta`` the imbalance.
    """
    check_widths(n_in, n_hidden, n_out, beta)
    dtype = dtype or jnp.result_type(float)
    kg, ku = jax.random.split(key)
    if beta >= 0:
        g = scale * jax.random.normal(kg, (n_hidden, n_in), dtype) / jnp.sqrt(n_in)
        r, c, vt = jnp.linalg.svd(g, full_matrices=True)  # r: N_h x N_h, vt: N_i x N_i
        k = min(n_hidden, n_in) if beta > 0 else min(n_hidden, n_in, n_out)
        c = jnp.zeros(n_hidden, dtype).at[:k].set(c[:k])
        m1 = min(n_hidden, n_in)
        w1 = (r[:, :m1] * c[:m1]) @ vt[:m1]
        b = jnp.sqrt(c * c + beta)
        m2 = min(n_hidden, n_out)  # = n_hidden when beta > 0
        u = _haar(ku, n_out, m2, dtype)
        w2 = (u * b[:m2]) @ r[:, :m2].T
        return w1, w2
    g = scale * jax.random.normal(kg, (n_out, n_hidden), dtype) / jnp.sqrt(n_hidden)
    u, c, rt = jnp.linalg.svd(g, full_matrices=True)  # u: N_o x N_o, rt: N_h x N_h
    k = min(n_hidden, n_out)
    c = jnp.zeros(n_hidden, dtype).at[:k].set(c[:k])
    w2 = (u[:, :k] * c[:k]) @ rt[:k]
    a = jnp.sqrt(c * c - beta)
    v = _haar(ku, n_in, n_hidden, dtype)  # n_hidden <= n_in
    w1 = (rt.T * a) @ v.T
    return w1, w2


class BalancedState(NamedTuple):
    """Blocks of ``P = Q Q^T`` at time t (leading axes: those of t)."""

    w1tw1: Array  # (N_i, N_i)  W1^T W1: the input-side representation
    w2w1: Array  # (N_o, N_i)   W2 W1: the end-to-end map
    w2w2t: Array  # (N_o, N_o)  W2 W2^T: the output-side representation


def _check_start(w1: Array, w2: Array, beta: float, rtol: float) -> None:
    n_h, n_i = w1.shape
    n_o = w2.shape[0]
    if w2.shape[1] != n_h:
        raise ValueError(f"W1 {tuple(w1.shape)} and W2 {tuple(w2.shape)} do not chain")
    check_widths(n_i, n_h, n_o, beta)
    import numpy as np

    try:
        b = np.asarray(balance(w1, w2))
        w1, w2 = np.asarray(w1), np.asarray(w2)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return  # traced: the caller vouches for the start
    size = max(float(np.abs(np.asarray(w1)).max() ** 2), float(np.abs(np.asarray(w2)).max() ** 2), abs(beta), 1e-300)
    err = float(np.abs(b - beta * np.eye(n_h)).max())
    if err > rtol * size * max(n_h, n_i, n_o):
        raise ValueError(
            f"start is not beta-balanced: max |W2^T W2 - W1 W1^T - beta I| = {err:.3g} for beta = {beta} "
            f"(weights of size {size ** 0.5:.3g}); sample one with balanced.sample_balanced"
        )


def solution(
    t: Array, w1: Array, w2: Array, sigma31: Array, beta: float | None = None, *, balance_rtol: float = 1e-8
) -> BalancedState:
    """Exact ``W1^T W1``, ``W2 W1``, ``W2 W2^T`` at flow time ``t`` from the start ``(W1, W2)`` (Sigma11 = I).

    ``beta`` defaults to the start's own ``mean diag(W2^T W2 - W1 W1^T)``; a concrete start is
    checked to be beta-balanced (relative ``balance_rtol``) and the widths to admit one
    (:func:`check_widths`), else ``ValueError``. ``t`` may be an array (results gain its shape
    in front). Formula and derivation: module docstring.
    """
    w1, w2, s = jnp.asarray(w1), jnp.asarray(w2), jnp.asarray(sigma31)
    dtype = jnp.result_type(w1.dtype, w2.dtype, s.dtype)
    w1, w2, s = w1.astype(dtype), w2.astype(dtype), s.astype(dtype)
    n_h, n_i = w1.shape
    n_o = w2.shape[0]
    if s.shape != (n_o, n_i):
        raise ValueError(f"sigma31 must be {(n_o, n_i)} for these weights, got {tuple(s.shape)}")
    if beta is None:
        beta = float(jnp.mean(jnp.diagonal(balance(w1, w2))))
    _check_start(w1, w2, float(beta), balance_rtol)
    n = n_i + n_o
    f = jnp.zeros((n, n), dtype).at[:n_i, n_i:].set(s.T).at[n_i:, :n_i].set(s)
    j = jnp.concatenate([jnp.ones(n_i, dtype), -jnp.ones(n_o, dtype)])
    fb = f - 0.5 * beta * jnp.diag(j)
    lam, o = jnp.linalg.eigh(fb)
    c0 = o.T @ jnp.concatenate([w1.T, w2], axis=0)  # Q0 in F_b's eigenbasis, (n, N_h)
    safe = jnp.where(lam == 0, 1.0, lam)
    # a chunk of the flow over which e^{lam t} spans at most e^{8} between directions
    h_max = 8.0 / jnp.maximum(jnp.max(lam) - jnp.min(lam), 1e-12)

    def advance(c, tt):
        """Exact P(tt) (eigenbasis) from a factor c with P(0) = c c^T; tt > 0, spread of lam tt <= 8."""
        lt = lam * tt
        # psi = (1 - e^{-2 lam t}) / (2 lam) > 0 (t on lam = 0); phi = e^{2 lam t} psi = (e^{2 lam t} - 1)/(2 lam)
        psi = jnp.where(lam == 0, tt, -jnp.expm1(-2.0 * lt) / (2.0 * safe))
        sqrt_phi = jnp.where(lam > 0, jnp.exp(lt) * jnp.sqrt(psi),
                             jnp.sqrt(jnp.where(lam == 0, tt, jnp.expm1(2.0 * lt) / (2.0 * safe))))
        # P = D c (I + Y^T Y)^{-1} c^T D with D = e^{Lam t}, Y = phi^{1/2} c, and D = E phi^{1/2},
        # E = psi^{-1/2}: P = E [Y (I + Y^T Y)^{-1} Y^T] E = E U diag(sig^2 / (1 + sig^2)) U^T E (Y = U sig V^T)
        y = sqrt_phi[:, None] * c
        uy, sig, _ = jnp.linalg.svd(y, full_matrices=False)
        e = 1.0 / jnp.sqrt(psi)
        core = (uy * (sig * sig / (1.0 + sig * sig))) @ uy.T
        return e[:, None] * core * e[None, :]

    def factor(p_eig):
        w, v = jnp.linalg.eigh(0.5 * (p_eig + p_eig.T))
        return v[:, -n_h:] * jnp.sqrt(jnp.maximum(w[-n_h:], 0.0))[None, :]

    def at(tt):
        tt = jnp.asarray(tt, dtype)

        def cond(carry):
            return carry[1] < tt

        def body(carry):
            c, done, _ = carry
            h = jnp.minimum(h_max, tt - done)
            p_eig = advance(c, h)
            return factor(p_eig), done + h, p_eig

        p0 = c0 @ c0.T
        _, _, p_eig = jax.lax.while_loop(cond, body, (c0, jnp.zeros((), dtype), p0))
        p = o @ p_eig @ o.T
        p = 0.5 * (p + p.T)
        return BalancedState(p[:n_i, :n_i], p[n_i:, :n_i], p[n_i:, n_i:])

    t = jnp.asarray(t, dtype)
    flat = jax.vmap(at)(t.reshape(-1))
    return jax.tree_util.tree_map(lambda x: x.reshape(t.shape + x.shape[1:]), flat)


def end_to_end(t: Array, w1: Array, w2: Array, sigma31: Array, beta: float | None = None) -> Array:
    """``W2 W1 (t)``, the network's end-to-end map (:func:`solution`)."""
    return solution(t, w1, w2, sigma31, beta).w2w1


def ntk(w1tw1: Array, w2w2t: Array, x: Array) -> Array:
    """NTK on inputs x (rows), shape ``(P N_o, P N_o)``, index ``(mu, i)`` row-major:
    ``X X^T (x) W2 W2^T + X W1^T W1 X^T (x) I``."""
    n_o = w2w2t.shape[0]
    return jnp.kron(x @ x.T, w2w2t) + jnp.kron(x @ w1tw1 @ x.T, jnp.eye(n_o, dtype=w2w2t.dtype))


def ntk_relative_change(state: BalancedState, state0: BalancedState) -> Array:
    """``||Theta(t) - Theta(0)||_F / ||Theta(0)||_F`` on whitened training inputs, without the kernel.

    Uses ``||A (x) B||_F = ||A||_F ||B||_F`` and ``<X X^T (x) B, X A X^T (x) I> = tr A tr B`` for X with
    orthonormal columns (module docstring); equal to the explicit :func:`ntk` norms (tested).
    Broadcasts over leading axes of ``state``.
    """
    n_i = state0.w1tw1.shape[-1]
    n_o = state0.w2w2t.shape[-1]

    def sq(a, b):
        tr = lambda m: jnp.trace(m, axis1=-2, axis2=-1)  # noqa: E731
        fro = lambda m: jnp.sum(m * m, axis=(-2, -1))  # noqa: E731
        return n_i * fro(b) + n_o * fro(a) + 2.0 * tr(a) * tr(b)

    da = state.w1tw1 - state0.w1tw1
    db = state.w2w2t - state0.w2w2t
    return jnp.sqrt(sq(da, db) / sq(state0.w1tw1, state0.w2w2t))
