"""A Rosenbrock-W integrator (ROS34PW2) for stiff flows whose Jacobian is known only approximately.

Why it is here. The balanced flow on the end-to-end map (:mod:`dlnjax.theory.end_to_end_flow`) is
stiff: its fastest decay rate is the top Hessian eigenvalue (about 1.9e7 at depth 1000), while the
time to learn is about 0.03, so an explicit solver (diffrax's Tsit5) takes about ``lambda* T / 3.3``
steps, bounded by stability, not accuracy (94.5k at depth 1000). An implicit solver removes the
bound, but diffrax's (Kvaerno, KenCarp) solve their stage equations with the dense Jacobian: a
6580 x 6580 matrix per step on the digits. A W-method needs only *some* matrix ``J`` close to the
Jacobian's stiff part, and keeps its order whatever ``J`` is (Steihaug & Wolfbrandt 1979;
Rang & Angermann 2005). The end-to-end flow supplies one whose linear systems cost a few small
products (:func:`dlnjax.theory.end_to_end_flow.frozen_preconditioner`). diffrax has no W-method,
so the stepper is here.

The method. ROS34PW2 (Rang & Angermann, BIT Numer. Math. 45 (2005) 761-787): four stages, order 3 for
any ``J``, an embedded order-2 solution for the error estimate, L-stable and stiffly accurate.
Each stage solves ``(I - gamma h J) k_i = h f(y + sum_j alpha_ij k_j) + h J sum_j gamma_ij k_j``,
and ``y_new = y + sum_i b_i k_i``. Its coefficients are checked by their order conditions in
``tests/test_rosenbrock_w.py`` (an observed order of 3 with the exact Jacobian and with a wrong
one). Steps are chosen by a PI controller on the error relative to each component
(``atol + rtol |y|``, max norm: the flow's small, still-unlearned modes set when they are learned,
so they must be resolved relative to their own size).

Events and saves. The first time ``event(y) <= 0`` is located on a cubic Hermite interpolant of
``event`` over the step (from its values and its derivatives ``<grad event, f>`` at both ends),
and the state there is one more step of the method from the step's start; the states at the
requested save times are reached exactly (the step is shortened to land on them).

Nothing here does I/O; everything is jit-able.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = Any

__all__ = ["GAMMA", "ALPHA", "GAMMA_IJ", "B", "B_HAT", "w_step", "Solution", "integrate"]

GAMMA = 0.435866521508459
ALPHA = np.array([[0.0, 0.0, 0.0, 0.0],
                  [0.87173304301691801, 0.0, 0.0, 0.0],
                  [0.84457060015369423, -0.11299064236484185, 0.0, 0.0],
                  [0.0, 0.0, 1.0, 0.0]])
GAMMA_IJ = np.array([[0.0, 0.0, 0.0, 0.0],
                     [-0.87173304301691801, 0.0, 0.0, 0.0],
                     [-0.90338057013044082, 0.054180672388095326, 0.0, 0.0],
                     [0.24212380706095346, -1.2232505839045147, 0.54526025533510214, 0.0]])
B = np.array([0.24212380706095346, -1.2232505839045147, 1.5452602553351020, GAMMA])
B_HAT = np.array([0.37810903145819369, -0.096042292212423178, 0.5, 0.2179332607542295])

# Makes the linear algebra of one step: linear(y, tau) -> (solve, apply_j), where solve(r) returns
# x with (I - tau J) x = r, and apply_j(x) = J x, for a J near the Jacobian of f at y.
Linear = Callable[[Array, Array], tuple[Callable[[Array], Array], Callable[[Array], Array]]]


def w_step(y: Array, fy: Array, h: Array, f: Callable[[Array], Array], linear: Linear) -> tuple[Array, Array]:
    """One ROS34PW2 step of size ``h`` from ``y`` (``fy = f(y)``): ``(y_new, error estimate)``."""
    solve, apply_j = linear(y, GAMMA * h)
    ks: list[Array] = []
    for i in range(4):
        if i == 0:
            rhs = h * fy
        else:
            yi = y + sum(ALPHA[i, j] * ks[j] for j in range(i) if ALPHA[i, j] != 0.0)
            rhs = h * f(yi) + h * apply_j(sum(GAMMA_IJ[i, j] * ks[j] for j in range(i)))
        ks.append(solve(rhs))
    y_new = y + sum(B[i] * ks[i] for i in range(4))
    err = sum((B[i] - B_HAT[i]) * ks[i] for i in range(4))
    return y_new, err


def _hermite_root(l0: Array, l1: Array, d0: Array, d1: Array) -> Array:
    """The root in [0, 1] of the cubic Hermite interpolant with values ``l0 > 0 >= l1`` and
    derivatives ``d0, d1`` (per unit of the interval) at the ends, by bisection (60 halvings)."""

    def p(th: Array) -> Array:
        return ((2 * th - 3) * th * th + 1) * l0 + ((th - 2) * th + 1) * th * d0 + (3 - 2 * th) * th * th * l1 \
            + (th - 1) * th * th * d1

    def halve(_: int, ab: tuple[Array, Array]) -> tuple[Array, Array]:
        a, b = ab
        mid = 0.5 * (a + b)
        up = p(mid) > 0
        return jnp.where(up, mid, a), jnp.where(up, b, mid)

    a, b = jax.lax.fori_loop(0, 60, halve, (jnp.zeros_like(l0), jnp.ones_like(l0)))
    return 0.5 * (a + b)


class Solution(NamedTuple):
    """``t_event`` (inf: not reached by ``t1``; 0: ``event(y0) <= 0``); ``ts``/``ys``: the save times
    reached, then the end (the event or ``t1``), then inf (and zeros); accepted and rejected steps."""

    t_event: Array
    ts: Array  # (len(save_ts) + 1,)
    ys: Array  # (len(save_ts) + 1, *y0.shape)
    num_steps: Array
    num_rejected: Array


class _Carry(NamedTuple):
    t: Array
    y: Array
    fy: Array
    h: Array
    err_prev: Array
    i_save: Array
    ts: Array
    ys: Array
    num_steps: Array
    num_rejected: Array
    hit: Array
    h_hit: Array  # the step in which the event happened: its size and the end state and field
    y_hit: Array  # (its start is the carry's t, y, fy, which the step did not replace)
    fy_hit: Array


def integrate(f: Callable[[Array], Array], linear: Linear, y0: Array, t1: float | Array, save_ts: Array, *,
              event: Callable[[Array], Array], event_grad: Callable[[Array], Array], rtol: float, atol: float,
              h0: float | Array, max_steps: int) -> Solution:
    """Integrate ``dy/dt = f(y)`` from ``(0, y0)`` to the first ``event(y) <= 0`` or ``t1`` with
    ROS34PW2 (module docstring); ``event_grad(y)`` is the gradient of ``event``; ``save_ts``
    increasing inside ``(0, t1]``. Pure and jit-able (``rtol``, ``atol``, ``max_steps`` static)."""
    dtype = y0.dtype
    t1 = jnp.asarray(t1, dtype)
    save_ts = jnp.asarray(save_ts, dtype)
    n_save = save_ts.shape[0]
    k = 3.0  # the order of the error estimate's leading term
    start_below = event(y0) <= 0

    def cond(c: _Carry) -> Array:
        return (~c.hit) & (c.t < t1) & (c.num_steps + c.num_rejected < max_steps)

    def body(c: _Carry) -> _Carry:
        t_save = jnp.where(c.i_save < n_save, save_ts[jnp.minimum(c.i_save, n_save - 1)], t1)
        t_next = jnp.minimum(t_save, t1)
        lands = c.h >= t_next - c.t
        h = jnp.where(lands, t_next - c.t, c.h)
        y_new, err = w_step(c.y, c.fy, h, f, linear)
        scale = atol + rtol * jnp.maximum(jnp.abs(c.y), jnp.abs(y_new))
        en = jnp.maximum(jnp.max(jnp.abs(err) / scale), 1e-10)
        ok = (en <= 1.0) & jnp.all(jnp.isfinite(y_new))
        en = jnp.where(jnp.isfinite(en), en, 1e10)
        # PI control (Gustafsson): grow by at most 5, shrink by at most 5; never grow after a rejection
        fac = 0.9 * en ** (-0.7 / k) * c.err_prev ** (0.3 / k)
        fac = jnp.clip(jnp.where(ok, fac, jnp.minimum(fac, 0.9)), 0.2, 5.0)
        fy_new = jax.lax.cond(ok, f, lambda _: c.fy, y_new)  # a rejected step's field is never used
        crossed = ok & (event(y_new) <= 0)
        t_new = jnp.where(lands, t_next, c.t + h)
        saved = ok & ~crossed & lands & (c.i_save < n_save) & (t_next == t_save)
        ts = jnp.where(saved, c.ts.at[c.i_save].set(t_new), c.ts)
        ys = jnp.where(saved, c.ys.at[c.i_save].set(y_new), c.ys)
        keep = ok & ~crossed
        # a step shortened to land on a save time does not shrink the next one
        h_next = jnp.where(lands & ok, jnp.maximum(h * fac, c.h), h * fac)
        return _Carry(jnp.where(keep, t_new, c.t), jnp.where(keep, y_new, c.y), jnp.where(keep, fy_new, c.fy),
                      h_next, jnp.where(ok, en, c.err_prev), c.i_save + saved, ts, ys, c.num_steps + ok,
                      c.num_rejected + (~ok), crossed, jnp.where(crossed, h, c.h_hit),
                      jnp.where(crossed, y_new, c.y_hit), jnp.where(crossed, fy_new, c.fy_hit))

    fy0 = f(y0)
    zero = jnp.zeros((), dtype)
    c0 = _Carry(zero, y0, fy0, jnp.asarray(h0, dtype), jnp.ones((), dtype), jnp.int32(0),
                jnp.full((n_save + 1,), jnp.inf, dtype), jnp.zeros((n_save + 1,) + y0.shape, dtype),
                jnp.int32(0), jnp.int32(0), start_below, zero, y0, fy0)
    c = jax.lax.while_loop(cond, body, c0)
    # the event's step, once (not inside the loop): the root of the Hermite interpolant of event
    # over [t, t + h_hit], and the state there by one more step from the step's start
    d0 = c.h_hit * jnp.sum(event_grad(c.y) * c.fy)
    d1 = c.h_hit * jnp.sum(event_grad(c.y_hit) * c.fy_hit)
    theta = _hermite_root(event(c.y), event(c.y_hit), d0, d1)
    t_hit = c.t + theta * c.h_hit
    y_event, _ = w_step(c.y, c.fy, theta * c.h_hit, f, linear)
    t_end = jnp.where(c.hit, t_hit, c.t)
    y_end = jnp.where(c.hit, y_event, c.y)
    ts = c.ts.at[c.i_save].set(t_end)
    ys = c.ys.at[c.i_save].set(y_end)
    t_event = jnp.where(start_below, zero, jnp.where(c.hit, t_hit, jnp.inf)).astype(dtype)
    return Solution(t_event, ts, ys, c.num_steps, c.num_rejected)
