"""Edge of chaos and dynamical isometry (ICLR version, Section 4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.nonlinear import chaos
from dlnjax.init import functions as init_fns
from helpers import TOL, TOL_ULPS, approx, assert_close

F64 = "float64"  # every check here runs in float64 (the quadrature is NumPy's)


def test_quadrature_integrates_gaussian_moments():
    z, w = chaos.gauss_hermite(51)
    # 51 nodes integrate these polynomials exactly: what is left is rounding of 51-term sums
    assert np.sum(w) == pytest.approx(1.0, abs=TOL[F64]["atol"])
    assert np.sum(w * z**2) == pytest.approx(1.0, abs=TOL[F64]["atol"])
    assert np.sum(w * z**4) == pytest.approx(3.0, abs=TOL[F64]["atol"])


def test_variance_map_against_monte_carlo():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(2_000_000)
    for q, g in ((0.3, 1.2), (2.0, 0.8), (5.0, 1.5)):
        mc = g**2 * np.mean(np.tanh(np.sqrt(q) * z) ** 2)
        # Monte Carlo's sampling error with 2e6 draws (~1e-3 relative), not rounding
        assert float(chaos.variance_map(q, g)) == pytest.approx(mc, rel=3e-3)


@pytest.mark.slow
def test_fixed_point_zero_below_and_positive_above_edge():
    gs = jnp.asarray([0.5, 0.9, 1.0, 1.01, 1.1, 1.5, 3.0])
    q = np.asarray(chaos.q_fixed_point(gs))
    assert np.all(q[:3] == 0.0)
    assert np.all(q[3:] > 0.0)
    assert np.all(np.diff(q[3:]) > 0)
    # it is a fixed point of the map
    assert_close(np.asarray(chaos.variance_map(q[3:], gs[3:])), q[3:], F64)  # bisected to rounding
    # iterating the map from q = 1 goes to it
    for g, qi in zip(gs[4:], q[4:]):
        x = 1.0
        for _ in range(500):
            x = float(chaos.variance_map(x, g))
        assert x == pytest.approx(float(qi), rel=1e-6)  # the iteration's convergence, not rounding


def test_chi_crosses_one_at_the_edge():
    """chi = g^2 < 1 on the ordered side (q_inf = 0), exactly 1 at g = 1, > 1 and growing above (chaos)."""
    gs = jnp.asarray([0.8, 0.95, 1.0, 1.05, 1.3, 2.0])
    c = np.asarray(chaos.chi(gs, chaos.q_fixed_point(gs)))
    assert_close(c[:3], np.asarray(gs[:3]) ** 2, rtol=TOL_ULPS[F64]["rtol"])
    assert c[0] < c[1] < c[2] == approx(1.0, F64)
    assert np.all(c[3:] > 1.0) and np.all(np.diff(c[3:]) > 0)


def test_accumulated_jacobian_equals_jacfwd():
    key = jax.random.PRNGKey(0)
    n, layers, g = 7, 5, 1.3
    w = chaos.random_weights(key, n, layers, "orthogonal", dtype=jnp.float64)
    x1 = jax.random.normal(jax.random.PRNGKey(1), (n,), jnp.float64)

    def f(x):
        for l in range(layers):
            x = g * (w[l] @ jnp.tanh(x))
        return x

    assert_close(chaos.end_to_end_jacobian(x1, w, g), jax.jacfwd(f)(x1), F64)


def test_linear_orthogonal_network_is_an_exact_isometry():
    key = jax.random.PRNGKey(2)
    n, layers, g = 20, 9, 1.07
    w = chaos.random_weights(key, n, layers, "orthogonal", dtype=jnp.float64)
    jac = chaos.end_to_end_jacobian(jnp.ones(n, jnp.float64), w, g, phi=lambda x: x)
    sv = np.linalg.svd(np.asarray(jac), compute_uv=False)
    assert_close(sv, g**layers, rtol=TOL[F64]["rtol"])  # g^(N_l - 1) with N_l - 1 = layers


@pytest.mark.slow
def test_simulated_variance_converges_to_theory_with_width():
    """The depth-30 variance of simulated networks approaches q_inf; the error shrinks with N."""
    g = 1.5
    q_inf = float(chaos.q_fixed_point(g))
    errs = []
    for n in (32, 128, 512):
        e = []
        for seed in range(4):
            w = chaos.random_weights(jax.random.PRNGKey(seed), n, 29, "orthogonal", dtype=jnp.float64)
            x1 = jax.random.normal(jax.random.PRNGKey(100 + seed), (n,), jnp.float64)
            e.append(abs(float(chaos.forward_variances(x1, w, g)[-1]) - q_inf))
        errs.append(np.mean(e))
    assert errs[2] < errs[0]
    assert errs[2] < 0.02 * q_inf  # the finite-width fluctuation at N = 512, not rounding


def test_haar_eigenvalue_angles_are_uniform():
    """Kolmogorov-Smirnov test of the eigen-angles of Haar matrices against the uniform law.

    Fixed seeds; five seeds each need p > 0.01 / 5 (Bonferroni: total false-alarm rate 1% for
    i.i.d. angles; Haar eigen-angles repel each other, so they are even more regular and p is
    near 1). Negative control, which the same test must reject: an orthogonal matrix that is not
    Haar, expm of a small antisymmetric matrix, whose angles cluster around 0.
    """
    from scipy.linalg import expm

    ps = [chaos.eigen_angle_uniformity(np.asarray(init_fns.haar_orthogonal(jax.random.PRNGKey(s), 200, dtype=jnp.float64))) for s in range(5)]
    assert min(ps) > 0.01 / 5
    a = np.asarray(jax.random.normal(jax.random.PRNGKey(9), (200, 200), jnp.float64)) * 0.02
    near_identity = expm(a - a.T)
    assert_close(near_identity @ near_identity.T, np.eye(200), F64)
    assert chaos.eigen_angle_uniformity(near_identity) < 1e-6  # a KS p-value: rejected outright


def test_products_of_orthogonal_matrices_have_unit_singular_values():
    p = chaos.random_product(jax.random.PRNGKey(0), 50, 20, "orthogonal", jnp.float64)
    assert_close(np.linalg.svd(np.asarray(p), compute_uv=False), 1.0, F64)


def test_gaussian_products_preserve_norm_on_average_but_not_isotropically():
    sv = np.concatenate([np.linalg.svd(np.asarray(chaos.random_product(jax.random.PRNGKey(s), 100, 9, "gaussian", jnp.float64)), compute_uv=False) for s in range(10)])
    assert np.mean(sv**2) == pytest.approx(1.0, abs=0.15)  # E ||W x||^2 = ||x||^2 at every depth (sampling spread)
    assert np.mean(sv < 0.1) > 0.4  # most singular values nearly vanish at depth 10
