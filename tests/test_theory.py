"""Closed forms against numerical solutions (solve_ivp, autodiff Hessians, simulation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dlnjax.theory import closed_form as th
from helpers import TOL, TOL_ULPS, approx, assert_close, numpy_solve_deep

F64 = "float64"  # the closed forms and their references run in float64 unless a test names a dtype
# closed forms against scipy's solve_ivp at rtol 1e-11 (a tolerance float64 allows): the
# integrator's global error, a few 1e-8 relative over these horizons (measured); we ask 1e-7
ODE_RTOL = {"float64": 1e-7}
# the (a, b) trajectories' absolute error against solve_ivp (~1e-10 seen)
ODE_ATOL_AB = {"float64": 1e-8}


def solve_balanced(s, u0, t, tau, depth):
    return numpy_solve_deep(s, u0, t, tau, depth)


@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6, 8, 10, 30])
@pytest.mark.parametrize("u0", [1e-3, 5.0])  # from below and from above s
def test_mode_strength_matches_solve_ivp(depth, u0):
    s, tau = 2.0, 10.0
    t = np.linspace(0.0, 300.0, 61)
    ref = solve_balanced(s, u0, t, tau, depth)
    got = np.asarray(th.mode_strength(t, s, u0, tau, depth))
    assert_close(got, ref, atol=ODE_RTOL[F64] * s, rtol=ODE_RTOL[F64])


def test_eq12_closed_form_is_the_printed_one():
    s, u0, tau = 3.0, 1e-4, 7.0
    t = np.linspace(0, 50, 11)
    e = np.exp(2 * s * t / tau)
    printed = s * e / (e - 1 + s / u0)
    assert_close(th.mode_strength(t, s, u0, tau, 3), printed, rtol=TOL_ULPS[F64]["rtol"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("depth", [3, 4, 7, 20])
def test_learning_time_inverts_mode_strength(depth, dtype):
    s, u0, tau = jnp.asarray(1.5, dtype), jnp.asarray(1e-3, dtype), jnp.asarray(4.0, dtype)
    uf = jnp.asarray([0.01, 0.5, 1.0, 1.4], dtype)
    t = th.learning_time(s, u0, uf, tau, depth)
    back = th.mode_strength(t, s, u0, tau, depth)
    assert_close(back, uf, rtol=TOL[dtype]["rtol"])


@pytest.mark.parametrize("depth", [2, 3, 5, 12])
def test_limits(depth):
    s, u0, tau = 2.5, 1e-3, 3.0
    assert float(th.mode_strength(0.0, s, u0, tau, depth)) == approx(u0, F64)
    assert float(th.mode_strength(1e6, s, u0, tau, depth)) == approx(s, F64)
    assert float(th.mode_strength(1e6, s, 7.0, tau, depth)) == approx(s, F64)
    assert float(th.learning_time(s, u0, u0, tau, depth)) == approx(0.0, F64)
    # monotone sigmoid
    u = np.asarray(th.mode_strength(np.linspace(0, 200, 400), s, u0, tau, depth))
    assert np.all(np.diff(u) >= -TOL[F64]["atol"])


def test_mode_strength_jits_and_broadcasts():
    f = jax.jit(lambda t, s: th.mode_strength(t, s, 1e-3, 2.0, 6))
    out = f(jnp.linspace(0, 10, 5)[:, None], jnp.asarray([1.0, 2.0, 3.0]))
    assert out.shape == (5, 3)
    assert np.all(np.isfinite(np.asarray(out)))


def _simulate_ab(a0, b0, s, tau, t_end):
    rhs = lambda t, y: [y[1] * (s - y[0] * y[1]) / tau, y[0] * (s - y[0] * y[1]) / tau]  # noqa: E731
    return solve_ivp(rhs, (0, t_end), [a0, b0], rtol=1e-11, atol=1e-13, dense_output=True)


@pytest.mark.parametrize(
    "a0,b0",
    [(0.5, 0.1), (0.1, 0.5), (0.3, -0.1), (-0.1, 0.4), (1e-3, 0.2), (0.02, 0.02), (1.5, 0.05)],
)
def test_hyperbolic_learning_time_matches_simulation(a0, b0):
    """Supplement Eq. 4 (corrected: 2s for s) against the integrated (a, b) dynamics."""
    s, tau, uf = 1.3, 2.0, 1.2
    t = float(th.hyperbolic_learning_time(s, a0, b0, uf, tau))
    sol = _simulate_ab(a0, b0, s, tau, t)
    a, b = sol.sol(t)
    assert a * b == pytest.approx(uf, rel=ODE_RTOL[F64])
    ts = np.linspace(0, t, 9)
    A, B = th.hyperbolic_trajectory(ts, s, a0, b0, tau)
    ref = sol.sol(ts)
    assert_close(A, ref[0], rtol=ODE_RTOL[F64], atol=ODE_ATOL_AB[F64])
    assert_close(B, ref[1], rtol=ODE_RTOL[F64], atol=ODE_ATOL_AB[F64])


def test_printed_supplement_eq4_is_off_by_a_factor():
    """The printed Eq. 4 (with s, not 2s) disagrees with the dynamics; the corrected one agrees."""
    s, tau, a0, b0, uf = 1.0, 1.0, 0.5, 0.1, 0.9
    c0 = a0**2 - b0**2

    def printed(theta):
        r = np.sqrt(c0**2 + s**2)
        z = np.tanh(theta / 2)
        return tau / r * np.log((r + c0 + s * z) / (r - c0 - s * z))

    # the printed parametrisation: ab = c0 sinh(theta) (supplement text)
    t_printed = printed(np.arcsinh(uf / c0)) - printed(np.arcsinh(a0 * b0 / c0))
    t_true = float(th.hyperbolic_learning_time(s, a0, b0, uf, tau))
    sol = _simulate_ab(a0, b0, s, tau, t_true)
    assert np.prod(sol.sol(t_true)) == pytest.approx(uf, rel=ODE_RTOL[F64])
    assert abs(t_printed - t_true) / t_true > 0.05


def test_hyperbolic_time_reduces_to_eq11_at_c0():
    s, u0, uf, tau = 2.0, 1e-3, 1.9, 5.0
    a0 = np.sqrt(u0)
    assert float(th.hyperbolic_learning_time(s, a0, a0, uf, tau)) == approx(float(th.learning_time(s, u0, uf, tau, 3)), F64)


def test_large_depth_asymptote_converges():
    s, u0, uf = 2.0, 1e-3, 1.9
    ratios = [float(th.learning_time_large_depth(s, u0, uf, 1.0, d) / th.learning_time(s, u0, uf, 1.0, d)) for d in (10, 50, 250, 1000)]
    assert all(r > 1 for r in ratios)
    assert np.all(np.diff(ratios) < 0)
    assert ratios[-1] == pytest.approx(1.0, abs=0.02)  # the asymptote's own error at depth 1000, not rounding


@pytest.mark.slow
def test_optimal_rate_is_inverse_top_hessian_eigenvalue():
    """Supplement Eqs. 15/19 against the autodiff Hessian of E = 1/2 (s - prod a)^2 at a_opt."""
    s = 1.7
    for depth in (3, 4, 6, 11):
        n = depth - 1
        a = jnp.full((n,), s ** (1.0 / n))
        h = jax.hessian(lambda x: 0.5 * (s - jnp.prod(x)) ** 2)(a)
        lam_max = float(jnp.max(jnp.linalg.eigvalsh(h)))
        assert float(th.optimal_learning_rate(s, depth)) == approx(1.0 / lam_max, F64)


def test_optimal_rate_scaling_slope():
    """diffrax-style: log-log slope of the optimal rate against depth lies near -1 (Eq. 20)."""
    depths = np.array([20, 40, 80, 160, 320])
    lr = np.asarray([float(th.optimal_learning_rate(3.0, int(d))) for d in depths])
    slope = np.polyfit(np.log(depths), np.log(lr), 1)[0]
    assert -1.1 < slope < -0.95


def test_stability_edge_by_simulation():
    """Gradient descent on the balanced product converges just below 2/lambda_1 and diverges just above."""
    s, depth = 1.5, 6
    n = depth - 1
    edge = float(th.stability_edge_learning_rate(s, depth))

    def run(lr):
        a = np.full(n, s ** (1 / n)) * (1 + 1e-3 * np.linspace(-1, 1, n))
        for _ in range(4000):
            p = np.prod(a)
            a = a + lr * (s - p) * p / a
            if not np.all(np.isfinite(a)) or np.max(np.abs(a)) > 1e3:
                return False
        return abs(np.prod(a) - s) < 1e-6  # converged within 4000 steps (not rounding)

    assert run(0.95 * edge)
    assert not run(1.05 * edge)


def test_infinite_depth_delay():
    """Supplement Eqs. 21-23: at rate eta/lambda_1 the depth-d time approaches t_3 + (s/u0 - s/uf)/eta."""
    s, u0, uf, eta = 1.0, 0.05, 0.95, 0.5
    t3 = float(th.learning_time_at_rate_scale(s, u0, uf, 3, eta))
    assert_close(t3, np.log(uf * (s - u0) / (u0 * (s - uf))) / eta, rtol=TOL[F64]["rtol"])  # Eq. 21
    delay = float(th.infinite_depth_delay(s, u0, uf, eta))
    td = [float(th.learning_time_at_rate_scale(s, u0, uf, d, eta)) for d in (30, 300, 3000)]
    errs = [abs(t - (t3 + delay)) for t in td]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] / (t3 + delay) < 0.01  # within 1% of the infinite-depth limit at depth 3000 (asymptotic)


def test_fixed_point_is_truncated_svd():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((7, 5))
    for k in (1, 2, 5):
        w = np.asarray(th.fixed_point(m, k))
        assert np.linalg.matrix_rank(w, tol=1e-9) == k
        sv = np.linalg.svd(m, compute_uv=False)
        # Eckart-Young: the residual is exactly the discarded singular values
        assert np.linalg.norm(m - w) == approx(np.sqrt(np.sum(sv[k:] ** 2)), F64)
        # and no random rank-k matrix does better
        for _ in range(20):
            r = rng.standard_normal((7, k)) @ rng.standard_normal((k, 5))
            assert np.linalg.norm(m - r) >= np.linalg.norm(m - w)
