"""The balanced flow on the end-to-end map (:mod:`dlnjax.theory.end_to_end_flow`) against the
layers' own flow: (a) its vector field is the chain rule through the cores' gradient at any
balanced point (random gauges, several depths, rank below the output width, depth 2); (b) its
T_ct is the cores' flow's (diffrax on every layer); (c) the balanced cores it rebuilds carry the
loss and the Hessian's top eigenvalue of the layers' own flow at the same time; (d) the limits
t = 0 (a start below the threshold) and an unreachable threshold."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.data.statistics import Stats, Task, best_error, stats_from_examples
from dlnjax.measure import sweep
from dlnjax.networks import compressed
from dlnjax.theory import end_to_end_flow as e2e
from dlnjax.theory import gradient_flow as gf
from helpers import approx, assert_close

F64 = "float64"
# two integrations of one flow (the layers' and the end-to-end map's) at rtol 1e-10: their
# event times agree to ~1e-11 here; we ask 1e-8
RTOL_TIME = {"tsit5": 1e-8, "rosenbrock_w": 1e-8}
# power iteration (200 steps) on two parametrisations with the same Hessian spectrum: ~1e-12 apart
RTOL_LAM = {"float64": 1e-9}


def _problem(n_in=6, n_out=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((40, n_in)) * np.geomspace(3.0, 0.1, n_in)
    y = x @ rng.standard_normal((n_in, n_out)) + 0.2 * rng.standard_normal((40, n_out))
    stats = stats_from_examples(x, y, dtype=jnp.float64)
    s64 = Stats(np.asarray(stats.sigma11), np.asarray(stats.sigma31), float(stats.tr33))
    rot = compressed.rotate_inputs(s64.sigma11)
    return stats, Task.from_stats(stats), rot, compressed.compress_stats(s64, rot, jnp.float64)


def _decoupled(depth, hidden=7, u0=1e-2, l_cap=8):
    stats, task, rot, cs = _problem()
    widths = sweep.widths_for(6, 4, depth, hidden)
    cores = compressed.decoupled_cores(widths, u0, task.u, task.v, rot, l_cap=l_cap, dtype=jnp.float64)
    e0 = float(compressed.loss(cores, cs))
    e_star = float(best_error(stats, rank=min(widths)))
    return cs, cores, e_star + 0.05 * (e0 - e_star)


def _orth(rng, r):
    q, _ = np.linalg.qr(rng.standard_normal((r, r)))
    return q


def _random_balanced(rng, n_out, n, r, n_hidden, l_cap=6):
    """A balanced network of hidden width r with random singular values and a random orthogonal
    basis in every hidden layer (not the canonical one :func:`e2e.balanced_cores` builds)."""
    u, _ = np.linalg.qr(rng.standard_normal((n_out, r)))
    v, _ = np.linalg.qr(rng.standard_normal((n, r)))
    s = np.sort(rng.uniform(0.2, 2.0, r))[::-1]
    nl = n_hidden + 2
    c = np.diag(s ** (1.0 / nl))
    os = [_orth(rng, r) for _ in range(n_hidden + 1)]  # the basis of each hidden layer
    first = os[0] @ c @ v.T
    hidden = [os[i + 1] @ c @ os[i].T for i in range(n_hidden)]
    last = u @ c @ os[-1].T
    stack = np.stack(hidden + [np.eye(r)] * (l_cap - n_hidden))
    cores = compressed.Cores(jnp.asarray(first), jnp.asarray(stack), jnp.asarray(last), jnp.zeros((r, 0)),
                             jnp.asarray(n_hidden, jnp.int32))
    return cores, u @ np.diag(s) @ v.T


@pytest.mark.parametrize("n_out,r,n_hidden", [(4, 4, 0), (4, 4, 3), (5, 3, 1), (4, 2, 6)])
def test_vector_field_is_the_layers_flow_pushed_to_the_map(n_out, r, n_hidden):
    """At a balanced point in random hidden bases, d/dt of the product under the cores' flow
    (jvp of the end-to-end map along -dE/dM) equals the closed field, including rank r < N_out
    (the (I - U U^T) terms) and distinct singular values."""
    rng = np.random.default_rng(n_out * 100 + r * 10 + n_hidden)
    n = 6
    cores, w = _random_balanced(rng, n_out, n, r, n_hidden)
    assert e2e.balance_residual(cores) < 1e-13
    cs = compressed.CStats(jnp.asarray(rng.uniform(0.5, 3.0, n)), jnp.asarray(rng.standard_normal((n_out, n))),
                           jnp.asarray(10.0))
    assert_close(compressed.end_to_end_rotated(cores), w, F64)
    _, g, _ = compressed.loss_and_grads(cores, cs)
    neg = compressed.Cores(-g.first, -g.hidden, -g.last, cores.first_null, cores.n_hidden)

    def prod(f, h, l):
        return compressed.end_to_end_rotated(cores._replace(first=f, hidden=h, last=l))

    _, want = jax.jvp(prod, (cores.first, cores.hidden, cores.last), (neg.first, neg.hidden, neg.last))
    got = e2e.vector_field(jnp.asarray(w), cs.lam, cs.sigma31, jnp.asarray(n_hidden + 2), r)
    assert_close(got, want, F64)


def test_depth_two_field_is_the_gradient():
    rng = np.random.default_rng(3)
    w = jnp.asarray(rng.standard_normal((4, 6)))
    cs = compressed.CStats(jnp.asarray(rng.uniform(0.5, 3.0, 6)), jnp.asarray(rng.standard_normal((4, 6))), jnp.asarray(1.0))
    assert_close(e2e.vector_field(w, cs.lam, cs.sigma31, jnp.asarray(1), 4), -(w * cs.lam - cs.sigma31), F64)


def test_equal_singular_values_take_the_limit():
    """The decoupled start has every singular value equal (d = 0 in K): the field is finite and
    is the layers' flow pushed forward (the K = N e^{N-1} limit)."""
    cs, cores, _ = _decoupled(6)
    w = compressed.end_to_end_rotated(cores)
    _, g, _ = compressed.loss_and_grads(cores, cs)

    def prod(f, h, l):
        return compressed.end_to_end_rotated(cores._replace(first=f, hidden=h, last=l))

    _, want = jax.jvp(prod, (cores.first, cores.hidden, cores.last), (-g.first, -g.hidden, -g.last))
    got = e2e.vector_field(w, cs.lam, cs.sigma31, e2e.n_layers_of(cores), cores.rank)
    assert np.all(np.isfinite(np.asarray(got)))
    assert_close(got, want, F64)


@pytest.mark.parametrize("depth,solver,rtol", [(3, "tsit5", 1e-10), (5, "tsit5", 1e-10), (9, "tsit5", 1e-10),
                                               (3, "rosenbrock_w", 1e-9), (9, "rosenbrock_w", 1e-9)])
def test_t_ct_is_the_layers_flow_t_ct(depth, solver, rtol):
    """Decoupled start, non-white inputs: T_ct of the end-to-end flow equals diffrax on every
    core (:func:`dlnjax.theory.gradient_flow.compressed_learning_time`), one compilation for all
    depths, with either solver."""
    cs, cores, thr = _decoupled(depth)
    want = float(gf.compressed_learning_time_jit(cores, cs, thr, 50.0, gf.FlowOptions(rtol=1e-10, atol=1e-12)).t_ct)
    w0 = compressed.end_to_end_rotated(cores)
    # saves before and after the crossing (after it: not reached, left out of the snapshots)
    path = e2e.solve_path_jit(w0, cs, e2e.n_layers_of(cores), thr, 50.0, jnp.asarray([0.0, 0.25 * want, 0.5 * want, 2 * want]),
                              rank=cores.rank, rtol=rtol, atol=1e-14, solver=solver)
    assert float(path.t_ct) == approx(want, F64, rel=RTOL_TIME[solver])
    ts, ws = path.snapshots()
    assert_close(ts, [0.0, 0.25 * want, 0.5 * want, float(path.t_ct)], F64)
    assert_close(ws[0], w0, F64)
    assert float(e2e.flow_loss(jnp.asarray(ws[-1]), cs)) == approx(thr, F64)


def _point(rng, n_out, n, r, n_layers, at_fixed_point):
    """A random map of rank r and statistics; at_fixed_point: Sigma31 = W Lambda (G = 0 at W)."""
    u, _ = np.linalg.qr(rng.standard_normal((n_out, r)))
    v, _ = np.linalg.qr(rng.standard_normal((n, r)))
    w = jnp.asarray(u @ np.diag(np.sort(rng.uniform(0.3, 2.0, r))[::-1]) @ v.T)
    lam = jnp.asarray(rng.uniform(0.5, 30.0, n))
    s31 = w * lam if at_fixed_point else jnp.asarray(rng.standard_normal((n_out, n)))
    return w, lam, s31


@pytest.mark.parametrize("n_out,r,n_layers", [(4, 4, 5), (5, 3, 4), (4, 2, 1), (4, 4, 1), (3, 3, 40)])
def test_frozen_preconditioner_solves_its_system(n_out, r, n_layers):
    """``apply_j(X) = -P_w(X Lambda)``, with P_w read off the field itself (``-P_w(M)`` is the field
    on the statistics ``Sigma31 = W Lambda - M``), and ``solve`` inverts ``I - tau J``: rank below
    the output width, N = 1 (depth 2: P = I) and a deep N."""
    rng = np.random.default_rng(n_out * 100 + r * 10 + n_layers)
    n = 7
    w, lam, _ = _point(rng, n_out, n, r, n_layers, False)
    nl = jnp.asarray(float(n_layers))
    x = jnp.asarray(rng.standard_normal((n_out, n)))
    tau = 0.37
    solve, apply_j = e2e.frozen_preconditioner(w, lam, nl, r, tau)
    assert_close(apply_j(x), e2e.vector_field(w, lam, w * lam - x * lam, nl, r), F64)
    y = solve(x)
    assert_close(y - tau * apply_j(y), x, F64)


@pytest.mark.parametrize("n_out,r,n_layers", [(4, 4, 5), (5, 3, 4), (3, 3, 40)])
def test_frozen_jacobian_is_the_fields_at_the_fixed_point(n_out, r, n_layers):
    """Where the gradient vanishes, the Jacobian of the field is the frozen one exactly (what J
    leaves out, dP/dW applied to G, is zero there); away from it, it is not (the test can fail)."""
    rng = np.random.default_rng(7 + n_layers)
    n = 6
    x = jnp.asarray(rng.standard_normal((n_out, n)))
    nl = jnp.asarray(float(n_layers))
    for at_fixed, same in ((True, True), (False, False)):
        w, lam, s31 = _point(rng, n_out, n, r, n_layers, at_fixed)
        # the field's jvp moves the rank; J acts within rank r: compare on a tangent of rank-r maps
        u, s, vt = np.linalg.svd(np.asarray(w), full_matrices=False)
        u, vt = u[:, :r], vt[:r]
        xt = jnp.asarray(u @ u.T @ np.asarray(x) + np.asarray(x) @ vt.T @ vt - u @ u.T @ np.asarray(x) @ vt.T @ vt)
        _, jvp = jax.jvp(lambda m: e2e.vector_field(m, lam, s31, nl, r), (w,), (xt,))
        _, apply_j = e2e.frozen_preconditioner(w, lam, nl, r, 0.1)
        close = np.allclose(np.asarray(jvp), np.asarray(apply_j(xt)), rtol=1e-9, atol=1e-9 * float(jnp.max(jnp.abs(jvp))))
        assert close == same


def test_rebuilt_cores_carry_the_loss_and_sharpness_of_the_layers_flow():
    """At a time on the path, the balanced cores rebuilt from the end-to-end map have the loss and
    the top Hessian eigenvalue of the cores the layers' own flow reached (another basis in every
    hidden layer: the Hessian's spectrum is the same); the rebuilt cores are balanced."""
    cs, cores, thr = _decoupled(6)
    t = 0.6 * float(gf.compressed_learning_time_jit(cores, cs, thr, 50.0, gf.FlowOptions(rtol=1e-10, atol=1e-12)).t_ct)
    sol = gf.compressed_solve(cores, cs, jnp.asarray([t]), gf.FlowOptions(rtol=1e-11, atol=1e-13))
    layers = cores._replace(first=sol.weights[0][0], hidden=sol.weights[1][0], last=sol.weights[2][0])
    path = e2e.solve_path_jit(compressed.end_to_end_rotated(cores), cs, e2e.n_layers_of(cores), -1.0, t,
                              jnp.asarray([t]), rank=cores.rank, rtol=1e-11, atol=1e-14)
    rebuilt = e2e.balanced_cores(path.ws[0], cores)
    assert e2e.balance_residual(rebuilt) < 1e-12
    assert e2e.balance_residual(layers) < 1e-7  # the layers' flow kept the balance (to its tolerance)
    assert float(compressed.loss(rebuilt, cs)) == approx(float(compressed.loss(layers, cs)), F64, rel=1e-8)
    lam_rebuilt, _ = compressed._sharpness_jit(rebuilt, cs, compressed._random_direction(rebuilt), iters=200)
    lam_layers, _ = compressed._sharpness_jit(layers, cs, compressed._random_direction(layers), iters=200)
    assert float(lam_rebuilt) == approx(float(lam_layers), F64, rel=1e-7)  # the two flows' states: ~1e-9 apart
    # the same cores in other hidden bases: the same spectrum (to power iteration's rounding)
    rng = np.random.default_rng(0)
    nh = int(cores.n_hidden)  # 3 hidden cores at depth 6: 4 hidden layers, 4 bases
    o = [jnp.asarray(_orth(rng, cores.rank)) for _ in range(nh + 1)]
    h = rebuilt.hidden
    rot = rebuilt._replace(first=o[0] @ rebuilt.first, last=rebuilt.last @ o[nh].T,
                           hidden=h.at[:nh].set(jnp.stack([o[i + 1] @ h[i] @ o[i].T for i in range(nh)])))
    lam_rot, _ = compressed._sharpness_jit(rot, cs, compressed._random_direction(rot), iters=200)
    assert float(lam_rot) == approx(float(lam_rebuilt), F64, rel=RTOL_LAM[F64])
    assert float(compressed.loss(rot, cs)) == approx(float(compressed.loss(rebuilt, cs)), F64)


@pytest.mark.parametrize("solver", e2e.SOLVERS)
def test_limits(solver):
    """A start already below the threshold: T_ct = 0; a threshold below the best error: inf."""
    cs, cores, thr = _decoupled(4)
    w0 = compressed.end_to_end_rotated(cores)
    n = e2e.n_layers_of(cores)
    e0 = float(compressed.loss(cores, cs))
    kw = dict(rank=cores.rank, solver=solver, rtol=1e-6)
    assert float(e2e.solve_path_jit(w0, cs, n, e0 + 1.0, 1.0, jnp.asarray([0.5]), **kw).t_ct) == 0.0
    never = e2e.solve_path_jit(w0, cs, n, -1.0, 1.0, jnp.asarray([0.5]), **kw)
    assert np.isinf(float(never.t_ct))
    ts, _ = never.snapshots()
    assert_close(ts, [0.5, 1.0], F64)


def test_unbalanced_start_is_measured():
    rng = np.random.default_rng(1)
    cores, _ = _random_balanced(rng, 4, 6, 4, 2)
    assert e2e.balance_residual(cores) < 1e-13
    assert e2e.balance_residual(cores._replace(first=1.01 * cores.first)) > 1e-3


def test_unknown_solver_is_refused():
    cs, cores, thr = _decoupled(3)
    with pytest.raises(ValueError, match="rosenbrock_w"):
        e2e.solve_path(compressed.end_to_end_rotated(cores), cs, e2e.n_layers_of(cores), thr, 1.0, jnp.asarray([0.5]),
                       rank=cores.rank, solver="rk4")
