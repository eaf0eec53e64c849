"""Continuous-time gradient flow of a deep linear network, integrated with diffrax.

``dW^l/dt = -dE/dW^l`` (Eq. 13's right-hand side without tau), on the loss
:func:`dlnjax.networks.linear.loss_from_stats` with summed statistics.

Time unit. Gradient descent at rate ``lr`` is the forward-Euler discretisation of this flow with
step ``lr``: ``W_{k+1} = W_k - lr dE/dW``. So flow time ``T`` corresponds to ``T / lr`` steps
("rate x steps"), and the paper's ``tau dW/dt_steps = -dE/dW`` with ``tau = 1/lr`` is this flow
with ``t = lr * t_steps``: :func:`dlnjax.theory.closed_form.learning_time` with ``tau = 1`` is a time in these
units. The Euler discretisation error is ``O(lr)`` on any bounded flow interval (global error of a
first-order method), so a run at rate ``lr`` matches the flow to ``O(lr)`` (see
``tests/test_gradient_flow.py``).

The learning time ``T_ct`` (first time ``E <= threshold``) is found by a diffrax ``Event`` whose
condition is ``E(W(t)) - threshold``, located inside the accepted step by a root finder on the
solver's dense interpolant (optimistix Newton), so it is not restricted to step boundaries.

The second half integrates the same flow on the **compressed** network of
:mod:`dlnjax.networks.compressed` (inputs in Sigma11's eigenbasis, rank-r aligned cores): gradient descent
on the cores *is* gradient descent on the full layers step for step, so the continuous flows are
the same too, and :func:`compressed_learning_time` gives the full network's ``T_ct`` at any
hidden width (see ``tests/test_gradient_flow.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import diffrax
import jax
import jax.numpy as jnp
import optimistix as optx

from dlnjax.networks.linear import loss_and_grad, loss_from_stats
from dlnjax.data.statistics import Stats

Array = Any

__all__ = [
    "FlowSolution", "vector_field", "solve", "learning_time",
    "FlowOptions", "FlowTime", "compressed_vector_field", "compressed_solve", "compressed_learning_time",
]


def vector_field(t: Array, weights: tuple, stats: Stats) -> tuple:
    """``-dE/dW^l`` for every layer (the hand-written Eq. 13 gradient of :mod:`dlnjax.networks.linear`)."""
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


# ----------------------------------------------------------------------------------------
# the flow of the compressed network (cores + rotated statistics)
# ----------------------------------------------------------------------------------------
# State: the trained cores ``(first, hidden, last)`` (shapes ``(r, n)``, ``(L_cap, r, r)``,
# ``(N_out, r)``); args: ``(cs, n_hidden, first_null)``. Hidden cores beyond ``n_hidden`` get no
# gradient (they stay the identity and are never read), so one compilation serves every depth up
# to the capacity. The controller's error norm is the max norm (``optx.max_norm``), not diffrax's
# default RMS: the RMS over a padded stack would be diluted by the never-moving padding, so that
# the same rtol would mean a looser tolerance at shallow depths.
#
# Solver: explicit Tsit5 with a PID controller (pcoeff 0.3, icoeff 0.4: the damped controller
# that keeps an explicit method steady at its stability boundary). Why not implicit: on raw
# pixels the rotated Sigma11 spans 3e5 .. 3e-4 (embedded digits), the Hessian's top eigenvalue
# along the path is lambda* ~ 1.5e5 .. 2e6 (depth 3 .. 100) while T_ct ~ 0.01 .. 0.05, so
# lambda* T_ct ~ 2e3 .. 7e4: mildly stiff. An implicit method (Kvaerno5) needs the dense Jacobian
# of the vector field, of dimension D = r n + L r^2 + N_out r = 6,680 at depth 3 and 16,380 at
# depth 100 on the digits (n = 658 kept inputs, r = 10): 357 MB .. 2.1 GB in float64, D forward
# JVPs to form it and an O(D^3) = 3e11 .. 4e12 flop LU per factorisation, i.e. seconds to minutes
# per step on a CPU, against ~6 vector-field evaluations (~0.1 .. 1 ms each) per explicit step.
# The explicit step is limited by stability, h <~ 3.3 / lambda_max, so an explicit run costs
# about ``lambda* T_ct / 3.3`` steps at least (the learning time at the best rate / 3.3) and more
# where accuracy limits the step: measured numbers are in docs/fig4.md ("T_ct by diffrax").
class FlowTime(NamedTuple):
    t_ct: Array  # flow time of the first E <= threshold (inf: not within t_max; 0: starts below)
    num_steps: Array  # accepted + rejected solver steps
    num_accepted: Array


def compressed_vector_field(t: Array, y: tuple, args: tuple, last_trained: bool = True) -> tuple:
    """``-dE/dM`` for the trained cores ``y = (first, hidden, last)`` (:func:`dlnjax.networks.compressed.loss_and_grads`,
    the hand-written Eq. 13 on the cores); ``args = (cs, n_hidden, first_null)``."""
    from dlnjax.networks import compressed

    del t
    cs, n_hidden, first_null = args
    _, g, _ = compressed.loss_and_grads(compressed.Cores(y[0], y[1], y[2], first_null, n_hidden), cs)
    last = -g.last if last_trained else jnp.zeros_like(g.last)
    return (-g.first, -g.hidden, last)


def _cores_loss(y: tuple, args: tuple) -> Array:
    from dlnjax.networks import compressed

    cs, n_hidden, first_null = args
    return compressed.loss(compressed.Cores(y[0], y[1], y[2], first_null, n_hidden), cs)


def _controller(rtol: float, atol: float) -> Any:
    return diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4, norm=optx.max_norm)


def _split(cores: Any) -> tuple[tuple, tuple]:
    return (cores.first, cores.hidden, cores.last), (cores.n_hidden, cores.first_null)


class FlowOptions(NamedTuple):
    """Solver settings of the compressed flow (hashable: a static argument under jit)."""

    rtol: float = 1e-8
    atol: float = 1e-11
    solver: str = "tsit5"
    max_steps: int = 1_000_000
    last_trained: bool = True  # False: the output core stays fixed (as in a run that does not train it)


def _compressed_diffeqsolve(cores: Any, cs: Any, t1: Array, dt0: Array | None, options: FlowOptions, **kw: Any) -> tuple:
    """diffrax on the cores: ``(solution, y0, args)``; ``dt0`` defaults to ``1e-7 t1`` (diffrax's
    own first-step guess can overflow on raw pixels, after which every step is rejected)."""
    y0, (n_hidden, first_null) = _split(cores)
    dtype = y0[0].dtype
    args = (cs, n_hidden, first_null)
    t1 = jnp.asarray(t1, dtype)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, a: compressed_vector_field(t, y, a, options.last_trained)),
        _solver(options.solver),
        t0=jnp.zeros((), dtype),
        t1=t1,
        dt0=1e-7 * t1 if dt0 is None else jnp.asarray(dt0, dtype),
        y0=y0,
        args=args,
        stepsize_controller=_controller(options.rtol, options.atol),
        max_steps=options.max_steps,
        **kw,
    )
    return sol, y0, args


def compressed_solve(cores: Any, cs: Any, ts: Array, options: FlowOptions = FlowOptions(), dt0: Array | None = None) -> FlowSolution:
    """:func:`solve` for a :class:`dlnjax.networks.compressed.Cores` network on :class:`dlnjax.networks.compressed.CStats`:
    the cores ``(first, hidden, last)`` and the loss at the times ``ts``. Jit-able."""
    ts = jnp.asarray(ts, cores.first.dtype)
    sol, _, args = _compressed_diffeqsolve(cores, cs, ts[-1], dt0, options, saveat=diffrax.SaveAt(ts=ts))
    ys = tuple(sol.ys)
    loss = jax.vmap(lambda *c: _cores_loss(c, args))(*ys)
    return FlowSolution(ts, ys, loss, sol.stats["num_steps"])


def compressed_learning_time(cores: Any, cs: Any, threshold: Array, t_max: Array, options: FlowOptions = FlowOptions(),
                             dt0: Array | None = None) -> FlowTime:
    """Continuous-time learning time ``T_ct`` of the compressed network (:class:`FlowTime`): the
    first flow time with ``E <= threshold``, located by an ``Event`` on the dense output (as
    :func:`learning_time`); inf when not reached by ``t_max`` (or within ``options.max_steps``), 0
    when the start is already below. Same time unit as :func:`learning_time` (``T / lr`` steps at
    rate ``lr``). Pure and jit-able (``options`` static; ``threshold``, ``t_max``, ``dt0`` and the
    cores' ``n_hidden`` traced): :data:`compressed_learning_time_jit` compiles once per shape, for
    every depth up to the cores' hidden capacity."""
    threshold = jnp.asarray(threshold, cores.first.dtype)

    def cond_fn(t, y, args, **kwargs):
        return _cores_loss(y, args) - threshold

    event = diffrax.Event(cond_fn, root_finder=optx.Newton(rtol=1e-12, atol=1e-14))
    sol, y0, args = _compressed_diffeqsolve(cores, cs, t_max, dt0, options, saveat=diffrax.SaveAt(t1=True), event=event,
                                            throw=False)
    hit = sol.event_mask if sol.event_mask is not None else jnp.asarray(False)
    start_below = _cores_loss(y0, args) <= threshold
    t_ct = jnp.where(start_below, 0.0, jnp.where(hit, sol.ts[-1], jnp.inf)).astype(threshold.dtype)
    return FlowTime(t_ct, sol.stats["num_steps"], sol.stats["num_accepted_steps"])


compressed_learning_time_jit = jax.jit(compressed_learning_time, static_argnames=("options",))
