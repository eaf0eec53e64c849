"""Analytic theory of Saxe, McClelland & Ganguli (2014).

Conventions (pinned in ``shared/paper/README.md``): Sigma's are sums over examples,
``E = 1/2 sum ||y - yhat||^2``, one full-batch step is ``W <- W - lr dE/dW`` and
analytic time uses ``tau = 1/lr`` with ``t`` counted in steps.

``depth`` is always N_l, the number of *layers* (input and output included), so a
network with one hidden layer has ``depth = 3`` and ``n = depth - 1`` weight matrices.

Every closed form here was derived again and is checked against a numerical solution in
``tests/test_theory.py``. Where the printed paper differs, the docstring says so:

* Supplement Eq. 3: with the parametrisation of its Eqs. 1-2, ``ab = (c0/2) sinh(theta)``
  (not ``c0 sinh(theta)``), so the angle obeys ``tau dtheta/dt = 2 s - c0 sinh(theta)``
  and Eq. 4 must read with ``2s`` in place of ``s``:
  ``R = sqrt(c0^2 + 4 s^2)``. :func:`hyperbolic_learning_time` implements the corrected
  form (in a rearrangement that stays finite as ``c0 -> 0``, where it reduces to Eq. 11).
* Supplement Eq. 5 prints ``E = (s - prod a)/(2 tau)``; the square is missing (main Eq. 14
  has it). Its Hessian (Eqs. 7-15, 19) is right for the squared error.
* Main Eq. 16-17 write the prefactor ``N_l``; Eq. 15 gives ``N_l - 1``, the same to
  leading order. :func:`learning_time_large_depth` uses ``N_l - 1`` so that it is the
  exact ``u^2`` asymptote of Eq. 15 at every depth.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

Array = Any

__all__ = [
    "mode_strength",
    "learning_time",
    "learning_time_large_depth",
    "half_learning_time",
    "hyperbolic_learning_time",
    "hyperbolic_trajectory",
    "optimal_learning_rate",
    "stability_edge_learning_rate",
    "learning_time_at_rate_scale",
    "infinite_depth_delay",
    "fixed_point",
    "conserved_quantities",
    "mode_error",
]


def _n_weights(depth: int) -> int:
    depth = int(depth)
    if depth < 2:
        raise ValueError(f"depth must be an integer >= 2 (layers incl. input/output), got {depth}")
    return depth - 1


def _float(x: Array) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


# ----------------------------------------------------------------------------------------
# Exact antiderivative of Eq. 15
# ----------------------------------------------------------------------------------------
def _antiderivative(alpha: Array, n: int) -> Array:
    r"""G(alpha) = \int d alpha / (alpha^{n-1} (1 - alpha^n)) for alpha > 0, alpha != 1.

    With u = s alpha^n (alpha is the per-layer strength a / s^(1/n)), Eq. 15 becomes
    ``dt = tau s^(2/n - 2) dG``. Using ``alpha^{1-n}/(1-alpha^n) = alpha^{1-n} +
    alpha/(1-alpha^n)`` and the partial fractions ``1/(1-z^n) = (1/n) sum_k 1/(1 - w_k z)``
    over the n-th roots of unity w_k:

        G = alpha^{2-n}/(2-n)  [ln(alpha) for n = 2]  -  (1/n) sum_k w_k^{-2} ln(1 - w_k alpha)

    (the ``sum_k w_k^{-1}`` term vanishes for n >= 2). The k = 0 term uses ln|1 - alpha| so
    that the same formula serves alpha > 1 (a mode approaching s from above); the other
    terms never touch the branch cut. Conjugate pairs are summed as real numbers.
    """
    alpha = _float(alpha)
    if n == 1:
        # dt = tau ds... handled by caller (exponential relaxation); not used here.
        raise ValueError("n = 1 has no hidden layer; use the closed form")
    if n == 2:
        lead = jnp.log(alpha)
    else:
        lead = alpha ** (2 - n) / (2 - n)
    # k = 0 (w = 1) term: w^-2 = 1
    total = jnp.log(jnp.abs(1.0 - alpha))
    # k = 1 .. n-1: pair k with n-k (complex conjugates); a lone k = n/2 (w = -1) when n even
    for k in range(1, n // 2 + 1):
        theta = 2.0 * math.pi * k / n
        if 2 * k == n:  # w = -1, w^-2 = 1
            total = total + jnp.log1p(alpha)
            continue
        c, s_ = math.cos(theta), math.sin(theta)
        # 1 - w alpha = (1 - c alpha) - i s alpha
        re = 1.0 - c * alpha
        im = -s_ * alpha
        log_abs = 0.5 * jnp.log(re * re + im * im)
        arg = jnp.arctan2(im, re)
        # w^-2 = cos(2 theta) - i sin(2 theta); 2 Re[w^-2 log(1 - w alpha)]
        total = total + 2.0 * (math.cos(2 * theta) * log_abs + math.sin(2 * theta) * arg)
    return lead - total / n


def _time_scale(s: Array, tau: Array, n: int) -> Array:
    return tau * s ** (2.0 / n - 2.0)


def learning_time(s: Array, u0: Array, uf: Array, tau: Array = 1.0, depth: int = 3) -> Array:
    """Time for a mode of strength ``s`` to go from ``u0`` to ``uf`` (Eq. 11; Eq. 15 integrated).

    On the decoupled, balanced manifold ``tau du/dt = (N_l - 1) u^(2 - 2/(N_l-1)) (s - u)``.
    ``depth = 3`` is Eq. 11, ``t = tau/(2s) ln(uf (s - u0) / (u0 (s - uf)))``; deeper
    networks use the exact antiderivative (:func:`_antiderivative`); ``depth = 2`` (no hidden
    layer) is the linear relaxation ``tau du/dt = s - u``. Requires ``s > 0``, ``u0, uf > 0``
    on the same side of ``s``; returns inf when ``uf`` is never reached.
    Broadcasts over arrays; jit-able with ``depth`` static.
    """
    n = _n_weights(depth)
    s, u0, uf, tau = (_float(v) for v in (s, u0, uf, tau))
    if n == 1:
        return tau * jnp.log((s - u0) / (s - uf))
    if n == 2:
        return tau / (2.0 * s) * jnp.log(uf * (s - u0) / (u0 * (s - uf)))
    a0 = (u0 / s) ** (1.0 / n)
    af = (uf / s) ** (1.0 / n)
    return _time_scale(s, tau, n) * (_antiderivative(af, n) - _antiderivative(a0, n))


def half_learning_time(s: Array, u0: Array, tau: Array = 1.0, depth: int = 3) -> Array:
    """Time at which ``u`` reaches ``s/2`` from ``u0`` (the paper's 'time of half learning')."""
    return learning_time(s, u0, 0.5 * _float(s), tau, depth)


def mode_strength(t: Array, s: Array, u0: Array, tau: Array = 1.0, depth: int = 3) -> Array:
    """Strength u(t) of one mode on the decoupled, balanced manifold.

    ``depth = 3``: Eq. 12, ``u = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0)``, written as
    ``s / (1 + (s/u0 - 1) e^{-2st/tau})`` so that it cannot overflow.
    ``depth >= 4``: the exact solution of Eq. 15, found by inverting the exact
    ``t(u)`` of :func:`learning_time` with a fixed number of bisection steps in the
    per-layer strength ``alpha = (u/s)^(1/(N_l-1))`` (bracketed between ``alpha0`` and 1);
    the only error is the bisection's, below the dtype's resolution of alpha.
    ``depth = 2``: ``u = s + (u0 - s) e^{-t/tau}``.
    Broadcasts over ``t, s, u0, tau``; jit-able with ``depth`` static. ``s > 0, u0 > 0``.
    """
    n = _n_weights(depth)
    t, s, u0, tau = jnp.broadcast_arrays(*(_float(v) for v in (t, s, u0, tau)))
    if n == 1:
        return s + (u0 - s) * jnp.exp(-t / tau)
    if n == 2:
        return s / (1.0 + (s / u0 - 1.0) * jnp.exp(-2.0 * s * t / tau))
    a0 = (u0 / s) ** (1.0 / n)
    target = t / _time_scale(s, tau, n) + _antiderivative(a0, n)
    up = a0 < 1.0  # G increases towards alpha = 1 from below, and from above too
    lo = jnp.where(up, a0, jnp.ones_like(a0))
    hi = jnp.where(up, jnp.ones_like(a0), a0)
    # G increases with alpha on (0, 1) and decreases on (1, inf); alpha > mid iff ...
    n_iter = 64 if lo.dtype == jnp.float64 else 40

    def body(_, lohi):
        lo_, hi_ = lohi
        mid = 0.5 * (lo_ + hi_)
        g = _antiderivative(mid, n)
        go_up = jnp.where(up, g < target, g > target)
        return jnp.where(go_up, mid, lo_), jnp.where(go_up, hi_, mid)

    lo, hi = jax.lax.fori_loop(0, n_iter, body, (lo, hi))
    alpha = 0.5 * (lo + hi)
    alpha = jnp.where(t <= 0.0, a0, alpha)
    alpha = jnp.where(a0 == 1.0, a0, alpha)
    return s * alpha**n


def learning_time_large_depth(s: Array, u0: Array, uf: Array, tau: Array = 1.0, depth: int = 100) -> Array:
    """Large-depth learning time, Eqs. 16-17.

    For large N_l, ``u^(2 - 2/(N_l-1)) -> u^2``; integrating ``tau du/dt = n u^2 (s - u)``
    with ``n = N_l - 1`` gives
    ``t = tau/n [ s^-2 ln(uf (s - u0) / (u0 (s - uf))) + 1/(s u0) - 1/(s uf) ]``.
    (The paper writes ``N_l`` for ``n``: equal to leading order; see module docstring.)
    """
    n = _n_weights(depth)
    s, u0, uf, tau = (_float(v) for v in (s, u0, uf, tau))
    return tau / n * (jnp.log(uf * (s - u0) / (u0 * (s - uf))) / s**2 + 1.0 / (s * u0) - 1.0 / (s * uf))


def hyperbolic_learning_time(s: Array, a0: Array, b0: Array, uf: Array, tau: Array = 1.0) -> Array:
    """Time for ``u = ab`` to go from ``a0 b0`` to ``uf`` for unequal a, b (supplement Eq. 4).

    Derivation: with ``c = a^2 - b^2`` conserved and ``w = a^2 + b^2 = sqrt(c^2 + 4u^2)``,
    ``tau du/dt = w (s - u)``. Substituting ``u = (|c|/2) sinh(phi)`` gives
    ``tau dphi/dt = 2s - |c| sinh(phi)`` (the supplement's Eq. 3 with 2s for s: its
    Eq. 1-2 give ``ab = (c0/2) sinh theta``), and with ``z = tanh(phi/2) = 2u/(|c| + w)``
    and ``R = sqrt(c^2 + 4 s^2)``:

        t = tau/R [ ln((R + |c| + 2sz) / (R - |c| - 2sz)) ]_{z0}^{zf}.

    Because ``R - |c| - 2sz = 8 s |c| (s - u) / ((|c| + w)(R + |c| + 2sz))`` this equals

        t = tau/R [ 2 ln((R+|c|+2s zf)/(R+|c|+2s z0)) + ln((|c|+wf)/(|c|+w0))
                    - ln((s - uf)/(s - u0)) ]

    which is finite at c = 0, where it is Eq. 11. Valid in the basin ``a0 + b0 > 0`` and for
    ``uf`` between ``a0 b0`` and ``s`` (u0 may be negative).
    """
    s, a0, b0, uf, tau = (_float(v) for v in (s, a0, b0, uf, tau))
    c = jnp.abs(a0 * a0 - b0 * b0)
    u0 = a0 * b0
    R = jnp.sqrt(c * c + 4.0 * s * s)
    w0 = jnp.sqrt(c * c + 4.0 * u0 * u0)
    wf = jnp.sqrt(c * c + 4.0 * uf * uf)
    z0 = 2.0 * u0 / (c + w0)
    zf = 2.0 * uf / (c + wf)
    return tau / R * (
        2.0 * jnp.log((R + c + 2.0 * s * zf) / (R + c + 2.0 * s * z0))
        + jnp.log((c + wf) / (c + w0))
        - jnp.log((s - uf) / (s - u0))
    )


def hyperbolic_trajectory(t: Array, s: Array, a0: Array, b0: Array, tau: Array = 1.0) -> tuple[Array, Array]:
    """Analytic (a(t), b(t)) of Eq. 8 from any start in the basin a0 + b0 > 0 (supplement Eqs. 1-4).

    Inverts the corrected Eq. 4: ``Q(z) = (R + |c| + 2sz)/(R - |c| - 2sz)`` grows as
    ``Q(z0) e^{R t / tau}``, so ``z(t) = (Q (R - |c|) - (R + |c|)) / (2 s (Q + 1))``, then
    ``u = |c| z / (1 - z^2)`` and a, b follow from ``a^2 - b^2 = c``, ``ab = u``. For
    ``c = 0`` (to within 1e-12 s^2) it is the balanced sigmoid Eq. 12 with ``a = b = sqrt(u)``.
    """
    t, s, a0, b0, tau = jnp.broadcast_arrays(*(_float(v) for v in (t, s, a0, b0, tau)))
    c_signed = a0 * a0 - b0 * b0
    c = jnp.abs(c_signed)
    u0 = a0 * b0
    R = jnp.sqrt(c * c + 4.0 * s * s)
    w0 = jnp.sqrt(c * c + 4.0 * u0 * u0)
    z0 = 2.0 * u0 / (c + w0)
    # log Q(z0) via the finite form: Q = (R + c + 2sz)^2 (c + w) / (8 s c (s - u))
    small = c < 1e-12 * s * s
    c_safe = jnp.where(small, 1.0, c)
    # Q < 0 when the start lies beyond the fixed point (u0 > s); |Q| grows as e^{Rt/tau}
    sign_q = jnp.where(u0 > s, -1.0, 1.0)
    logq0 = 2.0 * jnp.log(R + c_safe + 2.0 * s * z0) + jnp.log(c_safe + w0) - jnp.log(8.0 * s * c_safe * jnp.abs(s - u0))
    logq = logq0 + R * t / tau
    # z = (Q (R - c) - (R + c)) / (2 s (Q + 1)), evaluated stably for large |Q|
    q_inv = sign_q * jnp.exp(-logq)
    z = ((R - c_safe) - (R + c_safe) * q_inv) / (2.0 * s * (1.0 + q_inv))
    u = c_safe * z / (1.0 - z * z)
    u = jnp.where(small, mode_strength(t, s, jnp.maximum(u0, 1e-30), tau, 3), u)
    w = jnp.sqrt(c_signed * c_signed + 4.0 * u * u)
    a = jnp.sqrt(jnp.maximum(0.5 * (w + c_signed), 0.0))
    b = jnp.sqrt(jnp.maximum(0.5 * (w - c_signed), 0.0))
    # for u < 0 the smaller of |a|, |b| is negative (basin a + b > 0)
    neg = u < 0
    a = jnp.where(neg & (c_signed < 0), -a, a)
    b = jnp.where(neg & (c_signed > 0), -b, b)
    return a, b


def optimal_learning_rate(s: Array, depth: int, tau: Array = 1.0) -> Array:
    """The supplement's optimal-rate estimate ``1 / lambda_1(a_opt)`` (its Eqs. 15 and 19).

    ``lambda_1(a) = [(2N_l - 3) a^{2N_l-4} - (N_l - 2) s a^{N_l-3}] / tau`` is the Hessian
    eigenvalue along (1, ..., 1) on the balanced manifold; at the optimum
    ``a_opt = s^{1/(N_l-1)}`` it is ``(N_l - 1) s^{(2N_l-4)/(N_l-1)} / tau``. With ``tau = 1``
    (the loss ``1/2 (s - prod a)^2`` itself) this is a learning rate in step units;
    gradient descent at the optimum is stable below twice this
    (:func:`stability_edge_learning_rate`). Scales as ``1/(N_l s^2)`` for large depth
    (supplement Eq. 20).
    """
    n = _n_weights(depth)
    s, tau = _float(s), _float(tau)
    return tau / (n * s ** (2.0 - 2.0 / n))


def stability_edge_learning_rate(s: Array, depth: int) -> Array:
    """Largest stable step size at the optimum of mode s: ``2 / lambda_1(a_opt)``."""
    return 2.0 * optimal_learning_rate(s, depth)


def learning_time_at_rate_scale(s: Array, u0: Array, uf: Array, depth: int, eta: Array = 1.0) -> Array:
    """Learning time in steps with the rate ``lr = eta / lambda_1(a_opt)`` (supplement 2.1).

    Eq. 21 (depth 3) and Eq. 22 (depth -> inf) are the two ends of this function.
    """
    lr = _float(eta) * optimal_learning_rate(s, depth)
    return learning_time(s, u0, uf, 1.0 / lr, depth)


def infinite_depth_delay(s: Array, u0: Array, uf: Array, eta: Array = 1.0) -> Array:
    """``t_inf - t_3 = (s/u0 - s/uf) / eta`` at rate ``eta / lambda_1(a_opt)`` (supplement Eq. 23)."""
    s, u0, uf, eta = (_float(v) for v in (s, u0, uf, eta))
    return (s / u0 - s / uf) / eta


def fixed_point(sigma31: Array, rank: int) -> Array:
    """Globally stable fixed point ``W_total = sum_{alpha <= rank} s_alpha u_alpha v_alpha^T`` (Eq. 7).

    For ``Sigma11 = I`` this is the best rank-``rank`` approximation of Sigma31
    (Eckart-Young), the network's product ``W^{N_l-1} ... W^1`` at convergence when the
    narrowest hidden layer has ``rank`` units.
    """
    u, s, vt = jnp.linalg.svd(jnp.asarray(sigma31), full_matrices=False)
    k = int(rank)
    return (u[:, :k] * s[:k]) @ vt[:k]


def conserved_quantities(a: Array) -> Array:
    """``a_i^2 - a_{i+1}^2`` along the last axis (conserved by Eq. 14's gradient flow)."""
    a = _float(a)
    return a[..., :-1] ** 2 - a[..., 1:] ** 2


def mode_error(s: Array, u: Array) -> Array:
    """Training error carried by decoupled modes: ``1/2 sum_alpha (s_alpha - u_alpha)^2`` (Eq. 6/14, tau = 1)."""
    s, u = _float(s), _float(u)
    return 0.5 * jnp.sum((s - u) ** 2, axis=-1)
