"""The compressed engine (dlnjax.networks.compressed) against the full-width network it stands for."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.networks import compressed as C
from dlnjax.networks import engines, linear
from dlnjax.init import functions as init_fns
from dlnjax.data.statistics import Stats, best_error, full_svd_basis, stats_from_examples
from helpers import TOL, TOL_ULPS, assert_close

F64 = "float64"  # the problems here are float64 (stats_from_examples, the cores, the weights)
# 300 steps from cores compressed by SVDs (cores_from_weights) vs built directly: ~1.3e-12 measured
RTOL_GENERIC = {"float64": 1e-11}


def _problem(seed=0, p=300, n_in=14, n_out=4):
    """Non-white inputs with one constant input and one linear dependency (two null directions)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p, n_in)) @ np.diag(np.linspace(0.4, 2.5, n_in))
    x[:, 3] = 0.0
    x[:, 5] = x[:, 0] - 0.5 * x[:, 1]
    y = x @ rng.standard_normal((n_in, n_out)) * 0.3 + 0.05 * rng.standard_normal((p, n_out))
    stats = stats_from_examples(x, y, dtype=jnp.float64)
    u, s, v = full_svd_basis(stats.sigma31)
    return stats, u, v


def _full_run(w0, stats, lr, steps):
    return engines.train(w0, stats, lr, num_steps=steps, record_every=1, engine="xla")


def _compressed_run(cores, cs, lr, steps, last_trained=True):
    run = jax.jit(C.make_member_runner(cs, record_every=1, last_trained=last_trained))
    return run(C.init_member(cores, cs, steps + 1, 0), lr, -jnp.inf, steps)


def test_null_directions_dropped_by_gap():
    stats, _, _ = _problem()
    rot = C.rotate_inputs(stats.sigma11)
    assert rot.n_dropped == 2 and rot.n_kept == 12
    assert rot.gap > 1e8  # a clean gap between the real and the vanishing eigenvalues
    # the dropped directions carry no input: Sigma11 q = 0 and Sigma31 q = 0
    q0 = rot.q_null
    assert np.abs(np.asarray(stats.sigma11) @ q0).max() < TOL[F64]["rtol"] * float(np.abs(stats.sigma11).max())
    assert np.abs(np.asarray(stats.sigma31) @ q0).max() < TOL[F64]["rtol"] * float(np.abs(stats.sigma31).max())


def test_full_rank_inputs_keep_everything():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 6))
    rot = C.rotate_inputs(x.T @ x)
    assert rot.n_dropped == 0 and rot.n_kept == 6


@pytest.mark.parametrize("depth,hidden", [(5, 20), (6, 9), (3, 7), (2, 0)])
def test_compressed_equals_full_width(depth, hidden):
    """500+ steps, float64, non-white inputs: loss and end-to-end map to TOL's rtol (1e-10; the loss
    differs by up to ~4e-12 after 600 steps, the map by ~2e-15)."""
    stats, u, v = _problem()
    rot = C.rotate_inputs(stats.sigma11)
    cs = C.compress_stats(stats, rot)
    widths = (stats.n_in,) + (hidden,) * (depth - 2) + (stats.n_out,)
    w0 = init_fns.decoupled(jax.random.PRNGKey(1), widths, 1e-2, u, v)
    cores = C.decoupled_cores(widths, 1e-2, u, v, rot, l_cap=6)
    lam_max = float(np.linalg.eigvalsh(np.asarray(stats.sigma11)).max())
    lr = 0.2 / lam_max / max(depth - 1, 1)  # the loss falls monotonically over the horizon
    steps = 600
    st, rec = _full_run(w0, stats, lr, steps)
    m = _compressed_run(cores, cs, lr, steps, last_trained=depth > 2)
    lf, lc = np.asarray(rec.loss[:steps]), np.asarray(m.rec_loss[:steps])
    assert np.all(np.diff(lf) < 0)
    assert_close(lc, lf, rtol=TOL[F64]["rtol"])
    wf = np.asarray(linear.product(st.weights))
    wc = np.asarray(C.end_to_end(m.cores, rot))
    assert np.linalg.norm(wc - wf) <= TOL[F64]["rtol"] * np.linalg.norm(wf)
    assert int(m.spikes) == 0


def test_compressed_and_full_width_diverge_at_the_same_step():
    stats, u, v = _problem()
    rot = C.rotate_inputs(stats.sigma11)
    cs = C.compress_stats(stats, rot)
    widths = (stats.n_in, 12, 12, 12, stats.n_out)
    w0 = init_fns.decoupled(jax.random.PRNGKey(2), widths, 0.5, u, v)
    cores = C.decoupled_cores(widths, 0.5, u, v, rot)
    lam_max = float(np.linalg.eigvalsh(np.asarray(stats.sigma11)).max())
    lr = 20.0 / lam_max
    st, _ = _full_run(w0, stats, lr, 200)
    m = _compressed_run(cores, cs, lr, 200)
    assert bool(st.diverged) and bool(m.diverged)
    assert int(st.diverge_step) == int(m.diverge_step)
    assert int(m.diverge_step) < 50


def test_hidden_width_drops_out():
    """Widths 16 and 64 give the same cores, so bit-identical runs; through the generic
    compression of full weights (bases from SVDs) they agree to rounding."""
    stats, u, v = _problem()
    rot = C.rotate_inputs(stats.sigma11)
    cs = C.compress_stats(stats, rot)
    runs, generic = [], []
    for hidden in (16, 64):
        widths = (stats.n_in, hidden, hidden, hidden, stats.n_out)
        cores = C.decoupled_cores(widths, 1e-2, u, v, rot)
        runs.append(_compressed_run(cores, cs, 2e-4, 300))
        w0 = init_fns.decoupled(jax.random.PRNGKey(hidden), widths, 1e-2, u, v)
        cores_g, bases = C.cores_from_weights(w0, rot)
        # the compression is a change of basis: expanding it gives the weights back
        for a, b in zip(C.expand(cores_g, bases, rot), w0):
            assert_close(a, b, F64)
        generic.append(_compressed_run(cores_g, cs, 2e-4, 300))
    np.testing.assert_array_equal(np.asarray(runs[0].rec_loss), np.asarray(runs[1].rec_loss))
    np.testing.assert_array_equal(np.asarray(runs[0].cores.first), np.asarray(runs[1].cores.first))
    for g in generic:
        assert_close(g.rec_loss, runs[0].rec_loss, rtol=RTOL_GENERIC[F64])


def test_input_rotation_alone_equals_the_unrotated_step():
    """Full-width network on (Q^T Sigma11 Q, Sigma31 Q) with W^1 Q: the same loss and the rotated
    gradient (nothing dropped)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((80, 7)) @ np.diag(np.linspace(0.5, 2.0, 7))
    y = rng.standard_normal((80, 3))
    stats = stats_from_examples(x, y, dtype=jnp.float64)
    q = np.linalg.eigh(np.asarray(stats.sigma11))[1]
    rstats = Stats(jnp.asarray(q.T @ np.asarray(stats.sigma11) @ q), jnp.asarray(np.asarray(stats.sigma31) @ q), stats.tr33)
    ws = init_fns.small_gaussian(jax.random.PRNGKey(0), (7, 5, 4, 3), 0.3)
    rws = (ws[0] @ q,) + tuple(ws[1:])
    e, g = linear.loss_and_grad(ws, stats)
    er, gr = linear.loss_and_grad(rws, rstats)
    # one evaluation against its rotated twin: a few ulps (of each array's scale)
    rtol = TOL_ULPS[F64]["rtol"]
    assert abs(float(e) - float(er)) <= rtol * abs(float(e))
    assert_close(gr[0], np.asarray(g[0]) @ q, F64, atol=rtol * float(np.abs(g[0]).max()))
    for a, b in zip(gr[1:], g[1:]):
        assert_close(a, b, F64, atol=rtol * float(np.abs(b).max()))


def test_unaligned_start_is_refused():
    stats, _, _ = _problem()
    rot = C.rotate_inputs(stats.sigma11)
    ws = init_fns.scaled_gaussian(jax.random.PRNGKey(0), (stats.n_in, 20, 20, stats.n_out))
    with pytest.raises(C.NotAlignedError, match="not rank-4 aligned"):
        C.cores_from_weights(ws, rot)


def test_vmapped_runner_equals_a_loop():
    stats, u, v = _problem()
    rot = C.rotate_inputs(stats.sigma11)
    cs = C.compress_stats(stats, rot)
    cores = C.decoupled_cores((stats.n_in, 8, 8, stats.n_out), 1e-2, u, v, rot)
    run = C.make_member_runner(cs, record_every=5)
    lrs = jnp.asarray([1e-4, 3e-4, 1e-3])
    thr = float(C.loss(cores, cs)) * 0.3
    st0 = C.init_member(cores, cs, 81, 0)
    batch = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (3,) + a.shape), st0)
    out = jax.jit(jax.vmap(run, in_axes=(0, 0, None, None)))(batch, lrs, thr, 400)
    for i, lr in enumerate(lrs):
        one = jax.jit(run)(st0, lr, thr, 400)
        assert_close(out.rec_loss[i], one.rec_loss, rtol=TOL_ULPS[F64]["rtol"])
        assert int(out.cross_step[i]) == int(one.cross_step)


@pytest.mark.slow
def test_sharpness_equals_the_dense_hessian():
    stats, u, v = _problem()
    rot = C.rotate_inputs(stats.sigma11)
    cs = C.compress_stats(stats, rot)
    cores = C.decoupled_cores((stats.n_in, 4, 4, 4, stats.n_out), 0.7, u, v, rot, l_cap=3)
    lam, _ = C.sharpness(cores, cs, iters=300)
    n, r = cs.n_in, 4

    def flat_loss(th):
        f = th[: r * n].reshape(r, n)
        h = th[r * n : r * n + 2 * r * r].reshape(2, r, r)
        t = th[r * n + 2 * r * r :].reshape(cs.n_out, r)
        w = t @ h[1] @ h[0] @ f
        return 0.5 * cs.tr33 - jnp.sum(w * cs.sigma31) + 0.5 * jnp.sum(w * w * cs.lam)

    th = jnp.concatenate([cores.first.ravel(), cores.hidden[:2].ravel(), cores.last.ravel()])
    ev = np.linalg.eigvalsh(np.asarray(jax.hessian(flat_loss)(th)))
    assert abs(float(lam) - ev[-1]) <= 1e-8 * ev[-1]  # the iterative eigensolver's convergence (300 iterations)


def test_spikes_are_detected_in_the_loop():
    """Above the edge of the top direction the loss rises step to step before it blows up;
    at a small rate it never rises."""
    stats, u, v = _problem()
    rot = C.rotate_inputs(stats.sigma11)
    cs = C.compress_stats(stats, rot)
    cores = C.decoupled_cores((stats.n_in, 8, stats.n_out), 0.5, u, v, rot)
    lam_max = float(rot.lam[0])
    small = _compressed_run(cores, cs, 0.05 / lam_max, 300)
    big = _compressed_run(cores, cs, 3.0 / lam_max, 300)
    assert int(small.spikes) == 0 and int(small.first_spike) == -1
    assert int(big.spikes) > 0 and 0 < int(big.first_spike)
    assert float(big.max_rise) > 1e-3


def test_rate_statistics_on_a_toy_problem():
    """The robust statistics on a small non-white problem: the gradient-flow time is the same at
    any small rate (T_ct = rate x steps), the small-rate run stays off the edge of stability
    (rate x lambda* <= 1) and its recorded rate is the one it ran at; replaying the memoised
    outcomes recomputes nothing."""
    from dlnjax.measure import robust

    stats, u, v = _problem()
    rot = C.rotate_inputs(stats.sigma11)
    cs = C.compress_stats(stats, rot)
    widths = (stats.n_in, 6, 6, 6, stats.n_out)
    cores = C.decoupled_cores(widths, 1e-3, u, v, rot)
    e_star = float(best_error(stats, rank=4))
    e0 = float(C.loss(cores, cs))
    thr = e_star + 0.05 * (e0 - e_star)
    member = C.member_fn(cs, cores, thr, record_every=10, max_steps=20000)
    calls = []

    def counted(lr, limit, resume):
        calls.append(lr)
        return member(lr, limit, resume)

    cache = {}
    lam_max = float(rot.lam[0])
    grid = np.geomspace(0.01, 3.0, 10) / lam_max
    rs = robust.rate_statistics(robust.memoised(counted, cache), grid, max_steps=20000,
                                sharpness=lambda o, v0: member.sharpness(o))
    small = [r for r in rs.runs if r.role == "small"][-1]
    assert small.status == "learned" and small.lr == rs.t_ct_rate
    assert rs.extra["max_rate_times_sharpness"] < 2.0 and rs.extra["small_rate_stable"]
    # gradient flow: a constant small rate reaches the threshold after the same flow time
    lr = 0.5 * min(rs.extra["flow_rates"])
    o = member(lr, 10**6, None)
    assert abs(o.cross_step * lr / rs.t_ct - 1.0) < 0.02  # O(lr) from the flow, not rounding
    # the measured optimum: the fastest crossing of any run, inside the band whose centre is the best rate
    learned = [r for r in rs.runs if r.status == "learned" and r.role != "small"]
    assert rs.learning_time == min(r.learning_time for r in learned)
    assert rs.band_lo <= rs.fastest_rate <= rs.band_hi and rs.band_lo <= rs.best_rate <= rs.band_hi
    statuses = {r.status for r in rs.runs}
    assert "learned" in statuses and "diverged" in statuses
    n = len(calls)
    rs2 = robust.rate_statistics(robust.memoised(counted, cache), grid, max_steps=20000,
                                 sharpness=lambda o, v0: member.sharpness(o))
    assert len(calls) == n and rs2.t_ct == rs.t_ct and rs2.edge == rs.edge


def test_small_real_directions_are_kept():
    """Only numerically-zero eigenvalues across a clean gap are dropped: a real direction with
    eigenvalue 1e-9 lambda_max stays (dropping it would not be exact)."""
    q = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 6)))[0]
    lam = np.array([1.0, 0.5, 0.2, 1e-3, 1e-9, 0.0])
    rot = C.rotate_inputs(q @ np.diag(lam) @ q.T)
    assert rot.n_kept == 5 and rot.n_dropped == 1
    lam2 = np.array([1.0, 0.5, 0.2, 1e-3, 1e-9, 2e-10])  # tiny but real, no gap to zero
    rot2 = C.rotate_inputs(q @ np.diag(lam2) @ q.T)
    assert rot2.n_dropped == 0


def test_input_direction_overlap():
    """The share of the top Hessian eigenvector's squared norm that the first layer puts on an
    input direction, against the eigenvector expanded to pixel space: equal for any direction; over
    an orthonormal basis of inputs the shares add up to the first layer's share; along Sigma11's
    top eigenvector it is the first core's column 0."""
    stats, u, v = _problem()
    rot = C.rotate_inputs(stats.sigma11)
    cs = C.compress_stats(stats, rot)
    cores = C.decoupled_cores((stats.n_in, 4, 4, 4, stats.n_out), 0.7, u, v, rot, l_cap=3)
    _, vec = C.sharpness(cores, cs, iters=300)
    total = float(C._dot(vec, vec))
    pix = np.asarray(vec.first) @ np.asarray(rot.q).T  # dW^1 in pixel space (in the P_2 frame)
    rng = np.random.default_rng(1)
    x = 3.0 * rng.standard_normal(stats.n_in)
    share = float(C.input_direction_overlap(vec, rot, x))
    xn = x / np.linalg.norm(x)
    # shares are fractions of 1: rounding of a few sums of squares, in absolute terms
    assert abs(share - np.sum((pix @ xn) ** 2) / total) < TOL[F64]["atol"] and 0.0 < share < 1.0
    basis = np.linalg.qr(rng.standard_normal((stats.n_in, stats.n_in)))[0]
    shares = [float(C.input_direction_overlap(vec, rot, basis[:, i])) for i in range(stats.n_in)]
    assert abs(sum(shares) - float(jnp.sum(vec.first**2)) / total) < TOL[F64]["atol"]
    top = float(C.input_direction_overlap(vec, rot, rot.q[:, 0]))
    assert abs(top - float(jnp.sum(vec.first[:, 0] ** 2)) / total) < TOL[F64]["atol"]
