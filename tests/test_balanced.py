"""Exact beta-balanced solutions (dlnjax.theory.balanced) against small-rate gradient descent and known limits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.theory import balanced as bl
from dlnjax.networks import engines
from dlnjax.theory import closed_form as theory
from dlnjax.data import teacher
from dlnjax.data.statistics import stats_from_examples
from helpers import TOL_ULPS, approx, assert_close

# every check here runs in float64 (the statistics and the sampled weights)
F64 = "float64"


def _problem(n_in, n_out, sv, seed=0):
    ds = teacher(sv, n_in, n_out, seed=seed)
    return ds, stats_from_examples(ds.x, ds.y, dtype=jnp.float64)


@pytest.mark.parametrize("n_in,n_hidden,n_out,beta,scale", [
    pytest.param(4, 4, 4, -0.5, 0.5, marks=pytest.mark.slow),
    (4, 4, 4, 0.0, 0.3),
    pytest.param(4, 4, 4, 0.5, 0.5, marks=pytest.mark.slow),
    (5, 3, 4, -0.3, 0.4),  # unequal widths, hidden < both
    (3, 4, 6, 0.4, 0.4),  # hidden wider than the input (beta > 0 needs only hidden <= output)
])
def test_exact_solution_is_the_limit_of_gradient_descent(n_in, n_hidden, n_out, beta, scale):
    """Gradient descent at rate lr is forward Euler on the flow (time = lr x steps): its end-to-end
    map and representations differ from the exact ones by C lr + O(lr^2). Check the difference is
    small and halves with lr (ratio 2 within 5%): an error in the closed form would leave a floor."""
    _, stats = _problem(n_in, n_out, [3.0, 2.0, 1.0][: min(n_in, n_out)])
    w1, w2 = bl.sample_balanced(jax.random.PRNGKey(1), n_in, n_hidden, n_out, scale, beta, dtype=jnp.float64)
    assert_close(bl.balance(w1, w2), beta * np.eye(n_hidden), F64, **TOL_ULPS[F64])
    T = 2.0
    ex = bl.solution(T, w1, w2, stats.sigma31, beta)
    devs = []
    for lr in (2e-3, 1e-3):
        st, _ = engines.train((w1, w2), stats, lr, num_steps=int(round(T / lr)), record_every=int(round(T / lr)))
        g1, g2 = st.weights
        devs.append(max(float(jnp.abs(g2 @ g1 - ex.w2w1).max()), float(jnp.abs(g1.T @ g1 - ex.w1tw1).max()),
                        float(jnp.abs(g2 @ g2.T - ex.w2w2t).max())))
    size = max(float(jnp.abs(m).max()) for m in ex)
    assert devs[1] < 1e-3 * size  # C lr with C ~ 1 at lr = 1e-3
    assert devs[0] / devs[1] == pytest.approx(2.0, rel=0.05)


@pytest.mark.parametrize("beta", [-0.7, 0.0, 0.7])
def test_limits_start_and_infinity(beta):
    """t = 0 is the start; t -> inf the best rank-limited map (theory.fixed_point, Eq. 7).
    (With beta = 0 and a teacher of lower rank than the widths, the off-teacher directions decay
    only algebraically (dQ/dt = -1/2 Q Q^T Q there), so the limit is checked on full-rank teachers;
    and a beta = 0 start whose product is nearly anti-aligned with a mode sits for a long time near
    the a = -b saddle of Eq. 8, so 'infinity' is t = 200.)"""
    for (n_in, n_h, n_out, sv) in [(4, 4, 4, [3.0, 2.0, 1.0, 0.5]), (5, 2, 4, [3.0, 2.0, 1.0, 0.5])]:
        if beta < 0 and n_h > n_in or beta > 0 and n_h > n_out:
            continue
        _, stats = _problem(n_in, n_out, sv, seed=3)
        w1, w2 = bl.sample_balanced(jax.random.PRNGKey(2), n_in, n_h, n_out, 0.3, beta, dtype=jnp.float64)
        st0 = bl.solution(0.0, w1, w2, stats.sigma31, beta)
        assert_close(st0.w2w1, w2 @ w1, F64, **TOL_ULPS[F64])
        assert_close(st0.w1tw1, w1.T @ w1, F64, **TOL_ULPS[F64])
        assert_close(st0.w2w2t, w2 @ w2.T, F64, **TOL_ULPS[F64])
        far = bl.end_to_end(200.0, w1, w2, stats.sigma31, beta)
        # the limit, reached by t = 200 (see above): a convergence tolerance, not rounding
        np.testing.assert_allclose(np.asarray(far), np.asarray(theory.fixed_point(stats.sigma31, n_h)), atol=1e-10)


def _decoupled_start(stats, a0, b0):
    u, s, vt = np.linalg.svd(np.asarray(stats.sigma31))
    r = len(a0)
    rot, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((r, r)))  # any hidden basis
    w1 = (rot * a0) @ vt[:r]
    w2 = (u[:, :r] * b0) @ rot.T
    return jnp.asarray(w1), jnp.asarray(w2), u, s, vt


@pytest.mark.parametrize("beta", [-0.3, 0.4])
def test_decoupled_start_follows_the_hyperbolic_solution(beta):
    """Aligned start with b^2 - a^2 = beta on every mode: each mode is the paper's (a, b) system
    (Eq. 8) solved by supplement Eqs. 1-4 (theory.hyperbolic_trajectory, independently derived)."""
    _, stats = _problem(3, 3, [3.0, 1.5, 0.5])
    c = np.array([0.1, 0.2, 0.05])
    a0, b0 = (c, np.sqrt(c**2 + beta)) if beta >= 0 else (np.sqrt(c**2 - beta), c)
    w1, w2, u, s, vt = _decoupled_start(stats, a0, b0)
    ts = np.linspace(0.0, 6.0, 13)
    got = np.asarray(bl.end_to_end(ts, w1, w2, stats.sigma31, beta))
    modes = np.einsum("ia,tij,aj->ta", u, got, vt)
    a, b = theory.hyperbolic_trajectory(ts[:, None], s[None, :], a0[None, :], b0[None, :], 1.0)
    assert_close(modes, a * b, F64)


def test_small_beta_gives_the_papers_sigmoid():
    """beta -> 0 with a small scale: the mode strengths tend to Eq. 12 (theory.mode_strength at depth 3)
    with u0 = a0 b0, the gap shrinking at least in proportion to beta."""
    _, stats = _problem(3, 3, [3.0, 1.5, 0.5])
    a0 = np.array([1e-2, 2e-2, 5e-3])
    ts = np.linspace(0.0, 12.0, 25)
    gaps = []
    for beta in (1e-4, 1e-6):
        b0 = np.sqrt(a0**2 + beta)
        w1, w2, u, s, vt = _decoupled_start(stats, a0, b0)
        modes = np.einsum("ia,tij,aj->ta", u, np.asarray(bl.end_to_end(ts, w1, w2, stats.sigma31, beta)), vt)
        sig = np.asarray(theory.mode_strength(ts[:, None], s[None, :], (a0 * b0)[None, :], 1.0, 3))
        gaps.append(np.max(np.abs(modes - sig)))
    # the beta -> 0 approximation's own error (not rounding): small, and shrinking with beta
    assert gaps[1] < 1e-3 * s[0]
    assert gaps[1] < 0.02 * gaps[0]


def test_ntk_formula_and_relative_change():
    """The NTK of f(x) = W2 W1 x from autodiff Jacobians on the training inputs equals bl.ntk, and
    the kernel-free Frobenius identity of bl.ntk_relative_change equals the explicit kernels'."""
    ds, stats = _problem(4, 3, [2.0, 1.0, 0.5], seed=1)
    x = jnp.asarray(ds.x)
    w1, w2 = bl.sample_balanced(jax.random.PRNGKey(0), 4, 3, 3, 0.5, -0.2, dtype=jnp.float64)

    def f(params):
        a, b = params
        return (x @ (b @ a).T).reshape(-1)  # (P * N_o,), index (mu, i) row-major

    jac = jax.jacobian(f)((w1, w2))
    jflat = jnp.concatenate([j.reshape(j.shape[0], -1) for j in jac], axis=1)
    assert_close(jflat @ jflat.T, bl.ntk(w1.T @ w1, w2 @ w2.T, x), F64)
    st0 = bl.solution(0.0, w1, w2, stats.sigma31)
    st = bl.solution(jnp.asarray([0.5, 3.0]), w1, w2, stats.sigma31)
    k0 = bl.ntk(st0.w1tw1, st0.w2w2t, x)
    for i in range(2):
        k = bl.ntk(st.w1tw1[i], st.w2w2t[i], x)
        want = float(jnp.linalg.norm(k - k0) / jnp.linalg.norm(k0))
        got = float(bl.ntk_relative_change(jax.tree_util.tree_map(lambda z: z[i], st), st0))
        assert got == approx(want, F64)


def test_refuses_what_the_theory_does_not_cover():
    with pytest.raises(ValueError, match="hidden <= output"):
        bl.sample_balanced(jax.random.PRNGKey(0), 3, 5, 4, 0.3, 0.2)
    with pytest.raises(ValueError, match="hidden <= input"):
        bl.sample_balanced(jax.random.PRNGKey(0), 3, 4, 6, 0.3, -0.2)
    _, stats = _problem(4, 4, [2.0, 1.0])
    w1 = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    w2 = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3)))
    with pytest.raises(ValueError, match="not beta-balanced"):
        bl.solution(1.0, w1, w2, stats.sigma31, 0.0)
    # beta = 0 works for any widths, hidden wider than both sides included
    w1, w2 = bl.sample_balanced(jax.random.PRNGKey(0), 3, 5, 4, 0.3, 0.0, dtype=jnp.float64)
    assert_close(bl.balance(w1, w2), 0.0, F64, **TOL_ULPS[F64])
