"""The Rosenbrock-W integrator (:mod:`dlnjax.theory.rosenbrock_w`): its observed order on a stiff
nonlinear problem with the exact Jacobian and with a wrong one (the W-method property), events and
saves against closed forms, the t = 0 limit, and steps sized by accuracy on a stiff problem."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dlnjax.theory import rosenbrock_w as rw
from helpers import approx, assert_close

F64 = "float64"
A = np.array([[-50.0, 1.0], [0.5, -2.0]])


def _f(y):
    return jnp.asarray(A) @ y + jnp.stack([jnp.sin(y[1]), y[0] ** 2])


@jax.jit
def _fixed_steps(y0, n_steps, jac):
    """n_steps steps of size 1/n_steps; jac None: the exact Jacobian at each step's start."""
    h = 1.0 / n_steps

    def step(_, y):
        j = jax.jacfwd(_f)(y) if jac is None else jac

        def linear(_, tau):
            m = jnp.eye(2) - tau * j
            return (lambda r: jnp.linalg.solve(m, r)), (lambda x: j @ x)

        return rw.w_step(y, _f(y), h, _f, linear)[0]

    return jax.lax.fori_loop(0, n_steps, step, y0)


@pytest.mark.parametrize("jac,band", [(None, (2.7, 3.3)), (np.array([[-40.0, 0.0], [0.0, -1.0]]), (2.5, 3.5))])
def test_order_three_with_any_jacobian(jac, band):
    """The log-log slope of the error at t = 1 against the step (h = 1/80 ... 1/640) is 3, with
    the exact Jacobian and with a wrong matrix (the coefficients satisfy the W-method's order
    conditions; a tableau with a slip falls to order 1 or 2 here)."""
    with jax.enable_x64(True):
        y0 = jnp.asarray([1.0, 0.5])
        ref = solve_ivp(lambda t, y: A @ y + np.array([np.sin(y[1]), y[0] ** 2]), (0, 1), np.asarray(y0),
                        method="Radau", rtol=1e-13, atol=1e-14).y[:, -1]
        steps = np.array([80, 160, 320, 640])
        errs = np.array([float(jnp.max(jnp.abs(_fixed_steps(y0, n, None if jac is None else jnp.asarray(jac)) - ref)))
                         for n in steps])
    slope = np.polyfit(np.log(1.0 / steps), np.log(errs), 1)[0]
    assert band[0] <= slope <= band[1], (slope, errs)


def _linear_problem(rate):
    """dy/dt = -rate y, event y <= 0.5 (t = ln 2 / rate), exact J."""

    def linear(_, tau):
        return (lambda r: r / (1.0 + tau * rate)), (lambda x: -rate * x)

    return (lambda y: -rate * y), linear


def test_event_and_saves_match_the_closed_form():
    with jax.enable_x64(True):
        f, linear = _linear_problem(3.0)
        y0 = jnp.asarray([1.0])
        save = jnp.asarray([0.0, 0.1, 0.2, 5.0])
        sol = rw.integrate(f, linear, y0, 10.0, save, event=lambda y: y[0] - 0.5, event_grad=lambda y: jnp.ones_like(y),
                           rtol=1e-9, atol=1e-14, h0=1e-6, max_steps=100_000)
        t_ev = np.log(2.0) / 3.0
        assert float(sol.t_event) == approx(t_ev, F64, rel=1e-8)
        ts = np.asarray(sol.ts)
        assert_close(ts[:4], [0.0, 0.1, 0.2, t_ev], F64, rtol=1e-8)  # the save past the event is left out
        assert np.isinf(ts[4])
        assert_close(np.asarray(sol.ys)[:4, 0], np.exp(-3.0 * ts[:4]), F64, rtol=1e-8)


def test_limits_and_stiffness():
    """A start below the event: t = 0; an event never reached: inf and the end state at t1; a stiff
    decay (rate 1e6, to t = 1) takes steps sized by accuracy (an explicit solver: ~3e5)."""
    with jax.enable_x64(True):
        f, linear = _linear_problem(1e6)
        kw = dict(event_grad=lambda y: jnp.ones_like(y), rtol=1e-6, atol=1e-12, h0=1e-9, max_steps=100_000)
        y0 = jnp.asarray([1.0])
        assert float(rw.integrate(f, linear, y0, 1.0, jnp.asarray([0.5]), event=lambda y: y[0] - 2.0, **kw).t_event) == 0.0
        never = rw.integrate(f, linear, y0, 1.0, jnp.asarray([0.5]), event=lambda y: y[0] + 1.0, **kw)
        assert np.isinf(float(never.t_event))
        assert_close(np.asarray(never.ts)[:2], [0.5, 1.0], F64)
        assert abs(float(never.ys[1, 0])) < 1e-9
        assert int(never.num_steps) < 1_000
