"""Top Hessian eigenpair by Lanczos vs dense autodiff Hessians; closed forms at the balanced optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dlnjax.theory import hessian as hs
from dlnjax.init import functions as init_fns
from dlnjax.networks import linear
from dlnjax.data import teacher
from dlnjax.data.statistics import Stats, full_svd_basis, stats_from_examples

# Lanczos with full re-orthogonalisation on tiny problems converges to rounding; a dense
# eigvalsh of a ~100 x 100 Hessian whose entries are ~1e3 carries ~1e-13 relative error
RTOL = {"float64": 1e-9}


@jax.jit
def _dense_hessian(weights, stats):
    flat, unravel = ravel_pytree(tuple(weights))
    return jax.hessian(lambda x: linear.loss_from_stats(unravel(x), stats))(flat)


def dense_eigvals(weights, stats):
    return np.linalg.eigvalsh(np.asarray(_dense_hessian(tuple(weights), stats)))


# one compilation per shape (the machine is shared: compiling dominates these tests)
_top = jax.jit(hs.top_eigen, static_argnames="num_iters")


def non_white_stats(rng, n_in=4, n_out=3, p=20):
    x = rng.standard_normal((p, n_in)) * np.array([1.0, 2.0, 0.5, 1.5])[:n_in]
    y = rng.standard_normal((p, n_out))
    return stats_from_examples(x, y, dtype=jnp.float64)


@pytest.mark.parametrize("scale", [0.7, 0.05])
def test_lanczos_matches_dense_hessian_non_white(scale):
    """Random weights, non-white inputs: lambda_max (algebraic, also when the most negative
    eigenvalue is larger in magnitude, as near the origin's saddle) and its eigenvector."""
    rng = np.random.default_rng(0)
    stats = non_white_stats(rng)
    w = tuple(jnp.asarray(scale * rng.standard_normal(s)) for s in [(5, 4), (4, 5), (3, 4)])
    ev = dense_eigvals(w, stats)
    top = _top(w, stats, jax.random.PRNGKey(1), num_iters=40)
    assert float(top.value) == pytest.approx(ev[-1], rel=RTOL["float64"])
    # the Ritz vector is an eigenvector: H v = lambda v (an HVP, independent of the Lanczos basis)
    hv = ravel_pytree(hs.hvp(w, stats, top.vector))[0]
    v = ravel_pytree(top.vector)[0]
    assert float(jnp.linalg.norm(v)) == pytest.approx(1.0, rel=1e-12)
    assert float(jnp.linalg.norm(hv - top.value * v)) < 1e-7 * abs(ev).max()
    assert jax.tree_util.tree_structure(top.vector) == jax.tree_util.tree_structure(w)


def test_lanczos_more_iterations_than_parameters():
    """Breakdown (Krylov space exhausted) is handled: 40 iterations on 12 parameters."""
    rng = np.random.default_rng(1)
    stats = non_white_stats(rng, n_in=2, n_out=2)
    stats = Stats(stats.sigma11[:2, :2], stats.sigma31[:2, :2], stats.tr33)
    w = (jnp.asarray(rng.standard_normal((3, 2))), jnp.asarray(rng.standard_normal((2, 3))))
    ev = dense_eigvals(w, stats)
    top = _top(w, stats, jax.random.PRNGKey(0), num_iters=40)
    assert float(top.value) == pytest.approx(ev[-1], rel=RTOL["float64"])


CASES = [
    # widths, teacher singular values, carried modes
    ((4, 4, 4), [3.0, 2.0, 1.0, 0.5], 4),  # depth 3, every mode carried (G = 0)
    pytest.param((5, 3, 3, 4), [3.0, 2.0, 1.0], 3, marks=pytest.mark.slow),  # depth 4, unequal widths, uncarried directions
    ((5, 3, 3, 3, 4), [3.0, 2.0, 1.0, 0.5], 3),  # depth 5, rank-limited: residual couplings
    pytest.param((4, 3, 4), [3.0, 2.0, 1.0, 0.5], 2, marks=pytest.mark.slow),  # depth 3, an idle hidden unit: +- s_beta
    pytest.param((4, 3, 3, 4), [3.0, 2.0, 1.0, 0.5], 2, marks=pytest.mark.slow),  # depth 4 rank-limited
]


@pytest.mark.parametrize("widths,sv,r", CASES)
def test_closed_form_spectrum_at_balanced_optimum(widths, sv, r):
    """Whitened teacher, decoupled weights with a = s^{1/n} on every carried mode: the whole
    spectrum (cross-mode couplings and residual blocks included) against the dense Hessian, and
    the HVP Lanczos lambda_max against n s_1^{(2n-2)/n}."""
    ds = teacher(sv, widths[0], widths[-1], seed=2)
    stats = stats_from_examples(ds.x, ds.y, dtype=jnp.float64)
    u, s, v = full_svd_basis(stats.sigma31)
    w = init_fns.decoupled(jax.random.PRNGKey(1), widths, s[:r], u, v, n_modes=r, dtype=jnp.float64)
    depth = len(widths)
    ev = np.sort(dense_eigvals(w, stats))[::-1]
    closed = hs.balanced_minimum_spectrum(np.asarray(s[:r]), depth, widths, np.asarray(s[r:len(sv)]))
    np.testing.assert_allclose(closed, ev, atol=1e-12 * ev[0])
    top_closed = float(hs.balanced_minimum_top_eigenvalue(s[0], depth))
    assert closed[0] == pytest.approx(top_closed, rel=1e-13)
    top = _top(w, stats, jax.random.PRNGKey(4), num_iters=30)
    assert float(top.value) == pytest.approx(top_closed, rel=RTOL["float64"])


def _compressed(rng, widths, core, scale):
    def orth(n, r):
        q, _ = np.linalg.qr(rng.standard_normal((n, r)))
        return q

    p = [np.eye(widths[0])] + [orth(n, r) for n, r in zip(widths[1:-1], core[1:-1])] + [np.eye(widths[-1])]
    m = [scale * rng.standard_normal((core[i + 1], core[i])) for i in range(len(core) - 1)]
    w = [p[i + 1] @ m[i] @ p[i].T for i in range(len(m))]
    return [jnp.asarray(x) for x in m], [jnp.asarray(x) for x in p], [jnp.asarray(x) for x in w]


@pytest.mark.parametrize("widths,core,scale", [
    ((4, 6, 3), (4, 2, 3), 0.8),
    ((4, 6, 3), (4, 2, 3), 0.01),  # near the origin: the extra width's curvature ~ ||G|| ~ the cores'
    pytest.param((4, 6, 7, 3), (4, 2, 2, 3), 0.5, marks=pytest.mark.slow),
    pytest.param((4, 6, 7, 5, 3), (4, 3, 2, 2, 3), 0.6, marks=pytest.mark.slow),
])
def test_compressed_network_has_the_cores_lambda_max(widths, core, scale):
    """W_l = P_{l+1} M_l P_l^T (non-white inputs): lambda_max(full) = max(lambda_max(cores), extra),
    the extra width's curvature max_h ||K_h|| is bounded by ||G|| times the other cores' norms, and
    it never exceeds the cores' lambda_max (so the two are equal); it does lower lambda_min."""
    rng = np.random.default_rng(3)
    stats = non_white_stats(rng)
    m, p, w = _compressed(rng, widths, core, scale)
    full = dense_eigvals(w, stats)
    cores = dense_eigvals(m, stats)
    extra = float(hs.extra_width_curvature(m, p, stats))
    tol = 1e-11 * np.abs(full).max()
    assert full[-1] == pytest.approx(max(cores[-1], extra), abs=tol)
    assert full[-1] == pytest.approx(cores[-1], abs=tol) and cores[-1] >= extra - tol
    assert full[0] == pytest.approx(min(cores[0], -extra), abs=tol)
    g = np.asarray(linear.product(m) @ stats.sigma11 - stats.sigma31)
    norms = [np.linalg.norm(np.asarray(x), 2) for x in m]
    bounds = [np.linalg.norm(g, 2) * np.prod([nm for i, nm in enumerate(norms) if i not in (h - 1, h)])
              for h in range(1, len(m)) if p[h].shape[0] > p[h].shape[1]]
    assert extra <= max(bounds) * (1 + 1e-12)
    # and Lanczos on the full (wider) network finds the same lambda_max
    top = _top(w, stats, jax.random.PRNGKey(0), num_iters=40)
    assert float(top.value) == pytest.approx(cores[-1], rel=RTOL["float64"])


def test_the_one_power_routine_finds_the_dense_and_lanczos_top_eigenpair():
    """networks.curvature.top_eigenpair (the routine every engine's sharpness runs: here through
    full_width_top_eigenpair) against the dense Hessian's eigvalsh and Lanczos (hs.top_eigen),
    at weights trained to near the minimum (where the top positive eigenvalue dominates, the
    precondition of power iteration, asserted): eigenvalue to 1e-8, eigenvector with
    ||H v - lambda v|| small."""
    from dlnjax.networks import curvature

    rng = np.random.default_rng(5)
    stats = non_white_stats(rng)
    w = tuple(jnp.asarray(0.3 * rng.standard_normal(s)) for s in [(5, 4), (3, 5)])
    step = jax.jit(lambda w: tuple(x - 2e-3 * g for x, g in zip(w, linear.loss_and_grad(w, stats)[1])))
    for _ in range(3000):
        w = step(w)
    dense = dense_eigvals(w, stats)
    assert dense[-1] > 2 * abs(dense[0]), dense[[0, -1]]
    lam, vec = curvature.full_width_top_eigenpair(stats, iters=400)(w, curvature.random_start(w))
    assert float(lam) == pytest.approx(dense[-1], rel=1e-8)
    assert float(lam) == pytest.approx(float(_top(w, stats, jax.random.PRNGKey(0), num_iters=40).value), rel=1e-8)
    hv = hs.hvp(w, stats, vec)
    resid = np.sqrt(sum(float(jnp.sum((a - lam * b) ** 2)) for a, b in zip(hv, vec)))
    assert resid <= 1e-6 * float(lam)
