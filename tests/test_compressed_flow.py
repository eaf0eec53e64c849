"""The compressed network's gradient flow (diffrax, :func:`dlnjax.theory.gradient_flow.compressed_learning_time`):
(a) it is the full-width flow on non-white data, (b) on whitened data its T_ct is Eq. 15's exact
decoupled time, (c) small-rate gradient descent's crossing time x rate converges to it at first
order in the rate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

from dlnjax.networks import compressed, engines, linear
from dlnjax.init import functions as init_fns
from dlnjax.measure import sweep
from dlnjax.theory import closed_form as theory
from dlnjax.theory import gradient_flow as gf
from dlnjax.data import teacher
from dlnjax.data.statistics import Stats, Task, best_error, stats_from_examples
from helpers import TOL_ULPS, approx, assert_close

F64 = "float64"  # the flows here run in float64 (the statistics, weights and cores)
# two integrations of the same flow (different state, error norm and controller) at rtol 1e-10,
# events located on the dense output to ~1e-12: they agree to ~1e-8 relative; we ask 1e-6
RTOL_TIME = {"float64": 1e-6}
# their loss curves at rtol 1e-10 (a tolerance float64 allows): ~1e-8 relative apart; we ask 1e-7
RTOL_CURVE = {"float64": 1e-7}


def _nonwhite(depth, hidden=5, seed=0):
    """A random non-white teacher: 40 examples of 6 inputs with scales 3 .. 0.1, 4 outputs."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((40, 6)) * np.array([3.0, 1.5, 1.0, 0.6, 0.3, 0.1])
    y = x @ rng.standard_normal((6, 4)) + 0.2 * rng.standard_normal((40, 4))
    stats = stats_from_examples(x, y, dtype=jnp.float64)
    task = Task.from_stats(stats)
    widths = sweep.widths_for(6, 4, depth, hidden)
    w = init_fns.decoupled(jax.random.PRNGKey(1), widths, 1e-2, task.u, task.v, dtype=jnp.float64)
    return stats, task, widths, w


def _compress(stats, w):
    rot = compressed.rotate_inputs(np.asarray(stats.sigma11))
    s64 = Stats(np.asarray(stats.sigma11), np.asarray(stats.sigma31), float(stats.tr33))
    cs = compressed.compress_stats(s64, rot, jnp.float64)
    cores, _ = compressed.cores_from_weights(w, rot, l_cap=4)
    return cs, cores


@pytest.mark.slow
@pytest.mark.parametrize("depth", [3, 5])
def test_compressed_flow_is_the_full_width_flow(depth):
    """Non-white inputs, a decoupled start in a random hidden basis: T_ct and the loss curve of
    the compressed flow equal the full-width flow's (gradient_flow.learning_time / solve)."""
    stats, task, widths, w = _nonwhite(depth)
    cs, cores = _compress(stats, w)
    e0 = float(linear.loss_from_stats(w, stats))
    e_star = float(best_error(stats, rank=min(widths)))
    assert float(compressed.loss(cores, cs)) == approx(e0, F64, table=TOL_ULPS)
    thr = e_star + 0.05 * (e0 - e_star)
    t_full = float(gf.learning_time(w, stats, thr, t_max=50.0, rtol=1e-10, atol=1e-12))
    ft = gf.compressed_learning_time_jit(cores, cs, thr, 50.0, gf.FlowOptions(rtol=1e-10, atol=1e-12))
    assert np.isfinite(t_full) and 0 < t_full < 50
    assert float(ft.t_ct) == pytest.approx(t_full, rel=RTOL_TIME[F64])
    ts = np.linspace(0.0, 1.5 * t_full, 7)
    full = np.asarray(gf.solve(w, stats, ts, rtol=1e-10, atol=1e-12).loss)
    comp = np.asarray(gf.compressed_solve(cores, cs, ts, gf.FlowOptions(rtol=1e-10, atol=1e-12)).loss)
    assert_close(comp, full, rtol=RTOL_CURVE[F64])


@pytest.mark.slow
@pytest.mark.parametrize("depth", [3, 6])
def test_whitened_t_ct_is_eq15_exact(depth):
    """Whitened inputs (Sigma11 = I): the modes decouple exactly and E(t) = E_rest + sum_a
    1/2 (s_a - u_a(t))^2 with u_a from Eq. 15 (theory.mode_strength, exact up to its bisection).
    The exact T_ct is the root of E(t) = thr (brentq); the flow's agrees to 1e-6. sweep.theory_t_ct
    (Eq. 15 inverted by interpolation on a strength grid) is a 1e-4 approximation of it."""
    sv = [3.0, 2.0, 1.0, 0.5]
    ds = teacher(sv, 6, 5, seed=3)
    stats = stats_from_examples(ds.x, ds.y, dtype=jnp.float64)
    task = Task.from_stats(stats)
    widths = sweep.widths_for(6, 5, depth, 3)  # rank 3: the weakest mode is never carried
    u0 = 1e-3
    w = init_fns.decoupled(jax.random.PRNGKey(2), widths, u0, task.u, task.v, dtype=jnp.float64)
    cs, cores = _compress(stats, w)
    s = np.asarray(task.s[:3])
    e_floor = float(best_error(stats, rank=3))

    def exact_loss(t):
        u = np.asarray(theory.mode_strength(t, s, u0, 1.0, depth))
        return e_floor + 0.5 * np.sum((s - u) ** 2)

    e0 = exact_loss(0.0)
    assert float(compressed.loss(cores, cs)) == approx(e0, F64, table=TOL_ULPS)
    eps = 0.05
    thr = e_floor + eps * (e0 - e_floor)
    t_exact = brentq(lambda t: exact_loss(t) - thr, 0.0, 1e3, xtol=1e-14, rtol=1e-14)
    t_ct = float(gf.compressed_learning_time_jit(cores, cs, thr, 10 * t_exact, gf.FlowOptions(rtol=1e-10, atol=1e-12)).t_ct)
    assert t_ct == pytest.approx(t_exact, rel=RTOL_TIME[F64])
    # the strength grid's interpolation error, not rounding
    assert float(sweep.theory_t_ct(task, depth, u0, 3, eps)) == pytest.approx(t_exact, rel=1e-4)


@pytest.mark.slow
def test_small_rate_crossing_time_converges_to_t_ct_at_first_order():
    """Gradient descent at rate lr is forward Euler on the flow: its crossing time (steps, the
    crossing located by linear interpolation between the two bracketing steps so that the
    step's own quantisation is O(lr^2)) times lr differs from T_ct by C lr + O(lr^2). Fit the
    log-log slope of |lr t(lr) - T_ct| against lr over lr lam_max(Sigma11) = 0.04 .. 0.0025 (diffrax-test style):
    it lies in [0.9, 1.1]; a time-unit or vector-field mismatch would give a floor (slope ~0)."""
    stats, task, widths, w = _nonwhite(4)
    cs, cores = _compress(stats, w)
    e0 = float(linear.loss_from_stats(w, stats))
    e_star = float(best_error(stats, rank=min(widths)))
    thr = e_star + 0.05 * (e0 - e_star)
    t_ct = float(gf.compressed_learning_time_jit(cores, cs, thr, 50.0, gf.FlowOptions(rtol=1e-11, atol=1e-13)).t_ct)
    lam = np.linalg.eigvalsh(np.asarray(stats.sigma11))[-1]
    # lr lam_max(Sigma11) = 0.04 .. 0.0025 (0.4 already oscillates: the Hessian exceeds Sigma11 here)
    rates = np.array([4e-2, 2e-2, 1e-2, 5e-3, 2.5e-3]) / lam
    errs = []
    for lr in rates:
        n = int(np.ceil(1.5 * t_ct / lr))
        _, rec = engines.train(w, stats, lr, num_steps=n, record_every=1)
        e = np.asarray(rec.loss)
        k = int(np.argmax(e < thr))
        assert k > 0 and e[k] < thr <= e[k - 1]
        t_gd = lr * (k - 1 + (e[k - 1] - thr) / (e[k - 1] - e[k]))
        errs.append(abs(t_gd - t_ct))
    errs = np.asarray(errs)
    slope = np.polyfit(np.log(rates), np.log(errs), 1)[0]
    assert errs[-1] < 1e-2 * t_ct  # C lr at the smallest rate: the discretisation, not rounding
    assert 0.9 <= slope <= 1.1, (slope, errs / t_ct)


@pytest.mark.slow
def test_fig4_flow_t_ct_is_the_compressed_flow():
    """The Fig. 4 wiring (experiments._shared.depth_loop.flow_t_ct): float64 decoupled cores of the
    run's widths, the run's threshold, horizon 20x the small-rate T_ct; checkpoint entries."""
    from types import SimpleNamespace

    from experiments._shared import depth_loop
    from experiments._shared.problem import Problem

    stats, task, widths, _ = _nonwhite(4, hidden=7)
    s64 = Stats(np.asarray(stats.sigma11), np.asarray(stats.sigma31), float(stats.tr33))
    rot = compressed.rotate_inputs(s64.sigma11)
    engine = depth_loop.DepthEngine(name="compressed-xla", compress=True, cs=None, rot=rot)
    problem = Problem(None, task, s64)
    cores = compressed.decoupled_cores(widths, 1e-2, task.u, task.v, rot, l_cap=3, dtype=jnp.float64)
    cs = compressed.compress_stats(s64, rot, jnp.float64)
    e0 = float(compressed.loss(cores, cs))
    thr = float(best_error(stats, rank=4)) + 0.05 * (e0 - float(best_error(stats, rank=4)))
    want = float(gf.compressed_learning_time_jit(cores, cs, thr, 50.0, gf.FlowOptions(rtol=1e-10, atol=1e-12)).t_ct)
    out = depth_loop.flow_t_ct(problem, engine, widths, 1e-2, thr, 3, SimpleNamespace(t_ct=1.1 * want))
    assert set(out) == set(depth_loop.FLOW_KEYS)
    assert float(out["flow_t_ct"]) == pytest.approx(want, rel=1e-5)  # rtol 1e-7 vs 1e-10
    assert int(out["flow_steps"]) > 0
