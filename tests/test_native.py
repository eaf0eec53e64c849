"""The fused native CPU kernels (dlnjax.networks.kernels.native) against the XLA path of dlnjax.networks.linear.

The kernels are compiled on first use with the system C++ compiler. Where there is none these
tests are skipped, and say so, and the fallback test below still checks that ``engine='auto'``
then runs on XLA and that ``engine='native'`` fails with the reason.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.init import functions as init_fns
from dlnjax.networks import engines, linear
from dlnjax.networks.kernels import native
from dlnjax.data import teacher
from helpers import TOL, assert_close
from dlnjax.data.statistics import stats_from_examples

F64 = "float64"
# one device vs four, float64, 200 steps per member: rounding compounded over a run (as for the
# apps in test_devices), kept at its size since the slow tier alone runs it
SHARDED_RTOL = {"float64": 1e-9}

needs_native = pytest.mark.skipif(
    jax.default_backend() != "cpu" or not native.available(),
    reason=f"fused native kernels not available here: {native.reason() if jax.default_backend() == 'cpu' else 'not a CPU backend'}",
)


def _problem(widths, dtype, seed=0, p=None):
    ds = teacher([3.0, 2.0, 1.0][: min(3, widths[-1])], widths[0], widths[-1], n_examples=p or max(64, widths[0]), noise_std=0.1, seed=seed)
    st = stats_from_examples(ds.x, ds.y, dtype=jnp.float64).astype(dtype)
    w = init_fns.scaled_gaussian(jax.random.PRNGKey(seed + 1), widths, gain=0.9, dtype=dtype)
    return st, tuple(w)


# widths chosen to hit every code path: vector tails (not multiples of 16 or 8), rows not a
# multiple of 4, layers taller than one row group / wider than one column block, r = 1 and r = 16,
# a wide-input first layer, two layers only
WIDTHS = [
    (7, 5, 3),
    (37, 33, 19, 10),
    (300, 270, 300, 10),
    (50, 40, 1),
    (64, 48, 16),
    (784, 130, 129, 10),
    (9, 4, 2),
]


# main tier: every width once, the dtypes alternating (each code path above runs, in both
# precisions across the list); slow tier: the rest of the widths x dtypes grid
FUSED_CASES = [pytest.param(w, d, id=f"{d}-{'x'.join(map(str, w))}",
                            marks=() if ((i % 2 == 0) == (d == "float64") and (w, d) != ((37, 33, 19, 10), "float32"))
                            else pytest.mark.slow)
               for i, w in enumerate(WIDTHS) for d in ("float64", "float32")]


@needs_native
@pytest.mark.parametrize("widths,dtype", FUSED_CASES)
def test_fused_passes_equal_the_xla_factors(widths, dtype):
    st, w = _problem(widths, jnp.dtype(dtype))
    loss_x, left, right = linear._factors(w, st)
    loss_n, ps, g = jax.jit(lambda w, st: linear._fused_factors(native, w, st))(w, st)
    # P_l = W_N ... W_l against the XLA product, layer by layer
    full = native.top_down(w)
    assert_close(full[0], linear.product(w), dtype=dtype)
    for l in range(1, len(w) - 1):
        assert_close(full[l], linear.product(w[l:]), dtype=dtype)
    assert_close(float(loss_n), float(loss_x), rtol=TOL[dtype]["rtol"])
    lr = jnp.asarray(0.01, w[0].dtype)
    new_x = [linear._update(wi, lr, a, b) for wi, a, b in zip(w, left, right)]
    new_n = jax.jit(native.bottom_up)(lr, g, ps, w)
    for a, b, w0 in zip(new_n, new_x, w):
        assert_close(a, b, dtype=dtype)
        assert float(jnp.max(jnp.abs(b - w0))) > 0  # the update is not a no-op
    # the kernel leaves its inputs alone when they are not donated
    st2, w2 = _problem(widths, jnp.dtype(dtype))
    for a, b in zip(w, w2):
        np.testing.assert_array_equal(a, b)


@needs_native
@pytest.mark.parametrize("widths", [(37, 33, 19, 10), (300, 270, 300, 10)])
def test_native_training_equals_xla_training(widths):
    """Many steps through make_runner: the two engines follow the same trajectory (float64)."""
    st, w = _problem(widths, jnp.float64)
    lr = 0.05 / float(jnp.linalg.eigvalsh(st.sigma11)[-1])
    out = {}
    for engine in ("xla", "native"):
        state, rec = jax.jit(lambda w, lr: engines.train(w, st, lr, num_steps=200, record_every=20, engine=engine))(w, lr)
        out[engine] = (state, rec)
    (sx, rx), (sn, rn) = out["xla"], out["native"]
    assert np.all(np.isfinite(rx.loss)) and float(rx.loss[-1]) < 0.9 * float(rx.loss[0])  # it learned something
    # E is formed as 1/2 tr S33 - tr(W S31^T) + 1/2 tr(W S11 W^T): absolute rounding ~ eps * E(0)
    assert_close(rn.loss, rx.loss, F64, atol=TOL[F64]["atol"] * float(rx.loss[0]))
    for a, b in zip(sn.weights, sx.weights):
        assert_close(a, b, F64)


@needs_native
@pytest.mark.parametrize("members", [3, 4])
def test_vmapped_native_equals_a_loop_and_is_deterministic(members):
    """Under vmap the kernel loops over the members itself: bit-identical to one call per
    member, and to a second run (no dependence on threads or scheduling). On 2 threads, 4
    members run one whole member per thread and 3 run one after another, each split over the
    threads: both orders must give the single-member numbers."""
    widths = (130, 129, 70, 10)
    st, _ = _problem(widths, jnp.float64)
    ws = [tuple(init_fns.scaled_gaussian(jax.random.PRNGKey(s), widths, gain=0.9, dtype=jnp.float64)) for s in range(members)]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ws)
    lrs = jnp.array([1e-3, 2e-3, 0.0, 1.5e-3][:members])

    def run(w, lr):
        return engines.train(w, st, lr, num_steps=30, record_every=10, engine="native")[0].weights

    batched = jax.jit(jax.vmap(run))(stacked, lrs)
    again = jax.jit(jax.vmap(run))(stacked, lrs)
    for i in range(members):
        one = jax.jit(run)(ws[i], lrs[i])
        for l in range(len(widths) - 1):
            np.testing.assert_array_equal(batched[l][i], one[l])
            np.testing.assert_array_equal(batched[l][i], again[l][i])
    # a zero rate leaves the weights exactly where they were (as a diverged member's do)
    for l in range(len(widths) - 1):
        np.testing.assert_array_equal(batched[l][2], ws[2][l])
    # and vmapped XLA agrees to rounding
    xla = jax.jit(jax.vmap(lambda w, lr: engines.train(w, st, lr, num_steps=30, record_every=10, engine="xla")[0].weights))(
        stacked, lrs
    )
    for a, b in zip(batched, xla):
        assert_close(a, b, F64)


@needs_native
def test_divergence_is_recorded_on_the_native_engine():
    st, w = _problem((37, 33, 19, 10), jnp.float64)
    run = engines.make_runner(st, record_every=10, n_records=5, engine="native")
    state = linear.init_state(w, st)
    final, rec = jax.jit(run)(state, 50.0)
    assert bool(final.diverged)
    assert int(final.diverge_step) >= 0
    assert np.isnan(np.asarray(rec.loss)[-1])


def test_engine_choice_and_fallback(monkeypatch):
    st, w = _problem((37, 33, 19, 10), jnp.float64)
    with pytest.raises(ValueError, match="engine must be one of auto, xla, native"):
        engines.make_runner(st, record_every=1, n_records=1, engine="fast")
    monkeypatch.setenv("DLNJAX_ENGINE", "gpu")
    with pytest.raises(ValueError, match="DLNJAX_ENGINE must be one of"):
        engines.make_runner(st, record_every=1, n_records=1)
    monkeypatch.delenv("DLNJAX_ENGINE")
    # small networks stay on XLA under 'auto'; shapes the kernels do not handle are refused by name
    assert not engines.fused("auto", w)
    assert not engines.fused("xla", w)
    wide_out = (jnp.zeros((20, 5)), jnp.zeros((17, 20)))
    with pytest.raises(ValueError, match="1..16 output units"):
        engines.fused("native", wide_out)
    # when the kernels cannot be built, 'auto' falls back to XLA and 'native' says why
    monkeypatch.setattr(native, "_state", {"tried": True, "ok": False, "reason": "no C++ compiler found (test)", "path": None})
    big = [jax.ShapeDtypeStruct((1000, 1000), jnp.float32), jax.ShapeDtypeStruct((10, 1000), jnp.float32)]
    assert not engines.fused("auto", big)
    with pytest.raises(RuntimeError, match="no C.. compiler found"):
        engines.fused("native", big)


@needs_native
def test_auto_picks_native_for_large_networks_and_sweeps_vmap_them():
    from dlnjax.measure import sweep

    big = [jax.ShapeDtypeStruct((1000, 784), jnp.float32), jax.ShapeDtypeStruct((10, 1000), jnp.float32)]
    assert engines.fused("auto", big)
    assert not engines.fused("xla", big)
    stacked = [jax.ShapeDtypeStruct((4,) + s.shape, s.dtype) for s in big]
    assert [s.shape for s in sweep.member_shapes(stacked)] == [(1000, 784), (10, 1000)]


def native_sharded_batch():
    """A batch of 6 rates on the native engine (picked by 'auto'), over every device, float64."""
    from dlnjax.measure import sweep

    assert jax.config.jax_enable_x64
    ds = teacher([3.0, 2.0, 1.0], 130, 10, n_examples=200, noise_std=0.1, seed=0)
    st = stats_from_examples(ds.x, ds.y, dtype=jnp.float64)
    w0 = init_fns.scaled_gaussian(jax.random.PRNGKey(1), (130, 129, 128, 10), gain=0.9, dtype=jnp.float64)
    batch = tuple(jnp.broadcast_to(w, (6,) + w.shape) for w in w0)
    assert engines.fused("auto", sweep.member_shapes(batch))
    res = sweep.run_batch(st, batch, np.geomspace(1e-3, 1e-1, 6), threshold=1.0, max_steps=200, chunk_steps=50, record_every=10)
    return {"devices": jax.local_device_count(), "loss": res.loss.tolist()}


SHARDED_SCRIPT = """
import json, sys
sys.path.insert(0, "tests")
import jax
jax.config.update("jax_enable_x64", True)
from test_native import native_sharded_batch
print(json.dumps(native_sharded_batch()))
"""


@pytest.mark.slow
@needs_native
def test_native_batch_sharded_over_four_devices_equals_one_device(monkeypatch):
    """The FFI targets are batch-partitionable: a batch spread over 4 CPU devices (a new
    interpreter) runs each device's members there and gives the one-device numbers (this
    process, float64)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    monkeypatch.setenv("DLNJAX_ENGINE", "auto")
    one = native_sharded_batch()
    assert one["devices"] == 1
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", DLNJAX_ENGINE="auto")
    r = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], cwd=Path(__file__).parents[1], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    four = json.loads(r.stdout.strip().splitlines()[-1])
    assert four["devices"] == 4
    assert_close(np.asarray(four["loss"]), np.asarray(one["loss"]), rtol=SHARDED_RTOL[F64])


@needs_native
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_stacked_layout_on_the_native_kernels_equals_the_tuple_of_layers(dtype):
    """The stacked layout's native kernels (depths 3, 4 and 6 in a stack of 4, the layer count
    traced) against the native kernels on the tuple of layers: the same loops in the same order,
    so the same bits, every weight and every recorded loss over 60 steps (rates that move the
    loss, one that diverges); the stack's unused layers untouched; and against the stacked XLA
    step to the dtype's tolerance."""
    from dlnjax.networks.engines.native import NativeStacked

    dt = jnp.dtype(dtype)
    lrs = jnp.asarray([1e-3, 3e-3, 1e2], dt)
    for depth in (3, 4, 6):
        st, w = _problem((9,) + (7,) * (depth - 2) + (3,), dt, seed=depth)
        batch = tuple(jnp.broadcast_to(x, (3,) + x.shape) for x in w)
        states = jax.vmap(lambda ws: linear.init_state(ws, st))(batch)
        tup = jax.jit(jax.vmap(engines.make_runner(st, record_every=5, n_records=12, engine="native"), in_axes=(0, 0, None)))
        a, ra = tup(states, lrs, -jnp.inf)
        stacked, n = linear.stack_layers(batch, 4)
        stk = linear.make_stacked_runner(st, record_every=5, n_records=12, kernels=NativeStacked)
        b, rb = jax.jit(jax.vmap(stk, in_axes=(0, 0, None, None)))(states._replace(weights=stacked), lrs, -jnp.inf, n)
        for x, y in zip(a.weights, linear.unstack_layers(b.weights, n)):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(ra.loss, rb.loss)
        assert bool(a.diverged[2]) and not bool(a.diverged[0])
        assert float(ra.loss[1, -1]) < 0.9 * float(ra.loss[1, 0])  # the loss moved
        np.testing.assert_array_equal(b.weights.hidden[:, n:], jnp.broadcast_to(jnp.eye(7, dtype=dt), (3, 4 - n, 7, 7)))
        xla = jax.jit(jax.vmap(linear.make_stacked_runner(st, record_every=5, n_records=12), in_axes=(0, 0, None, None)))
        c, rc = xla(states._replace(weights=stacked), lrs, -jnp.inf, n)
        assert_close(rc.loss[:2], rb.loss[:2], dtype=dtype)
        for x, y in zip(jax.tree_util.tree_leaves(c.weights), jax.tree_util.tree_leaves(b.weights)):
            assert_close(x[:2], y[:2], dtype=dtype)


def test_auto_keeps_a_program_per_depth_without_the_native_kernels(monkeypatch):
    """``auto`` runs the stacked layout on the native kernels; without them it has none, nor has
    ``xla`` (run_batch then keeps the tuple of layers, faster than XLA's loops on a CPU and a GPU),
    and the run gives the numbers of the tuple layout."""
    from dlnjax.measure import sweep

    shapes = [jax.ShapeDtypeStruct((7, 9), jnp.float64), jax.ShapeDtypeStruct((7, 7), jnp.float64),
              jax.ShapeDtypeStruct((3, 7), jnp.float64)]
    with pytest.raises(ValueError, match="no kernels for the stacked layout"):
        engines.get("xla").stacked_kernels(shapes)
    monkeypatch.setattr(native, "available", lambda: False)
    with pytest.raises(ValueError, match="on the native kernels only"):
        engines.get("auto").stacked_kernels(shapes)
    st, w = _problem((9, 7, 7, 3), jnp.dtype("float64"))
    batch = tuple(jnp.broadcast_to(x, (2,) + x.shape) for x in w)
    kw = dict(threshold=float(0.5 * float(linear.loss_from_stats(w, st))), max_steps=400, chunk_steps=100,
              record_every=10, engine="auto")
    snaps = []
    a = sweep.run_batch(st, batch, [1e-3, 3e-3], capacity=5, on_chunk=snaps.append, **kw)
    assert int(snaps[0]["layout"]) == 0  # the tuple of layers
    b = sweep.run_batch(st, batch, [1e-3, 3e-3], **kw)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert np.isfinite(a.learning_time).all()


@needs_native
def test_stacked_sweep_on_the_native_kernels_resumes_exactly_and_refuses_the_other_layout():
    """run_batch with ``capacity`` on the native kernels: the same learning times and records as
    the tuple of layers (bit for bit: the same row loops), an exact resume from a snapshot, and a
    snapshot of the other layout refused."""
    from dlnjax.measure import sweep

    st, w = _problem((9, 7, 7, 7, 3), jnp.dtype("float64"))
    batch = tuple(jnp.broadcast_to(x, (3,) + x.shape) for x in w)
    lrs = [1e-3, 3e-3, 1e2]  # the last diverges
    kw = dict(threshold=float(0.5 * float(linear.loss_from_stats(w, st))), max_steps=1500, chunk_steps=100,
              record_every=10, engine="native")
    snaps = []
    full = sweep.run_batch(st, batch, lrs, on_chunk=snaps.append, capacity=4, **kw)
    assert int(snaps[0]["layout"]) == 4
    tup = sweep.run_batch(st, batch, lrs, **kw)
    np.testing.assert_array_equal(full.loss, tup.loss)
    np.testing.assert_array_equal(full.learning_time, tup.learning_time)
    assert np.isfinite(full.learning_time[:2]).all() and bool(full.diverged[2])
    again = sweep.run_batch(st, batch, lrs, resume=snaps[2], capacity=4, **kw)
    np.testing.assert_array_equal(again.loss, full.loss)
    with pytest.raises(sweep.SnapshotMismatch, match="does not match"):
        sweep.run_batch(st, batch, lrs, resume=snaps[2], **kw)  # a stacked snapshot, a tuple run
