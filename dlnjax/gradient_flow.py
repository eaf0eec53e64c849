"""Continuous-time gradient flow of a deep linear network, integrated with diffrax.

``dW^l/dt = -dE/dW^l`` (Eq. 13's right-hand side without tau), on the loss
:func:`dlnjax.linear.loss_from_stats` with summed statistics.

Time unit. Gradient descent at rate ``lr`` is the forward-Euler discretisation of this flow with
step ``lr``: ``W_{k+1} = W_k - lr dE/dW``. So flow time ``T`` corresponds to ``T / lr`` steps
("rate x steps"), and the paper's ``tau dW/dt_steps = -dE/dW`` with ``tau = 1/lr`` is this flow
with ``t = lr * t_steps``: :func:`dlnjax.theory.learning_time` with ``tau = 1`` is a time in these
units. The Euler discretisation error is ``O(lr)`` on any bounded flow interval (global error of a
first-order method), so a run at rate ``lr`` matches the flow to ``O(lr)`` (see
``tests/test_gradient_flow.py``).

The learning time ``T_ct`` (first time ``E <= threshold``) is found by a diffrax ``Event`` whose
condition is ``E(W(t)) - threshold``, located inside the accepted step by a root finder on the
solver's dense interpolant (optimistix Newton), so it is not restricted to step boundaries.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import diffrax
import jax
import jax.numpy as jnp
import optimistix as optx

from .linear import Stats, loss_and_grad, loss_from_stats

Array = Any

__all__ = ["FlowSolution", "vector_field", "solve", "learning_time"]


def vector_field(t: Array, weights: tuple, stats: Stats) -> tuple:
    """``-dE/dW^l`` for every layer (the hand-written Eq. 13 gradient of :mod:`dlnjax.linear`)."""
    del t
    return tuple(-g for g in loss_and_grad(weights, stats)[1])


def _solver(name: str) -> Any:
    if name == "tsit5":
        return diffrax.Tsit5()
    if name == "dopri5":
        return diffrax.Dopri5()
    if name == "dopri8":
        return diffrax.Dopri8()
    raise ValueError(f"solver must be 'tsit5', 'dopri5' or 'dopri8', got {name!r}")


class FlowSolution(NamedTuple):
    ts: Array  # (T,) requested flow times
    weights: tuple  # each (T, N_{l+1}, N_l): W^l at those times
    loss: Array  # (T,) E at those times
    num_steps: Array  # accepted + rejected solver steps


def solve(
    weights: Sequence[Array],
    stats: Stats,
    ts: Array,
    *,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    solver: str = "tsit5",
    max_steps: int = 100_000,
    dt0: float | None = None,
) -> FlowSolution:
    """Integrate the flow from ``t = 0`` and save the weights and the loss at the times ``ts``.

    ``ts`` must be increasing and >= 0 (``ts[-1]`` is the end). Adaptive steps with a
    ``PIDController(rtol, atol)``; ``SaveAt(ts=ts)`` evaluates the solver's dense output. Jit-able
    (``solver``, ``max_steps`` static).
    """
    weights = tuple(weights)
    ts = jnp.asarray(ts, weights[0].dtype)
    term = diffrax.ODETerm(vector_field)
    sol = diffrax.diffeqsolve(
        term,
        _solver(solver),
        t0=jnp.zeros((), ts.dtype),
        t1=ts[-1],
        dt0=dt0,
        y0=weights,
        args=stats,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    ws = tuple(sol.ys)
    loss = jax.vmap(lambda *w: loss_from_stats(w, stats))(*ws)
    return FlowSolution(ts, ws, loss, sol.stats["num_steps"])


def learning_time(
    weights: Sequence[Array],
    stats: Stats,
    threshold: Array,
    t_max: float,
    *,
    rtol: float = 1e-10,
    atol: float = 1e-12,
    solver: str = "tsit5",
    max_steps: int = 100_000,
) -> Array:
    """Continuous-time learning time ``T_ct``: the first flow time with ``E <= threshold``.

    Integrates until the event ``E(W(t)) = threshold`` (or ``t_max``); returns ``inf`` when the
    loss is still above the threshold at ``t_max`` and 0 when it starts below. Multiply by
    ``1/lr`` for steps at rate ``lr``. Jit-able.
    """
    weights = tuple(weights)
    dtype = weights[0].dtype
    threshold = jnp.asarray(threshold, dtype)

    def cond_fn(t, y, args, **kwargs):
        return loss_from_stats(y, args) - threshold

    event = diffrax.Event(cond_fn, root_finder=optx.Newton(rtol=1e-12, atol=1e-14))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        _solver(solver),
        t0=jnp.zeros((), dtype),
        t1=jnp.asarray(t_max, dtype),
        dt0=None,
        y0=weights,
        args=stats,
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        event=event,
        max_steps=max_steps,
        throw=False,
    )
    t_end = sol.ts[-1]
    hit = sol.event_mask if sol.event_mask is not None else jnp.asarray(False)
    start_below = loss_from_stats(weights, stats) <= threshold
    return jnp.where(start_below, 0.0, jnp.where(hit, t_end, jnp.inf)).astype(dtype)
