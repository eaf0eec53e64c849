"""Gradient descent at a finite learning rate on decoupled, balanced modes: an exact scalar map.

Conventions (``shared/paper/README.md``): Sigma's are sums over examples, ``E = 1/2 sum ||y - yhat||^2``,
one full-batch step is ``W <- W - lr dE/dW``; ``depth`` = N_l counts layers (input and output
included), so a network has ``n = depth - 1`` weight matrices.

Derivation. On the decoupled manifold of Section 2 (``W^l = R_{l+1} D_l R_l^T``, ``R_1 = V``,
``R_{N_l} = U``, the singular vectors of Sigma31) with inputs whose covariance is diagonal in the
same basis (``V^T Sigma11 V = diag(d)``; ``d = 1`` for whitened inputs), the end-to-end map is
``W = U diag(u) V^T`` with ``u_alpha = prod_l a_{l,alpha}``, and Eq. 13's error splits over modes:

    E = 1/2 tr Sigma33 + sum_alpha ( d_alpha u_alpha^2 / 2 - s_alpha u_alpha )
      = E* + sum_alpha (d_alpha / 2) (u_alpha - s_alpha / d_alpha)^2,

``E* = 1/2 tr Sigma33 - sum_alpha s_alpha^2 / (2 d_alpha)`` (sum over the carried modes). The
gradient of Eq. 13, ``dE/dW^l = A_l^T (W Sigma11 - Sigma31) B_l^T``, keeps the decoupled form (every
factor is diagonal in the same bases), so each step of full-batch gradient descent acts on each
mode's strengths alone: ``dE/da_{l,alpha} = (d u - s) prod_{k != l} a_{k,alpha}``. From a balanced
start (all ``a_{l,alpha}`` equal; :func:`dlnjax.init.functions.decoupled`) the symmetry keeps them equal at every
step, and the whole network is a set of independent scalar maps (this is the discrete-time,
finite-``lr`` version of Eq. 14; it is exact, not a small-rate approximation):

    a_{k+1} = a_k - lr a_k^{n-1} (d a_k^n - s).

Stability. The fixed point ``a* = (s/d)^{1/n}`` has multiplier
``f'(a*) = 1 - lr n d a*^{2n-2}`` (the term with ``(d a^n - s)`` vanishes there), so it is linearly
stable iff ``0 < lr < lr_edge = 2 / (n d (s/d)^{(2n-2)/n})``. For ``d = 1`` this is twice the
supplement's ``1/lambda_1(a_opt)`` (its Eq. 19), i.e. :func:`dlnjax.theory.closed_form.stability_edge_learning_rate`.
Beyond the edge the map period-doubles, then turns chaotic (bounded orbits that never settle),
then every orbit from small ``a`` escapes to infinity.

Cross-mode directions. The scalar maps are exact only while the network stays decoupled, which it
does in exact arithmetic; rounding seeds off-diagonal components, and these grow when the optimum is
unstable *across* modes. At the optimum (``G = W Sigma11 - Sigma31 = 0`` on the carried modes) the
Hessian is Gauss-Newton, ``||dW_total Sigma11^{1/2}||^2``: in the mode bases a perturbation of entry
``(i, j)`` of layer ``l`` moves only entry ``(i, j)`` of the product, by
``a_i^{n-l} a_j^{l-1}`` (``a_i`` the per-layer strength of output mode i, ``a_j`` of input mode j,
0 for a direction the network does not carry), so the Hessian's non-zero eigenvalues are

    lambda_ij = d_j sum_{l=1}^{n} a_i^{2(n-l)} a_j^{2(l-1)}      (= n d a^{2n-2} for i = j).

For whitened inputs (all ``d = 1``) the diagonal ``i = j = 1`` is the largest (each term is at most
``a_1^{2n-2}``), so the mode edge of the strongest mode is the network's edge. With unequal ``d`` a
cross pair can be larger (e.g. ``d_j`` large with ``a_i`` large): then the network leaves the
decoupled manifold at rates where every scalar map still converges; :func:`network_edge` gives the
true edge ``2 / max lambda_ij``.

Every function is pure and jit-able (``depth`` static) and broadcasts over modes along the last
axis. Checked against simulated networks in ``tests/test_finite_rate.py``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from dlnjax.theory.closed_form import _float, _n_weights

Array = Any

__all__ = [
    "step",
    "trajectory",
    "mode_excess",
    "network_loss_curve",
    "LearningTime",
    "learning_time",
    "stability_edge",
    "network_edge",
    "FastestRate",
    "fastest_rate",
]


_n = _n_weights  # depth N_l -> n = N_l - 1 weight layers (checked)


def _per_layer(u0: Array, n: int) -> Array:
    """Balanced per-layer strength ``a0 = u0^{1/n}`` (``u0 > 0``; the sign would sit on one layer)."""
    return _float(u0) ** (1.0 / n)


def step(a: Array, lr: Array, s: Array, d: Array = 1.0, n: int = 2) -> Array:
    """One full-batch step on a balanced mode: ``a - lr a^{n-1} (d a^n - s)``.

    ``n`` is the number of weight matrices (``depth - 1``), a Python int. Broadcasts.
    """
    a, lr, s, d = (_float(v) for v in (a, lr, s, d))
    p = a ** (n - 1)
    return a - lr * p * (d * p * a - s)


def trajectory(a0: Array, lr: Array, s: Array, d: Array, n: int, num_steps: int) -> Array:
    """Per-layer strengths ``a_0 .. a_{num_steps}`` of the exact map (``lax.scan``), shape ``(num_steps+1, ...)``.

    ``a0, s, d`` broadcast together (one entry per mode); ``n = depth - 1`` and ``num_steps`` static.
    """
    a0, lr, s, d = jnp.broadcast_arrays(*(_float(v) for v in (a0, lr, s, d)))

    def body(a, _):
        nxt = step(a, lr, s, d, n)
        return nxt, nxt

    _, rest = jax.lax.scan(body, a0, None, length=int(num_steps))
    return jnp.concatenate([a0[None], rest], axis=0)


def mode_excess(u: Array, s: Array, d: Array = 1.0) -> Array:
    """Excess error of a mode over its optimum: ``d/2 (u - s/d)^2 = (d u^2/2 - s u) + s^2/(2d)``."""
    u, s, d = (_float(v) for v in (u, s, d))
    return 0.5 * d * (u - s / d) ** 2


def network_loss_curve(
    u0: Array, lr: Array, s: Array, d: Array = 1.0, *, depth: int, num_steps: int, tr33: Array = None
) -> Array:
    """E(t) at steps ``0..num_steps`` of a decoupled network (all modes along the last axis).

    ``E(t) = 1/2 tr33 + sum_alpha (d_alpha u_alpha(t)^2 / 2 - s_alpha u_alpha(t))`` with each
    ``u_alpha = a_alpha^n`` from its own map (module docstring). ``tr33 = sum ||y||^2``; by default
    ``sum_alpha s_alpha^2 / d_alpha`` (a teacher with exactly these modes and no noise, where
    ``E* = 0``). Teacher modes that the network does not carry add ``s^2/2`` each to ``tr33/2``.
    """
    n = _n(depth)
    s, d = jnp.atleast_1d(_float(s)), jnp.atleast_1d(_float(d))
    a = trajectory(_per_layer(u0, n), lr, s, d, n, num_steps)
    u = a**n
    const = jnp.sum(s * s / d, axis=-1) if tr33 is None else _float(tr33)
    return 0.5 * const + jnp.sum(0.5 * d * u * u - s * u, axis=-1)


class LearningTime(NamedTuple):
    """Outcome of :func:`learning_time` (int32 fields; broadcast over leading axes of ``lr``)."""

    step: Array  # first step k with excess(k) < threshold; -1 if never (within max_steps / before diverging)
    diverge_step: Array  # first step the loss is not finite or exceeds diverge_factor * E(0); -1 if never


def learning_time(
    u0: Array,
    lr: Array,
    s: Array,
    d: Array = 1.0,
    *,
    depth: int,
    eps: Array | None = None,
    threshold: Array | None = None,
    max_steps: int = 100_000,
    e_star: Array = 0.0,
    diverge_factor: float = 1e4,
) -> LearningTime:
    """First step at which the modes' summed excess error falls below a threshold (exact map).

    Modes lie along the last axis of ``u0, s, d`` (one map each); ``lr`` is a scalar (vmap for a
    grid). The network's error is ``E(k) = E* + X(k)`` with the excess
    ``X = sum_alpha mode_excess(u_alpha, s_alpha, d_alpha)``. Give exactly one of

    * ``eps``: the relative criterion ``E <= E* + eps (E(0) - E*)``, i.e. ``X(k) < eps X(0)``
      (``E*`` the best error of the carried modes, :func:`dlnjax.best_error` with the rank of
      the network; it cancels);
    * ``threshold``: an absolute bound on the excess, ``X(k) < threshold`` (for one mode: the
      mode's error above its optimum).

    The comparison is strict (``<``) like :func:`dlnjax.networks.linear.make_runner`'s ``cross_step``.
    Divergence uses the runner's rule on the full error ``E = e_star + X``: not finite or above
    ``diverge_factor * E(0)``; a diverged run has ``step = -1``. Loop: ``lax.while_loop`` up to
    ``max_steps`` (static) steps, stopping at the crossing or the divergence.
    """
    if (eps is None) == (threshold is None):
        raise ValueError("learning_time: give exactly one of eps (relative) or threshold (absolute)")
    n = _n(depth)
    a0 = _per_layer(u0, n)
    a0, s, d = (jnp.atleast_1d(x) for x in jnp.broadcast_arrays(a0, _float(s), _float(d)))
    lr = _float(lr)
    e_star = _float(e_star)

    def excess(a):
        return jnp.sum(mode_excess(a**n, s, d), axis=-1)

    x0 = excess(a0)
    thr = _float(eps) * x0 if eps is not None else _float(threshold)
    e0 = e_star + x0
    i32 = jnp.int32

    def cond(c):
        k, _, cross, div = c
        return (k <= max_steps) & (cross < 0) & (div < 0)

    def body(c):
        k, a, cross, div = c
        x = excess(a)
        e = e_star + x
        bad = (~jnp.isfinite(e)) | (e > diverge_factor * jnp.abs(e0) + 1e-30)
        div = jnp.where(bad, k, div)
        cross = jnp.where((~bad) & (x < thr), k, cross)
        return k + 1, step(a, lr, s, d, n), cross, div

    init = (i32(0), a0, i32(-1), i32(-1))
    _, _, cross, div = jax.lax.while_loop(cond, body, init)
    return LearningTime(cross, div)


def stability_edge(s: Array, d: Array = 1.0, depth: int = 3) -> Array:
    """Largest rate at which the learned mode ``a* = (s/d)^{1/n}`` is linearly stable.

    ``f'(a*) = 1 - lr n d a*^{2n-2}`` must stay above -1: ``lr_edge = 2 / (n d (s/d)^{(2n-2)/n})``
    (``n = depth - 1``). For a network, the smallest edge over its modes (the strongest
    ``s/d``... precisely the largest ``d (s/d)^{(2n-2)/n}``) sets the network's edge.
    """
    n = _n(depth)
    s, d = _float(s), _float(d)
    return 2.0 / (n * d * (s / d) ** ((2.0 * n - 2.0) / n))


def network_edge(s: Array, d: Array = 1.0, depth: int = 3, d_extra: Array = ()) -> Array:
    """Stability edge of the decoupled network's optimum, cross-mode directions included.

    ``2 / max_{i,j} lambda_ij`` with ``lambda_ij = d_j sum_{l=1}^{n} a_i^{2(n-l)} a_j^{2(l-1)}``
    (module docstring), ``a = (s/d)^{1/n}`` per carried mode; ``d_extra`` lists the input variances
    along input directions the network does not carry (``a_j = 0``: ``lambda_ij = d_j a_i^{2n-2}``).
    Output directions that are not carried give ``lambda = d_j a_j^{2n-2}``, never the largest.
    Equal to :func:`stability_edge` of the strongest mode when all ``d = 1``. Assumes Sigma11 is
    diagonal in the input singular basis of Sigma31 and the network carries every mode of Sigma31.
    """
    n = _n(depth)
    s, d = jnp.broadcast_arrays(_float(s), _float(d))
    s, d = jnp.atleast_1d(s), jnp.atleast_1d(d)
    a2 = (s / d) ** (2.0 / n)  # a^2 per carried mode
    ai, aj = a2[:, None], a2[None, :]
    terms = jnp.stack([ai ** (n - l) * aj ** (l - 1) for l in range(1, n + 1)])
    lam = d[None, :] * jnp.sum(terms, axis=0)
    top = jnp.max(lam)
    d_extra = jnp.atleast_1d(_float(jnp.asarray(d_extra, dtype=s.dtype)))
    if d_extra.size:
        top = jnp.maximum(top, jnp.max(d_extra) * jnp.max(a2) ** (n - 1))
    return 2.0 / top


class FastestRate(NamedTuple):
    """Outcome of :func:`fastest_rate` (float, int; ``step = -1`` where no rate learned)."""

    rate: Array  # the rate of the fewest steps (the largest such rate on ties)
    step: Array  # its learning time in steps
    rates: Array  # the rates scanned
    steps: Array  # their learning times (-1: not learned)


def fastest_rate(
    u0: Array, s: Array, d: Array = 1.0, *, depth: int, eps: float, num: int = 160, span: float = 100.0,
    max_steps: int = 200_000,
) -> FastestRate:
    """The rate at which the exact maps of the modes (all along the last axis) reach the relative
    threshold ``E <= E* + eps (E(0) - E*)`` in the fewest steps, over ``num`` log-spaced rates from
    ``edge / span`` to just below ``edge``, the stability edge of the strongest mode
    (:func:`stability_edge`; above it the learned top mode cannot settle and a network leaves the
    decoupled manifold). Exact for whitened inputs (``d = 1``); the diagonal approximation
    otherwise. Every rate's learning time comes from :func:`learning_time` (vmapped)."""
    s, d = jnp.atleast_1d(_float(s)), jnp.atleast_1d(_float(d))
    edge = jnp.min(stability_edge(s, d, depth))
    rates = edge * jnp.geomspace(1.0 / span, 1.0 - 1e-6, num)
    lt = jax.vmap(lambda lr: learning_time(u0, lr, s, d, depth=depth, eps=eps, max_steps=max_steps).step)(rates)
    big = jnp.iinfo(jnp.int32).max
    key = jnp.where(lt >= 0, lt, big)
    # the fewest steps; on ties the largest rate (the valley's floor is flat to a step)
    i = (num - 1) - jnp.argmin(key[::-1])
    return FastestRate(rates[i], jnp.where(key[i] < big, lt[i], -1), rates, lt)
