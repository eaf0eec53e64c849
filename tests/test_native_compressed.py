"""The fused native runner of the compressed engine (dlnjax.networks.kernels.native.compressed) against the XLA
runner (dlnjax.networks.compressed.make_member_runner).

The runner is compiled on first use with the system C++ compiler; where there is none (or the
build fails) these tests are skipped and say why. Float64 results agree with XLA to rounding: the
n-side sums are taken in another order, so not bit for bit, but to ~1e-12 relative over the runs
below (rates kept off the edge of stability, where rounding differences grow step by step);
step counts, crossing, divergence and spikes exactly.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.networks import compressed as C
from dlnjax.networks.kernels.native import compressed as native_compressed
from dlnjax.data.statistics import Stats
from helpers import TOL, TOL_ULPS

needs_native = pytest.mark.skipif(
    jax.default_backend() != "cpu" or not native_compressed.available(),
    reason="fused native compressed runner not available here: "
    + (native_compressed.reason() if jax.default_backend() == "cpu" else "not a CPU backend"),
)

# relative to each array's scale (see _close): float64 to a few hundred ulps (the n-side sums in
# another order, ~1e-12 over these runs, see above), float32 to TOL's
RTOL = {"float64": TOL_ULPS["float64"]["rtol"], "float32": TOL["float32"]["rtol"]}
N_REC = 12


@functools.lru_cache(maxsize=None)
def _problem(depth, dtype, seed=0, n_in=40, n_out=6, p=60, l_cap=6):
    """A non-white problem with null input directions (4 constant-zero pixels and one linear
    dependency are dropped by rotate_inputs), a decoupled start of rank 6 and its readout."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p, n_in)) * np.linspace(2.0, 0.3, n_in)
    x[:, :4] = 0.0
    x[:, 4] = x[:, 5] - 0.5 * x[:, 6]
    m = rng.standard_normal((n_in, n_out))
    y = x @ m / np.sqrt(n_in) + 0.1 * rng.standard_normal((p, n_out))
    st = Stats(x.T @ x / p, y.T @ x / p, np.sum(y * y) / p)
    rot = C.rotate_inputs(st.sigma11)
    assert rot.n_dropped == 5
    cs = C.compress_stats(st, rot, dtype)
    u, _, vt = np.linalg.svd(np.asarray(st.sigma31), full_matrices=True)
    widths = (n_in,) + (8,) * (depth - 2) + (n_out,)
    cores = C.decoupled_cores(widths, 0.05, u, vt.T, rot, l_cap=l_cap, dtype=dtype)
    r = cores.rank
    readout = (jnp.asarray(u[:, :r], dtype), jnp.asarray(rot.q.T @ vt.T[:, :r], dtype))
    return cs, cores, readout


@functools.lru_cache(maxsize=None)
def _runners(depth, dtype, record_every=5):
    """The XLA and the native runner of ``_problem(depth, dtype)``, jitted (compiled once per module)."""
    cs, _, readout = _problem(depth, dtype)
    kw = dict(record_every=record_every, last_trained=depth > 2, readout=readout)
    return jax.jit(C.make_member_runner(cs, **kw)), jax.jit(native_compressed.make_member_runner(cs, **kw))


def _close(a, b, rtol, what):
    """Equal NaN patterns; elsewhere |a - b| <= rtol * max |b| (relative to the array's scale)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, what
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
    fin = ~np.isnan(b)
    scale = max(float(np.max(np.abs(b[fin]), initial=0.0)), 1e-300)
    err = float(np.max(np.abs(a[fin] - b[fin]), initial=0.0)) / scale
    assert err <= rtol, f"{what}: relative difference {err:.3g} > {rtol:.1g}"


def _assert_same(sn, sx, dtype, n_hidden):
    rtol = RTOL[dtype]
    for f in ("step", "cross_step", "diverged", "diverge_step", "spikes", "first_spike"):
        np.testing.assert_array_equal(np.asarray(getattr(sn, f)), np.asarray(getattr(sx, f)), err_msg=f)
    _close(sn.rec_loss, sx.rec_loss, rtol, "rec_loss")
    _close(sn.rec_modes, sx.rec_modes, rtol, "rec_modes")
    _close(sn.loss_prev, sx.loss_prev, rtol, "loss_prev")
    _close(sn.loss0, sx.loss0, 0.0, "loss0")
    # a rise is a difference of two nearly equal losses: it carries their rounding, not its own
    _close(sn.max_rise, sx.max_rise, 1e3 * rtol, "max_rise")
    _close(sn.cores.first, sx.cores.first, rtol, "first")
    _close(sn.cores.last, sx.cores.last, rtol, "last")
    _close(sn.cores.hidden[..., :n_hidden, :, :], sx.cores.hidden[..., :n_hidden, :, :], rtol, "hidden")
    # hidden cores beyond n_hidden are never touched
    np.testing.assert_array_equal(np.asarray(sn.cores.hidden[..., n_hidden:, :, :]), np.asarray(sx.cores.hidden[..., n_hidden:, :, :]))
    assert sn.cores.n_hidden.dtype == sx.cores.n_hidden.dtype


# (rate, limit, what it must do): one that hits its limit, one that crosses, one that diverges
CASES = {2: [(0.05, 50, "limit"), (0.2, 200, "cross"), (1.0, 200, "diverge")],
         3: [(0.05, 50, "limit"), (0.2, 200, "cross"), (1.0, 200, "diverge")],
         7: [(0.05, 50, "limit"), (0.1, 400, "cross"), (1.0, 200, "diverge")]}


@needs_native
@pytest.mark.parametrize("depth", [2, 3, 7])
def test_native_runner_equals_xla_float64(depth):
    dtype = "float64"
    cs, cores, readout = _problem(depth, jnp.float64)
    n_hidden = int(cores.n_hidden)
    assert n_hidden == max(depth - 3, 0)
    st0 = C.init_member(cores, cs, N_REC, cores.rank)
    threshold = 0.01 * float(st0.loss0)
    rx, rn = _runners(depth, jnp.float64)
    for lr, limit, kind in CASES[depth]:
        sx = rx(st0, lr, threshold, limit)
        sn = rn(st0, lr, threshold, limit)
        _assert_same(sn, sx, dtype, n_hidden)
        if kind == "limit":
            assert int(sx.step) == limit and int(sx.cross_step) == -1 and not bool(sx.diverged)
            assert np.isnan(np.asarray(sx.rec_loss)[-1])  # not every record reached
        elif kind == "cross":
            assert int(sx.cross_step) > 0 and int(sx.step) == int(sx.cross_step) < limit
        else:
            assert bool(sx.diverged) and int(sx.diverge_step) == int(sx.step) and int(sx.spikes) > 0
            # the step at which the member stops leaves its cores untouched
            pre = rn(st0, lr, threshold, int(sx.step))
            np.testing.assert_array_equal(np.asarray(sn.cores.first), np.asarray(pre.cores.first))
            np.testing.assert_array_equal(np.asarray(sn.cores.hidden), np.asarray(pre.cores.hidden))
            np.testing.assert_array_equal(np.asarray(sn.cores.last), np.asarray(pre.cores.last))
        assert np.all(np.isfinite(np.asarray(sn.rec_modes)[0]))
    # a run continued from a state equals one run straight through
    half = rn(st0, 0.05, threshold, 23)
    np.testing.assert_array_equal(np.asarray(rn(half, 0.05, threshold, 60).cores.first), np.asarray(rn(st0, 0.05, threshold, 60).cores.first))


@needs_native
def test_native_runner_vmapped_batch():
    """A batch of three rates (limit, crossing, divergence) under vmap, in one call: each member
    equals the XLA runner's run of that member, and (bit for bit) the native run of it alone."""
    depth = 7
    cs, cores, readout = _problem(depth, jnp.float64)
    st0 = C.init_member(cores, cs, N_REC, cores.rank)
    threshold = 0.01 * float(st0.loss0)
    lrs = [0.05, 0.1, 1.0]
    batch = jax.tree_util.tree_map(lambda a: jnp.stack([a] * 3), st0)
    kw = dict(record_every=5, last_trained=True, readout=readout)
    vn = jax.jit(jax.vmap(native_compressed.make_member_runner(cs, **kw), in_axes=(0, 0, None, None)))
    bn = vn(batch, jnp.asarray(lrs), threshold, 150)
    assert bn.cores.hidden.shape == (3,) + cores.hidden.shape
    rx, rn = _runners(depth, jnp.float64)
    kinds = []
    for i, lr in enumerate(lrs):
        member = jax.tree_util.tree_map(lambda a: a[i], bn)
        sx = rx(st0, lr, threshold, 150)
        _assert_same(member, sx, "float64", int(cores.n_hidden))
        alone = rn(st0, lr, threshold, 150)
        for a, b in zip(jax.tree_util.tree_leaves(member), jax.tree_util.tree_leaves(alone)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        kinds.append("cross" if int(sx.cross_step) >= 0 else "diverge" if bool(sx.diverged) else "limit")
    assert kinds == ["limit", "cross", "diverge"]


@needs_native
@pytest.mark.parametrize("depth", [7])
def test_native_runner_float32(depth):
    cs, cores, readout = _problem(depth, jnp.float32)
    st0 = C.init_member(cores, cs, N_REC, cores.rank)
    assert st0.loss0.dtype == jnp.float32
    threshold = 0.01 * float(st0.loss0)
    rx, rn = _runners(depth, jnp.float32)
    for lr, limit, _ in CASES[depth][:2]:
        sx = rx(st0, lr, threshold, limit)
        sn = rn(st0, lr, threshold, limit)
        assert sn.cores.first.dtype == jnp.float32 and sn.rec_loss.dtype == jnp.float32
        _assert_same(sn, sx, "float32", int(cores.n_hidden))


@needs_native
def test_native_runner_without_readout_and_done_state():
    cs, cores, _ = _problem(3, jnp.float64)
    st0 = C.init_member(cores, cs, N_REC, 0)
    threshold = 0.01 * float(st0.loss0)
    kw = dict(record_every=7, readout=None)
    sx = jax.jit(C.make_member_runner(cs, **kw))(st0, 0.2, threshold, 300)
    rn = jax.jit(native_compressed.make_member_runner(cs, **kw))
    sn = rn(st0, 0.2, threshold, 300)
    _assert_same(sn, sx, "float64", 0)
    assert sn.rec_modes.shape == (N_REC, 0)
    # a member that is done is returned as it is
    again = rn(sn, 0.2, threshold, 300)
    for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(sn)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fallback_reason_is_a_string():
    assert isinstance(native_compressed.reason(), str)
    assert native_compressed.available() == (native_compressed.reason() == "ok")
