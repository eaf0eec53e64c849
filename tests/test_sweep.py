"""Learning-time sweeps: detector, divergence, vmap vs loop, theory on whitened data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.networks import engines, linear
from dlnjax.measure import headline, sweep
from dlnjax.theory import closed_form as theory
from dlnjax.data import teacher
from dlnjax.data.statistics import Task, stats_from_examples
from helpers import TOL, approx, assert_close

F64 = "float64"  # the tasks, weights and synthetic curves here are float64


def test_first_crossing_on_synthetic_curves():
    t = np.arange(10.0)
    e = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2, 1.0])
    assert sweep.first_crossing(t, e, 5.5) == approx(4.5, F64)
    assert sweep.first_crossing(t, e, 11.0) == 0.0
    assert np.isnan(sweep.first_crossing(t, e, 0.5))
    # non-monotone: the first crossing counts, not a later one
    e2 = np.array([10, 4, 8, 3, 2, 1, 1, 1, 1, 1.0])
    assert sweep.first_crossing(t, e2, 5.0) == approx(5 / 6, F64)


def test_loglog_slope():
    x = np.array([3, 5, 10, 20, 50.0])
    assert headline.loglog_slope(x, 2.0 / x) == approx(-1.0, F64)
    assert headline.loglog_slope(x, [1.0, None, None, None, None]) is None


@pytest.fixture(scope="module")
def white_task():
    ds = teacher([2.0, 1.5, 1.0], 5, 4, seed=0)
    st = stats_from_examples(ds.x, ds.y, dtype=jnp.float64)
    return Task.from_stats(st)


def _decoupled_batch(task, depth, rates, *, hidden=6, u0=1e-2, eps=0.05, key=0, **kw):
    """One decoupled network per rate (vmapped), trained by sweep.run_batch to the relative
    threshold measured from its start (dlnjax.measure.thresholds.Threshold, reference 'initial')."""
    from dlnjax.init import functions as init_fns
    from dlnjax.measure.thresholds import Threshold

    st = task.stats
    widths = sweep.widths_for(st.n_in, st.n_out, depth, hidden)
    w0 = init_fns.decoupled(jax.random.PRNGKey(key), widths, u0, task.u, task.v, dtype=st.sigma11.dtype)
    loss0 = float(linear.loss_from_stats(w0, st))
    thr, _ = Threshold("relative", "initial", eps).resolve_for(task, widths, loss0=loss0)
    batch = tuple(jnp.broadcast_to(w, (len(rates),) + w.shape) for w in w0)
    return sweep.run_batch(st, batch, rates, threshold=thr, **kw), loss0


def test_sweep_equals_loop_and_records_divergence(white_task):
    rates = [0.01, 0.05, 40.0]
    kw = dict(max_steps=3000, chunk_steps=500, record_every=10)
    res, loss0 = _decoupled_batch(white_task, 5, rates, **kw)
    assert list(res.diverged) == [False, False, True]
    assert np.isnan(res.learning_time[2]) and np.all(np.isfinite(res.learning_time[:2]))
    for i, lr in enumerate(rates[:2]):
        one, _ = _decoupled_batch(white_task, 5, [lr], **kw)
        assert one.learning_time[0] == res.learning_time[i]
        assert_close(one.loss[0], res.loss[i][: one.loss.shape[1]], F64, atol=TOL[F64]["atol"] * loss0)
    # the larger of the two learning rates learns faster (t ~ T / lr on whitened data)
    assert res.learning_time[1] < res.learning_time[0]


@pytest.mark.parametrize("depth", [3, 6])
def test_theory_learning_time_matches_simulation_on_whitened_data(white_task, depth):
    """For Sigma11 = I the decoupled theory's error curve is exact up to discretisation."""
    lr = 0.02 * float(theory.optimal_learning_rate(2.0, depth))
    res, _ = _decoupled_batch(white_task, depth, [lr], key=1, max_steps=40000, chunk_steps=1000, record_every=10)
    t_th = sweep.theory_learning_time(white_task, lr, depth, 1e-2, rank=4, eps=0.05, t_max=50000)
    assert np.isfinite(res.learning_time[0])
    assert res.learning_time[0] == pytest.approx(t_th, rel=0.03)  # the discretisation (2% of the optimal rate), not rounding


def test_threshold_kinds(white_task):
    from dlnjax.measure.thresholds import Threshold

    widths = (5, 6, 4)
    thr, e_star = Threshold("relative", "initial", 0.1).resolve_for(white_task, widths, loss0=10.0)
    assert thr == approx(e_star + 0.1 * (10.0 - e_star), F64)
    assert Threshold("absolute", "initial", 0.1, 3.0).resolve_for(white_task, widths, loss0=10.0)[0] == 3.0


def test_run_batch_resumes_exactly_from_a_snapshot():
    """A snapshot handed out after chunk k, passed back as ``resume``, gives the very same run."""
    import jax
    import jax.numpy as jnp

    from dlnjax.init import functions as init_fns
    from dlnjax.measure import sweep
    from dlnjax.data import teacher

    ds = teacher([2.0, 1.5, 1.0], 5, 4, seed=0)
    stats = stats_from_examples(ds.x, ds.y, dtype=jnp.float64)
    task = Task.from_stats(stats)
    widths = (5, 6, 6, 4)
    net = init_fns.small_gaussian(jax.random.PRNGKey(0), widths, 0.1, jnp.float64)
    lrs = [0.005, 0.02, 40.0]  # the last one diverges
    batch = tuple(jnp.broadcast_to(w, (3,) + w.shape) for w in net)
    from dlnjax.measure.thresholds import Threshold

    thr, _ = Threshold("relative", "zero_map", 0.05).resolve_for(task, widths)
    kw = dict(threshold=thr, max_steps=2000, chunk_steps=100, record_every=10)
    snaps = []
    full = sweep.run_batch(stats, batch, lrs, on_chunk=snaps.append, **kw)
    assert len(snaps) >= 3
    again = sweep.run_batch(stats, batch, lrs, resume=snaps[1], **kw)
    np.testing.assert_array_equal(again.loss, full.loss)
    np.testing.assert_array_equal(again.learning_time, full.learning_time)
    np.testing.assert_array_equal(again.diverged, full.diverged)
    assert again.steps_run == full.steps_run and bool(full.diverged[-1])
    # a snapshot of another batch is refused
    other = tuple(jnp.broadcast_to(w, (2,) + w.shape) for w in net)
    with pytest.raises(ValueError, match="does not match"):
        sweep.run_batch(stats, other, lrs[:2], resume=snaps[1], **kw)


def test_batched_map_equals_vmap():
    """The two ways of running a batch of networks give the same trajectories (float64)."""
    import jax
    import jax.numpy as jnp

    from dlnjax.init import functions as init_fns
    from dlnjax.networks import linear
    from dlnjax.measure import sweep
    from dlnjax.data import teacher

    ds = teacher([2.0, 1.5, 1.0], 5, 4, seed=0)
    stats = stats_from_examples(ds.x, ds.y, dtype=jnp.float64)
    net = init_fns.small_gaussian(jax.random.PRNGKey(0), (5, 6, 6, 4), 0.1, jnp.float64)
    states = jax.vmap(lambda w: linear.init_state(w, stats))(tuple(jnp.broadcast_to(w, (3,) + w.shape) for w in net))
    lrs = jnp.asarray([0.005, 0.02, 40.0])
    runner = engines.make_runner(stats, record_every=10, n_records=30)
    sv, rv = sweep.batched(runner, "vmap")(states, lrs, -jnp.inf)
    sm, rm = sweep.batched(runner, "map")(states, lrs, -jnp.inf)
    assert_close(rm.loss, rv.loss, rtol=TOL[F64]["rtol"], equal_nan=True)
    np.testing.assert_array_equal(np.asarray(sm.diverged), np.asarray(sv.diverged))
    assert bool(sm.diverged[-1]) and not bool(sm.diverged[0])
    with pytest.raises(ValueError, match="mode must be"):
        sweep.batched(runner, "pmap")


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_run_batch_drops_finished_members_and_each_member_keeps_its_numbers(precision):
    """Members that crossed or diverged leave the batch (it shrinks to powers of two), and a
    caller's ``stop`` rule halts others. Against ``shrink=False`` (every member stepped to the
    end, as before): the same learning times and divergences, bit for bit, and the records of
    each member while it ran equal to rounding (TOL by dtype: a batched product of another size
    may sum in another order); the cost is less than half."""
    import jax
    import jax.numpy as jnp

    from dlnjax.init import functions as init_fns
    from dlnjax.measure import sweep
    from dlnjax.data import teacher
    from helpers import TOL

    dt = jnp.dtype(precision)
    ds = teacher([2.0, 1.5, 1.0], 5, 4, seed=0)
    stats = stats_from_examples(ds.x, ds.y, dtype=dt)
    net = init_fns.small_gaussian(jax.random.PRNGKey(1), (5, 6, 6, 4), 0.1, dt)
    lrs = np.array([0.004, 0.008, 0.016, 0.032, 0.064, 40.0, 0.002, 0.001])  # 40 diverges, the small ones are slow
    batch = tuple(jnp.broadcast_to(w, (len(lrs),) + w.shape) for w in net)
    kw = dict(threshold=float(0.05 * float(stats.tr33)), max_steps=3000, chunk_steps=100, record_every=10)
    full = sweep.run_batch(stats, batch, lrs, shrink=False, **kw)
    res = sweep.run_batch(stats, batch, lrs, **kw)
    np.testing.assert_array_equal(res.learning_time, full.learning_time)
    np.testing.assert_array_equal(res.diverged, full.diverged)
    assert res.diverged[5] and np.isfinite(res.learning_time[:5]).all() and not res.stopped.any()
    assert res.member_steps < 0.5 * full.member_steps
    ran = ~np.isnan(res.loss)
    assert ran[:5, :10].all() and not ran[4, -1]  # a member's records stop after it crossed
    np.testing.assert_allclose(res.loss[ran], full.loss[:, : res.loss.shape[1]][ran], **TOL[precision])
    # a caller's rule: stop the smallest rate once any member has crossed; recorded as stopped
    stop = lambda t, cross, div, running: running & (lrs == 0.001) & (cross >= 0).any()  # noqa: E731
    halted = sweep.run_batch(stats, batch, lrs, stop=stop, **kw)
    assert halted.stopped.tolist() == [False] * 7 + [True] and np.isnan(halted.learning_time[-1])
    np.testing.assert_array_equal(halted.learning_time[:7], full.learning_time[:7])


def test_rotated_inputs_give_the_original_networks_run():
    """run_batch with ``rotation`` (inputs in Sigma11's eigenbasis, Sigma11 diagonal, the null
    directions dropped: dlnjax.networks.compressed.rotated_full_width) against the same random,
    unaligned starts in the pixel basis, float64, on correlated inputs of rank 5 in 8 dimensions
    (three null directions dropped): the same learning times and divergences, the same loss
    curves to rounding; and the Hessian of the loss has the same non-zero spectrum (the dropped
    coordinates only add zero eigenvalues)."""
    from jax.flatten_util import ravel_pytree

    from dlnjax.init import functions as init_fns
    from dlnjax.networks import compressed

    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 8)) @ rng.standard_normal((8, 8))  # 5 examples: Sigma11 of rank 5, not white
    y = x @ rng.standard_normal((8, 4)) * 0.3 + 0.1 * rng.standard_normal((5, 4))
    stats = stats_from_examples(x, y, dtype=jnp.float64)
    rot = compressed.rotate_inputs(stats.sigma11)
    assert rot.n_kept == 5 and rot.n_dropped == 3
    net = init_fns.small_gaussian(jax.random.PRNGKey(1), (8, 6, 6, 4), 0.3, jnp.float64)
    lam_max = float(np.linalg.eigvalsh(np.asarray(stats.sigma11))[-1])
    lrs = np.array([0.02, 0.05, 0.1, 0.2, 50.0]) / lam_max  # the last diverges
    batch = tuple(jnp.broadcast_to(w, (len(lrs),) + w.shape) for w in net)
    kw = dict(threshold=float(0.3 * linear.loss_from_stats(net, stats)), max_steps=4000, chunk_steps=100, record_every=10)
    plain = sweep.run_batch(stats, batch, lrs, **kw)
    rotated = sweep.run_batch(stats, batch, lrs, rotation=rot, **kw)
    assert np.isfinite(plain.learning_time[:4]).all() and plain.diverged[4]
    np.testing.assert_array_equal(rotated.learning_time, plain.learning_time)
    np.testing.assert_array_equal(rotated.diverged, plain.diverged)
    ran = ~np.isnan(plain.loss[:4])
    assert_close(rotated.loss[:4][ran], plain.loss[:4][ran], F64)
    # the loss's Hessian at the start: the rotated network's spectrum is the original's non-zero part
    rst, rnet = compressed.rotated_full_width(stats, net, rot)

    def spectrum(st, ws):
        flat, unravel = ravel_pytree(tuple(ws))
        h = jax.hessian(lambda p: linear.loss_from_stats(unravel(p), st))(flat)
        return np.sort(np.linalg.eigvalsh(np.asarray(h)))

    a, b = spectrum(stats, net), spectrum(rst, rnet)
    extra = len(a) - len(b)
    assert extra == 3 * 6  # the first layer's null columns
    big = np.abs(a) > 1e-8 * np.abs(a).max()
    assert_close(np.sort(a[big]), np.sort(b[np.abs(b) > 1e-8 * np.abs(a).max()]), F64, rtol=1e-9)


def _small_problem(depth: int, n: int = 8):
    from dlnjax.init import functions as init_fns

    ds = teacher([2.0, 1.5, 1.0], 5, 4, seed=0)
    stats = stats_from_examples(ds.x, ds.y, dtype=jnp.float64)
    net = init_fns.small_gaussian(jax.random.PRNGKey(depth), (5,) + (6,) * (depth - 2) + (4,), 0.1, jnp.float64)
    return stats, tuple(jnp.broadcast_to(w, (n,) + w.shape) for w in net)


def test_stacked_layout_gives_the_tuple_layouts_runs_with_one_compilation_for_all_depths():
    """The stacked layout (the hidden layers as one stack with a traced count, linear.Stacked) on
    XLA's loops against the tuple of layers, float64, depths 3, 4 and 6 in one capacity, through
    the sweeps' jitted batch step (sweep.stacked_step): the same crossings, divergences, weights
    and loss records, bit for bit (the same products in the same order); and the three depths
    share one compiled program."""
    lrs = jnp.asarray([0.004, 0.008, 0.016, 0.032, 0.064, 40.0, 0.002, 0.001])  # 40 diverges
    key = (10, 10, False, linear.StackedKernels)
    sweep._STACKED_STEPS.pop(key, None)
    step = sweep.stacked_step(10, 10, False, linear.StackedKernels)
    crossed = 0
    for depth in (3, 4, 6):
        stats, batch = _small_problem(depth)
        thr = jnp.asarray(0.05 * float(stats.tr33))
        states = jax.vmap(lambda w: linear.init_state(w, stats))(batch)
        tup = jax.jit(jax.vmap(engines.make_runner(stats, record_every=10, n_records=10, engine="xla"),
                               in_axes=(0, 0, None)))
        stacked, n = linear.stack_layers(batch, 4)
        s_stk, s_tup = states._replace(weights=stacked), states
        for _ in range(20):  # 2000 steps in chunks of 100, as run_batch runs them
            s_tup, r_tup = tup(s_tup, lrs, thr)
            s_stk, r_stk = step(s_stk, lrs, thr, jnp.int32(n), stats)
            np.testing.assert_array_equal(r_stk.loss, r_tup.loss)
        for x, y in zip(linear.unstack_layers(s_stk.weights, n), s_tup.weights):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(s_stk.cross_step, s_tup.cross_step)
        np.testing.assert_array_equal(s_stk.diverged, s_tup.diverged)
        assert bool(s_tup.diverged[5])
        crossed += int((np.asarray(s_tup.cross_step) >= 0).sum())
    assert crossed >= 10  # the comparison covers members that crossed, at every depth
    assert step._cache_size() == 1


def test_stack_layers_round_trip_and_refusals():
    stats, batch = _small_problem(5, n=2)
    stacked, n_hidden = linear.stack_layers(batch, 4)
    assert n_hidden == 2 and stacked.hidden.shape == (2, 4, 6, 6)
    np.testing.assert_array_equal(stacked.hidden[:, 2:], jnp.broadcast_to(jnp.eye(6), (2, 2, 6, 6)))  # identity padding
    for a, b in zip(linear.unstack_layers(stacked, n_hidden), batch):
        np.testing.assert_array_equal(a, b)
    one = tuple(w[0] for w in batch)
    kern = linear.StackedKernels(n_hidden)
    np.testing.assert_allclose(kern.product(linear.stack_layers(one, 4)[0]), linear.product(one), rtol=1e-13)
    with pytest.raises(ValueError, match="exceed the stack's capacity 1"):
        linear.stack_layers(batch, 1)
    assert not linear.stackable((jnp.zeros((6, 5)), jnp.zeros((7, 6)), jnp.zeros((4, 7))))
    with pytest.raises(ValueError, match="equal square hidden layers"):
        linear.stack_layers((jnp.zeros((6, 5)), jnp.zeros((7, 6)), jnp.zeros((4, 7))), 4)


def test_stack_capacity_pads_small_layers_to_the_sweep_and_wide_ones_per_power_of_two():
    assert sweep.stack_capacity(0, 29, 4096) == 29  # 32 x 32 float32 layers: one program for depths 3..32
    assert sweep.stack_capacity(29, 29, 4096) == 29
    wide = 4_000_000  # 1000 x 1000 float32
    assert [sweep.stack_capacity(n, 97, wide) for n in (0, 1, 3, 5, 9, 70, 97)] == [1, 1, 4, 8, 16, 97, 97]
    assert sweep.stack_capacity(3, 97, wide, pad_bytes=10**12) == 97
