"""The exact scalar maps of dlnjax.theory.finite_rate against simulated decoupled networks (float64)."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.theory import finite_rate as fr
from dlnjax.networks import engines, linear
from dlnjax.init import functions as init_fns
from dlnjax.theory import closed_form as theory
from dlnjax.data import teacher
from dlnjax.data.statistics import Stats, best_error, full_svd_basis, stats_from_examples
from helpers import TOL, approx

# every check here runs in float64; the maps and the network are two computations of the same
# recursion, which agree to rounding over a few thousand steps (~4e-14 seen): TOL's rtol
F64 = "float64"
# the same closed form of the edge written two ways (no sums, no steps): equal to an ulp or two
RTOL_EDGE = {"float64": 1e-14}
DEPTH = 5
WIDTHS = (5, 3, 3, 3, 4)  # three hidden layers of 3 units: rank-limited to 3 of the 4 teacher modes
N_STEPS = 2500
EPS = 0.01


@pytest.fixture(scope="module")
def setup():
    ds = teacher([2.0, 1.0, 0.5, 0.3], n_in=5, n_out=4, seed=1)
    stats = stats_from_examples(ds.x, ds.y, dtype=jnp.float64)
    u, s, v = full_svd_basis(stats.sigma31)
    u0 = 0.02
    w = init_fns.decoupled(jax.random.PRNGKey(3), WIDTHS, u0, u, v, n_modes=3, dtype=jnp.float64)
    e_star = best_error(stats, rank=3)  # 0.3^2 / 2: the uncarried mode
    edge = float(fr.stability_edge(s[0], 1.0, DEPTH))
    return dict(stats=stats, s=s[:3], u0=u0, w=w, e_star=e_star, edge=edge)


def _simulate(setup, rates):
    stats, w, e_star = setup["stats"], setup["w"], setup["e_star"]
    e0 = linear.loss_from_stats(w, stats)
    thr = e_star + EPS * (e0 - e_star)
    run = jax.jit(jax.vmap(lambda lr: engines.train(w, stats, lr, num_steps=N_STEPS, record_every=1, threshold=thr)))
    st, rec = run(jnp.asarray(rates))
    return st, np.asarray(rec.loss)


def _maps(setup, rates):
    u0 = jnp.full(3, setup["u0"])
    curve = jax.vmap(lambda lr: fr.network_loss_curve(u0, lr, setup["s"], 1.0, depth=DEPTH, num_steps=N_STEPS,
                                                       tr33=setup["stats"].tr33))(jnp.asarray(rates))
    lt = jax.vmap(lambda lr: fr.learning_time(u0, lr, setup["s"], 1.0, depth=DEPTH, eps=EPS, max_steps=N_STEPS - 1,
                                              e_star=setup["e_star"]))(jnp.asarray(rates))
    return np.asarray(curve), lt


def test_edge_formula_matches_theory_module():
    # d = 1: the edge is twice the supplement's 1 / lambda_1(a_opt) (its Eq. 19)
    for depth in (2, 3, 5, 10):
        for s in (0.5, 2.0):
            assert float(fr.stability_edge(s, 1.0, depth)) == pytest.approx(
                float(theory.stability_edge_learning_rate(s, depth)), rel=RTOL_EDGE[F64])


def test_loss_curve_and_learning_time_below_and_near_edge(setup):
    """Stable and period-2 rates: the scalar maps reproduce every step of the network's loss."""
    fracs = np.array([0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.99, 1.05, 1.2])
    rates = setup["edge"] * fracs
    st, loss = _simulate(setup, rates)
    curve, lt = _maps(setup, rates)
    np.testing.assert_allclose(loss, curve, rtol=TOL[F64]["rtol"], atol=0)
    # learning time (first step with E < E* + eps (E0 - E*)) equal to the step at every rate that learns
    learned = fracs < 1.0
    np.testing.assert_array_equal(np.asarray(st.cross_step)[learned], np.asarray(lt.step)[learned])
    assert np.all(np.asarray(lt.step)[learned] > 0)
    # beyond the edge the strongest mode oscillates: never within eps of E*; nothing diverges
    assert np.all(np.asarray(st.cross_step)[~learned] == -1) and np.all(np.asarray(lt.step)[~learned] == -1)
    assert not np.any(np.asarray(st.diverged)) and np.all(np.asarray(lt.diverge_step) == -1)
    # learning time falls as 1/lr far below the edge (t ~ tau): a sanity check on the grid itself
    t = np.asarray(lt.step)[:4].astype(float)
    assert np.all(np.diff(t) < 0)


def _outcome(cross, div):
    return np.where(div >= 0, "diverged", np.where(cross >= 0, "learned", "neither"))


def test_chaotic_window_and_divergence_outcomes(setup):
    """Chaotic window (~1.3-1.6 x edge): rounding differences grow, so compare only the outcome.
    Well beyond it both diverge."""
    fracs = np.array([1.3, 1.35, 1.5, 1.55, 2.5, 4.0])
    rates = setup["edge"] * fracs
    st, loss = _simulate(setup, rates)
    _, lt = _maps(setup, rates)
    sim = _outcome(np.asarray(st.cross_step), np.where(np.asarray(st.diverged), np.asarray(st.diverge_step), -1))
    ana = _outcome(np.asarray(lt.step), np.asarray(lt.diverge_step))
    np.testing.assert_array_equal(sim, ana)
    assert list(ana[-2:]) == ["diverged", "diverged"]
    np.testing.assert_array_equal(np.asarray(st.diverge_step)[-2:], np.asarray(lt.diverge_step)[-2:])
    # in the window the orbit neither diverges nor settles: the loss still moves at the end
    window = fracs < 2.0
    assert np.all(np.isfinite(loss[window]))
    tail = loss[window][:, -200:]
    assert np.all(tail.max(axis=1) - tail.min(axis=1) > 1e-3)


def _non_white_problem():
    rng = np.random.default_rng(0)
    n_in, n_out = 4, 3
    s = np.array([1.5, 0.8, 0.4])
    d = np.array([2.0, 0.5, 1.3])
    u, _ = np.linalg.qr(rng.standard_normal((n_out, n_out)))
    v, _ = np.linalg.qr(rng.standard_normal((n_in, n_in)))
    dfull = np.concatenate([d, [0.7]])
    sigma11 = (v * dfull) @ v.T
    sigma31 = (u * s) @ v[:, :3].T
    tr33 = float(np.sum(s**2 / d) + 0.25)  # E* = 0.125 (the part of Y no linear map explains)
    stats = Stats(jnp.asarray(sigma11), jnp.asarray(sigma31), jnp.asarray(tr33))
    return stats, u, v, s, d, tr33


def test_non_white_inputs_per_mode_variance():
    """Sigma11 = V diag(d) V^T, Sigma31 = U diag(s) V^T: each mode's own map with its own d, at rates
    below the network's edge (cross-mode directions included, fr.network_edge)."""
    depth = 4
    stats, u, v, s, d, tr33 = _non_white_problem()
    u0 = np.array([0.05, 0.1, 0.2])
    w = init_fns.decoupled(jax.random.PRNGKey(0), (4, 3, 3, 3), jnp.asarray(u0), jnp.asarray(u), jnp.asarray(v),
                       n_modes=3, dtype=jnp.float64)
    edge = float(fr.network_edge(s, d, depth, d_extra=[0.7]))
    for frac in (0.3, 0.95):
        lr = frac * edge
        _, rec = engines.train(w, stats, lr, num_steps=1500, record_every=1)
        curve = fr.network_loss_curve(u0, lr, s, d, depth=depth, num_steps=1500, tr33=tr33)
        np.testing.assert_allclose(np.asarray(rec.loss), np.asarray(curve), rtol=TOL[F64]["rtol"])
        assert float(rec.loss[-1]) == pytest.approx(0.125, rel=1e-9)  # converged to E* with u = s/d (after 1500 steps)


@pytest.mark.slow
def test_non_white_cross_mode_edge_below_mode_edges():
    """With unequal d the edge is set by a cross-mode pair, below every mode's own edge: the
    network's Hessian at its optimum (autodiff) has lambda_max = 2 / network_edge, and at
    1.2 x network_edge the maps converge while the network leaves the decoupled manifold."""
    depth = 4
    stats, u, v, s, d, _ = _non_white_problem()
    opt = init_fns.decoupled(jax.random.PRNGKey(0), (4, 3, 3, 3), jnp.asarray(s / d), jnp.asarray(u), jnp.asarray(v),
                         n_modes=3, dtype=jnp.float64)
    flat, unravel = jax.flatten_util.ravel_pytree(opt)
    h = jax.hessian(lambda x: linear.loss_from_stats(unravel(x), stats))(flat)
    lam_max = float(np.max(np.linalg.eigvalsh(np.asarray(h))))
    edge = float(fr.network_edge(s, d, depth, d_extra=[0.7]))
    assert 2.0 / lam_max == approx(edge, F64)
    mode_edges = np.asarray(fr.stability_edge(s, d, depth))
    assert edge < 0.7 * mode_edges.min()
    lr = 1.2 * edge
    u0 = np.array([0.05, 0.1, 0.2])
    w = init_fns.decoupled(jax.random.PRNGKey(0), (4, 3, 3, 3), jnp.asarray(u0), jnp.asarray(u), jnp.asarray(v),
                       n_modes=3, dtype=jnp.float64)
    _, rec = engines.train(w, stats, lr, num_steps=3000, record_every=1)
    curve = np.asarray(fr.network_loss_curve(u0, lr, s, d, depth=depth, num_steps=3000, tr33=float(stats.tr33)))
    assert curve[-1] == pytest.approx(0.125, rel=1e-9)  # every scalar map converges (within 3000 steps)
    sim = np.asarray(rec.loss)
    # the network does not follow them: rounding seeds the unstable cross-mode direction, the loss
    # curve departs from the maps' by far more than rounding, and the network settles elsewhere on
    # the manifold of global minima, at a point flat enough for this rate (lambda_max < 2 / lr)
    assert np.max(np.abs(sim - curve) / curve) > 1e-2
    st, _ = engines.train(w, stats, lr, num_steps=3000, record_every=3000)
    flat_end, _ = jax.flatten_util.ravel_pytree(st.weights)
    h_end = jax.hessian(lambda x: linear.loss_from_stats(unravel(x), stats))(flat_end)
    assert float(np.max(np.linalg.eigvalsh(np.asarray(h_end)))) < 2.0 / lr
    assert sim[-1] == pytest.approx(0.125, rel=1e-6)  # settled on the manifold of minima (convergence, not rounding)


@pytest.mark.parametrize("depth", [3, 5, 8])
@pytest.mark.parametrize("s,d", [(1.0, 1.0), (2.5, 0.7)])
def test_edge_by_simulating_the_map(depth, s, d):
    """Start next to a* = (s/d)^{1/n}: converges just below the edge, not just above it."""
    n = depth - 1
    edge = float(fr.stability_edge(s, d, depth))
    a_star = (s / d) ** (1.0 / n)
    # the multiplier at a* is -1 exactly at the edge (autodiff of the map itself)
    mult = jax.grad(lambda a: fr.step(a, edge, s, d, n))(jnp.asarray(a_star))
    assert float(mult) == pytest.approx(-1.0, abs=TOL[F64]["atol"])
    a0 = a_star * (1 + 1e-3)
    below = np.asarray(fr.trajectory(a0, 0.98 * edge, s, d, n, 4000))
    above = np.asarray(fr.trajectory(a0, 1.02 * edge, s, d, n, 4000))
    assert abs(below[-1] - a_star) < 1e-10 * a_star  # converged (4000 steps at a multiplier ~ -0.96)
    # above: a period-2 orbit of amplitude ~ sqrt(0.02) a*, bounded, never at a*
    tail = above[-100:]
    assert np.all(np.isfinite(tail))
    assert np.min(np.abs(tail - a_star)) > 1e-3 * a_star
    np.testing.assert_allclose(tail[2:], tail[:-2], rtol=1e-8)  # period 2 (the orbit reached after 3900 steps)


def test_single_mode_absolute_threshold_and_jit():
    f = jax.jit(lambda lr: fr.learning_time(1e-3, lr, 2.0, 1.0, depth=3, threshold=1e-4, max_steps=10000))
    out = f(0.01)
    # independent reference: iterate the network's own equations for one mode, a = b (plain Python)
    a, k = 1e-3**0.5, 0
    while 0.5 * (a * a - 2.0) ** 2 >= 1e-4:
        a = a - 0.01 * a * (a * a - 2.0)
        k += 1
    assert int(out.step) == k and int(out.diverge_step) == -1
    with pytest.raises(ValueError):
        fr.learning_time(1e-3, 0.01, 2.0, depth=3)


def test_fastest_rate_of_a_linear_map_is_the_newton_step():
    """Depth 2 (one weight layer): the map is linear, e_{k+1} = (1 - lr d) e_k, so the excess falls
    below eps X(0) in one step exactly when |1 - lr d| < sqrt(eps): the fastest rates are
    lr d in (1 - sqrt(eps), 1 + sqrt(eps)) and the largest scanned one is returned (ties go up)."""
    s, d, eps = 2.0, 4.0, 0.01
    f = fr.fastest_rate(jnp.asarray([1e-3]), jnp.asarray([s]), jnp.asarray([d]), depth=2, eps=eps, num=400)
    assert int(f.step) == 1
    lo, hi = (1 - eps**0.5) / d, (1 + eps**0.5) / d
    assert lo < float(f.rate) < hi
    rates = np.asarray(f.rates)
    assert not np.any((rates > float(f.rate)) & (rates < hi))  # the largest scanned rate that takes one step
    assert float(rates.max()) < float(fr.stability_edge(s, d, 2))  # the scan stays below the edge 2/d
