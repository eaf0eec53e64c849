"""The Pallas (Triton) GPU kernels of dlnjax.networks.kernels.pallas against the XLA path of dlnjax.networks.linear.

Without a GPU, Pallas runs the same kernel bodies in its interpreter (``interpret=True``), so
these tests check the kernels' arithmetic, masking and bookkeeping on any machine, and check
separately that they lower to Triton for CUDA (what a GPU would compile). Their speed is for
``benchmarks/linear_step.py`` on a GPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.init import functions as init_fns
from dlnjax.networks import engines, linear
from dlnjax.networks.kernels import pallas as pallas_step
from dlnjax.data import teacher
from helpers import TOL, assert_close
from dlnjax.data.statistics import stats_from_examples

F64 = "float64"


def _problem(widths, dtype, seed=0):
    ds = teacher([3.0, 2.0, 1.0][: min(3, widths[-1])], widths[0], widths[-1], n_examples=max(64, widths[0]), noise_std=0.1, seed=seed)
    st = stats_from_examples(ds.x, ds.y, dtype=jnp.float64).astype(dtype)
    w = init_fns.scaled_gaussian(jax.random.PRNGKey(seed + 1), widths, gain=0.9, dtype=dtype)
    return st, tuple(w)


# rows and columns not multiples of the tiles (32 / 128 / 64), layers over several tiles both
# ways, r = 1 and r = 16, two layers only
WIDTHS = [(7, 5, 3), (37, 33, 19, 10), (300, 150, 70, 10), (50, 40, 1), (64, 48, 16), (9, 4, 2)]


@pytest.fixture
def interpreted(monkeypatch):
    monkeypatch.setenv("DLNJAX_PALLAS_INTERPRET", "1")


# main tier: every width once, the dtypes alternating (each case above runs, in both precisions
# across the list); slow tier: the rest of the widths x dtypes grid
PASS_CASES = [pytest.param(w, d, id=f"{d}-{'x'.join(map(str, w))}",
                           marks=() if (i % 2 == 0) == (d == "float64") else pytest.mark.slow)
              for i, w in enumerate(WIDTHS) for d in ("float64", "float32")]


@pytest.mark.parametrize("widths,dtype", PASS_CASES)
def test_pallas_passes_equal_the_xla_factors(widths, dtype):
    st, w = _problem(widths, jnp.dtype(dtype))
    loss_x, left, right = linear._factors(w, st)
    full = jax.jit(lambda w: pallas_step.top_down(w, interpret=True))(w)
    assert_close(full[0], linear.product(w), dtype=dtype)
    for l in range(1, len(w) - 1):
        assert_close(full[l], linear.product(w[l:]), dtype=dtype)
    ws11 = full[0] @ st.sigma11
    g = ws11 - st.sigma31
    assert_close(float(linear._loss(full[0], ws11, st)), float(loss_x), rtol=TOL[dtype]["rtol"])
    lr = jnp.asarray(0.01, w[0].dtype)
    new_x = [linear._update(wi, lr, a, b) for wi, a, b in zip(w, left, right)]
    new_p = jax.jit(lambda lr, g, ps, w: pallas_step.bottom_up(lr, g, ps, w, interpret=True))(lr, g, full[1:], w)
    for a, b, w0 in zip(new_p, new_x, w):
        assert a.dtype == w0.dtype and a.shape == w0.shape
        assert_close(a, b, dtype=dtype)
        assert float(jnp.max(jnp.abs(b - w0))) > 0  # the update is not a no-op


def test_pallas_training_equals_xla_training_vmapped_with_a_diverging_rate(interpreted):
    """make_runner on the Pallas engine, the rates vmapped (Pallas adds them as a grid axis):
    the same losses, crossings and weights as the XLA engine; a diverging rate is recorded as
    diverged and leaves the other members alone; a zero rate leaves its weights untouched."""
    widths = (37, 33, 19, 10)
    st, w = _problem(widths, jnp.float64)
    top = 1.0 / float(jnp.linalg.eigvalsh(st.sigma11)[-1])
    lrs = jnp.array([0.05 * top, 0.1 * top, 0.0, 50.0])
    batch = tuple(jnp.broadcast_to(x, (4,) + x.shape) for x in w)
    loss0 = float(linear.loss_from_stats(w, st))
    out = {}
    for engine in ("xla", "pallas"):
        run = engines.make_runner(st, record_every=10, n_records=6, engine=engine)
        states = jax.vmap(lambda w: linear.init_state(w, st))(batch)
        out[engine] = jax.jit(jax.vmap(run, in_axes=(0, 0, None)))(states, lrs, 0.5 * loss0)
    (sx, rx), (sp, rp) = out["xla"], out["pallas"]
    assert list(np.asarray(sp.diverged)) == [False, False, False, True]
    np.testing.assert_array_equal(sp.cross_step, sx.cross_step)
    np.testing.assert_array_equal(sp.diverge_step, sx.diverge_step)
    assert int(sp.cross_step[1]) > 0  # the threshold is crossed inside the run
    # E is formed as 1/2 tr S33 - tr(W S31^T) + 1/2 tr(W S11 W^T): absolute rounding ~ eps * E(0)
    assert_close(rp.loss, rx.loss, F64, atol=TOL[F64]["atol"] * loss0, equal_nan=True)
    for a, b, w0 in zip(sp.weights, sx.weights, w):
        assert_close(a[:3], b[:3], F64)
        np.testing.assert_array_equal(a[2], w0)


def test_pallas_kernels_lower_to_triton_for_cuda():
    """What a GPU compiles: the vmapped step at the paper's widths lowers to one Triton kernel
    per layer and pass, the bottom-up ones updating the weights in place (aliased)."""
    S = jax.ShapeDtypeStruct
    widths = (784, 1000, 1000, 1000, 10)
    n = len(widths) - 1
    for dtype in (jnp.float32, jnp.float64):
        members = 20
        ws = [S((members, widths[i + 1], widths[i]), dtype) for i in range(n)]

        def step(lr, g, *w):
            ps = pallas_step.top_down(w, interpret=False)
            return pallas_step.bottom_up(lr, g, ps[1:], w, interpret=False)

        text = (
            jax.jit(jax.vmap(step), donate_argnums=tuple(range(2, 2 + n)))
            .trace(S((members,), dtype), S((members, 10, 784), dtype), *ws)
            .lower(lowering_platforms=("cuda",))
            .as_text()
        )
        assert text.count("xla.gpu.triton") == (n - 1) + n
        assert text.count("#stablehlo.output_operand_alias<output_tuple_indices = [0]") == n


def test_pallas_engine_refuses_what_it_cannot_run(monkeypatch):
    w = (jnp.zeros((20, 5)), jnp.zeros((17, 20)))
    with pytest.raises(ValueError, match="1..16 output units"):
        engines.get("pallas").kernels(w)
    ok = (jnp.zeros((20, 5)), jnp.zeros((3, 20)))
    monkeypatch.delenv("DLNJAX_PALLAS_INTERPRET", raising=False)
    if not pallas_step.on_gpu():
        with pytest.raises(ValueError, match="needs a CUDA GPU.*DLNJAX_PALLAS_INTERPRET=1"):
            engines.get("pallas").kernels(ok)
    monkeypatch.setenv("DLNJAX_PALLAS_INTERPRET", "1")
    assert engines.get("pallas").kernels(ok) is pallas_step
    # 'auto' never picks the Pallas kernels (not yet timed on a GPU)
    assert engines.get("auto").kernels(ok) is not pallas_step
    monkeypatch.setattr(pallas_step, "_REASON", "no Triton (test)")
    with pytest.raises(RuntimeError, match="no Triton"):
        engines.get("pallas").kernels(ok)


def test_ieee_matmuls_sets_highest_off_a_cpu_only_and_respects_a_choice(monkeypatch):
    """On a GPU XLA's float32 product defaults to TF32: ieee_matmuls asks for IEEE float32
    ('highest') there, leaves a CPU alone (its products are IEEE already) and never overrides a
    precision the user chose."""
    import jax

    from dlnjax.measure import devices

    before = jax.config.jax_default_matmul_precision
    try:
        jax.config.update("jax_default_matmul_precision", None)
        monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
        assert devices.ieee_matmuls() is None
        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
        assert devices.ieee_matmuls() == "highest"
        jax.config.update("jax_default_matmul_precision", "tensorfloat32")
        assert devices.ieee_matmuls() == "tensorfloat32"
    finally:
        jax.config.update("jax_default_matmul_precision", before)
