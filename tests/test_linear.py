"""The deep linear engine: gradients, theory from decoupled starts, invariants, batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.init import functions as init_fns
from dlnjax.networks import engines, linear
from dlnjax.theory import closed_form as theory
from dlnjax.data import teacher
from dlnjax.data.statistics import Task, best_error, full_svd_basis, stats_from_examples
from dlnjax.measure.thresholds import Threshold
from helpers import TOL, TOL_ULPS, approx, assert_close

F64 = "float64"  # the problems and weights here are float64 unless a test says otherwise


def _problem(widths, svals=(3.0, 2.0, 1.0), p=20, noise=0.1, seed=0):
    ds = teacher(list(svals), widths[0], widths[-1], n_examples=p, noise_std=noise, seed=seed)
    return ds, stats_from_examples(ds.x, ds.y, dtype=jnp.float64)


@pytest.mark.parametrize("widths", [(7, 5, 6, 3), (3, 6, 5, 7), (4, 4), (6, 9, 2, 8, 5)])
def test_hand_gradient_equals_autodiff_and_examples(widths, key):
    ds, st = _problem(widths, svals=(2.0, 1.0))
    w = init_fns.scaled_gaussian(key, widths, dtype=jnp.float64)
    loss, grads = linear.loss_and_grad(w, st)
    loss_ad, grads_ad = jax.value_and_grad(linear.loss_from_stats)(w, st)
    loss_ex, grads_ex = jax.value_and_grad(linear.loss_from_examples)(w, jnp.asarray(ds.x), jnp.asarray(ds.y))
    assert float(loss) == approx(float(loss_ad), F64, table=TOL_ULPS)
    assert float(loss) == approx(float(loss_ex), F64, table=TOL_ULPS)
    for g, ga, ge in zip(grads, grads_ad, grads_ex):
        assert_close(g, ga, F64)
        assert_close(g, ge, F64)


def _decoupled_error(depth, lr, t_end=None, u0=1e-3, svals=(3.0, 2.0, 1.0), n=6, dtype=jnp.float64):
    """max_alpha,t |u_sim - u_theory| / s_alpha from a decoupled start (teacher: Sigma11 = I)."""
    ds = teacher(list(svals), n, n, seed=1)
    st = stats_from_examples(ds.x, ds.y, dtype=jnp.float64).astype(dtype)
    u, s, v = full_svd_basis(st.sigma31)
    widths = (n,) + (n,) * (depth - 2) + (n,)
    w0 = init_fns.decoupled(jax.random.PRNGKey(3), widths, u0, u, v, dtype=dtype)
    k = len(svals)
    # run long enough for the weakest mode to be learned
    t_end = t_end or 2.5 * float(theory.learning_time(min(svals), u0, 0.99 * min(svals), 1.0, depth)) / lr
    steps = int(np.ceil(t_end / 10)) * 10
    _, rec = jax.jit(lambda w: engines.train(w, st, lr, num_steps=steps, record_every=10, u=u[:, :k], v=v[:, :k]))(w0)
    t = np.asarray(rec.step, np.float64)
    s = np.asarray(s[:k], np.float64)
    ref = np.asarray(theory.mode_strength(t[:, None], s[None, :], u0, 1.0 / lr, depth))
    assert float(np.max(np.asarray(rec.modes)[-1] / s)) == pytest.approx(1.0, abs=0.02)  # learned
    return float(np.max(np.abs(np.asarray(rec.modes) - ref) / s))


@pytest.mark.parametrize("depth", [3, *(pytest.param(d, marks=pytest.mark.slow) for d in (4, 6, 10))])
def test_decoupled_start_follows_theory_error_linear_in_lr(depth):
    """Eq. 12 (depth 3) / Eq. 15 (deeper): the only error is the discretisation, O(lr)."""
    lr = 0.05 * float(theory.optimal_learning_rate(3.0, depth))  # 5% of 1/lambda_1 of the top mode
    e1 = _decoupled_error(depth, lr)
    e2 = _decoupled_error(depth, lr / 4)
    assert e1 < 0.1
    assert 3.0 < e1 / e2 < 5.0  # first order in lr: quartering lr quarters the error


def test_decoupled_float32_tolerance():
    """The float32 run follows the theory as closely as the float64 one: the discretisation error
    is common to both, so their errors against the same analytic curve differ by float32 rounding
    only (measured 5e-7 of s over the ~3,500 steps; bounded by 50x TOL['float32']['atol'])."""
    e32 = _decoupled_error(3, 0.005, dtype=jnp.float32)
    e64 = _decoupled_error(3, 0.005, dtype=jnp.float64)
    assert e64 < 0.02  # the O(lr) discretisation error (Eq. 12)
    assert abs(e32 - e64) < 50 * TOL["float32"]["atol"], (e32, e64)


def test_decoupled_init_structure(key):
    ds, st = _problem((5, 7, 6, 4), svals=(3.0, 2.0))
    u, s, v = full_svd_basis(st.sigma31)
    w = init_fns.decoupled(key, (5, 7, 6, 4), 0.01, u, v)
    prod = np.asarray(linear.product(w))
    assert_close(prod, 0.01 * np.asarray(u[:, :4] @ v[:, :4].T), F64)
    # balanced: every layer has the same singular values a0 = u0^(1/3)
    for wl in w:
        sv = np.linalg.svd(np.asarray(wl), compute_uv=False)[:4]
        assert_close(sv, 0.01 ** (1 / 3), rtol=TOL[F64]["rtol"])


def test_balancedness_is_conserved_up_to_discretisation(key):
    """W_{l+1}^T W_{l+1} - W_l W_l^T (the matrix form of a_i^2 - a_j^2) is conserved by the gradient flow."""
    ds, st = _problem((6, 5, 5, 4), svals=(2.0, 1.5, 1.0), noise=0.0)
    w0 = init_fns.small_gaussian(key, (6, 5, 5, 4), 0.3, dtype=jnp.float64)

    def drift(lr, steps):
        s, _ = engines.train(w0, st, lr, num_steps=steps, record_every=steps)
        d = 0.0
        for l in range(len(w0) - 1):
            q0 = w0[l + 1].T @ w0[l + 1] - w0[l] @ w0[l].T
            q1 = s.weights[l + 1].T @ s.weights[l + 1] - s.weights[l] @ s.weights[l].T
            d = max(d, float(jnp.max(jnp.abs(q1 - q0))))
        return d

    d1 = drift(0.02, 200)
    d2 = drift(0.01, 400)  # same continuous time
    assert d1 < 0.05
    # the drift is O(lr^2) per step, so O(lr) over a fixed continuous time: halving lr halves it
    assert 1.8 < d1 / d2 < 2.2


def test_fixed_point_reached_from_random_start(key):
    """With a 2-unit bottleneck the product converges to the best rank-2 approximation (Eq. 7)."""
    ds = teacher([3.0, 2.0, 1.0, 0.5], 6, 5, seed=2)
    st = stats_from_examples(ds.x, ds.y, dtype=jnp.float64)
    w0 = init_fns.small_gaussian(key, (6, 2, 5), 0.1, dtype=jnp.float64)
    s, rec = jax.jit(lambda w: engines.train(w, st, 0.05, num_steps=4000, record_every=100))(w0)
    # convergence after 4000 steps (not rounding): the map to 1e-6, so the loss to ~1e-12 (quadratic)
    np.testing.assert_allclose(np.asarray(linear.product(s.weights)), np.asarray(theory.fixed_point(st.sigma31, 2)), atol=1e-6)
    assert float(rec.loss[-1]) == pytest.approx(best_error(st, rank=2), rel=1e-9)


def test_best_error_matches_least_squares():
    rng = np.random.default_rng(0)
    x = rng.random((50, 8))
    x[:, 0] = 0.0  # a dead pixel: Sigma11 singular
    y = rng.standard_normal((50, 3))
    st = stats_from_examples(x, y, dtype=jnp.float64)
    w, *_ = np.linalg.lstsq(x, y, rcond=None)
    e_ls = 0.5 * np.sum((y - x @ w) ** 2)
    assert best_error(st) == approx(e_ls, F64)
    assert best_error(st, rank=1) > e_ls
    # the task's cached singular values give the same E* at every rank (one eigendecomposition)
    task = Task.from_stats(st)
    for k in (None, 1, 2, 3):
        assert task.best_error(k) == approx(best_error(st, rank=k), F64)
    assert task.best_error(3) == approx(e_ls, F64)  # rank 3 = the output width: unconstrained
    # Threshold.resolve_for reads E* from the task's cache or from the bare statistics alike
    thr = Threshold(kind="relative", reference="zero_map", eps=0.1, value=0.0)
    assert thr.resolve_for(task, (8, 1, 3)) == approx(thr.resolve_for(st, (8, 1, 3)), F64)


@pytest.mark.slow
def test_vmap_equals_loop_and_same_seed_same_numbers(key):
    ds, st = _problem((5, 6, 6, 3))
    u, s, v = full_svd_basis(st.sigma31)
    lrs = jnp.asarray([0.005, 0.01, 0.02])
    keys = jax.random.split(key, 3)
    w0 = jax.vmap(lambda k: init_fns.small_gaussian(k, (5, 6, 6, 3), 0.1, dtype=jnp.float64))(keys)
    f = lambda w, lr: engines.train(w, st, lr, num_steps=100, record_every=10, u=u[:, :3], v=v[:, :3])  # noqa: E731
    _, batched = jax.jit(jax.vmap(f))(w0, lrs)
    for i in range(3):
        _, one = jax.jit(f)(jax.tree_util.tree_map(lambda a: a[i], w0), lrs[i])
        assert_close(batched.loss[i], one.loss, rtol=TOL_ULPS[F64]["rtol"])
        assert_close(batched.modes[i], one.modes, F64, **TOL_ULPS[F64])
    _, again = jax.jit(jax.vmap(f))(jax.vmap(lambda k: init_fns.small_gaussian(k, (5, 6, 6, 3), 0.1, dtype=jnp.float64))(keys), lrs)
    assert np.array_equal(np.asarray(again.loss), np.asarray(batched.loss))


def test_divergence_is_recorded_not_raised(key):
    ds, st = _problem((5, 6, 3))
    w0 = init_fns.small_gaussian(key, (5, 6, 3), 0.3, dtype=jnp.float64)
    lrs = jnp.asarray([0.01, 50.0, 0.02])
    f = lambda lr: engines.train(w0, st, lr, num_steps=200, record_every=10)  # noqa: E731
    s, rec = jax.jit(jax.vmap(f))(lrs)
    div = np.asarray(s.diverged)
    assert list(div) == [False, True, False]
    assert int(s.diverge_step[1]) >= 0
    loss = np.asarray(rec.loss)
    assert np.all(np.isfinite(loss[[0, 2]]))
    assert np.isnan(loss[1, -1])
    # the healthy members are exactly what they are when trained alone
    _, alone = jax.jit(f)(jnp.asarray(0.02))
    assert_close(loss[2], alone.loss, rtol=TOL_ULPS[F64]["rtol"])


def test_cross_step_is_first_step_below_threshold(key):
    ds, st = _problem((5, 4, 3), noise=0.0)
    w0 = init_fns.small_gaussian(key, (5, 4, 3), 0.05, dtype=jnp.float64)
    s, rec = engines.train(w0, st, 0.05, num_steps=300, record_every=1, threshold=2.0)
    loss = np.asarray(rec.loss)
    expected = int(np.nonzero(loss < 2.0)[0][0])
    assert int(s.cross_step) == expected


def test_haar_orthogonal(key):
    q = np.asarray(init_fns.haar_orthogonal(key, 6, dtype=jnp.float64))
    assert_close(q @ q.T, np.eye(6), F64)
    r = np.asarray(init_fns.haar_orthogonal(key, 6, 3, dtype=jnp.float64))
    assert_close(r.T @ r, np.eye(3), F64)
    w = init_fns.random_orthogonal(key, (4, 4, 4), gain=1.3, dtype=jnp.float64)
    assert_close(np.linalg.svd(np.asarray(linear.product(w)), compute_uv=False), 1.69, rtol=TOL_ULPS[F64]["rtol"])


def test_scaled_gaussian_preserves_norm_on_average(key):
    w = init_fns.scaled_gaussian(key, (400, 400), dtype=jnp.float64)[0]
    x = jax.random.normal(jax.random.PRNGKey(1), (400, 50), jnp.float64)
    ratio = float(jnp.mean(jnp.sum((w @ x) ** 2, 0) / jnp.sum(x**2, 0)))
    assert ratio == pytest.approx(1.0, abs=0.1)  # E ||W x||^2 = ||x||^2, to the sampling spread of 50 inputs


def test_is_whitened_knows_the_teacher_from_raw_inputs():
    """Task.is_whitened (dlnjax.data.statistics): the teacher's Sigma11 = I holds in float64 and float32
    (to each dtype's rounding); correlated inputs, or I moved by more than that rounding, are not
    whitened."""
    from dlnjax.data.statistics import is_whitened

    ds = teacher([3.0, 2.0, 1.0], 8, 4, n_examples=20, seed=1)
    for dtype in (jnp.float64, jnp.float32):
        st = stats_from_examples(ds.x, ds.y, dtype=dtype)
        assert Task.from_stats(st).is_whitened, dtype
    x = np.random.default_rng(0).standard_normal((30, 8)) @ np.diag(np.linspace(1, 3, 8))
    assert not Task.from_stats(stats_from_examples(x, ds.y[:1].repeat(30, 0), dtype=jnp.float64)).is_whitened
    nudged = np.eye(5)
    nudged[0, 1] = nudged[1, 0] = 1e-6
    assert not is_whitened(nudged) and is_whitened(nudged.astype(np.float32))
