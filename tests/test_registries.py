"""The registries: inits (dlnjax.init.registry.INITS), engines (dlnjax.networks.engines.ENGINES) and the one
threshold type (dlnjax.measure.thresholds.Threshold)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.nonlinear import chaos, networks as nonlinear
from dlnjax.networks import compressed, engines, linear
from dlnjax.init import registry as inits
from dlnjax.networks.kernels import native
from dlnjax.measure import sweep
from dlnjax.init import functions as init_fns
from dlnjax.data import teacher
from dlnjax.networks.engines.base import Engine, FullWidthEngine
from dlnjax.networks.engines.compressed import COMPRESSED
from dlnjax.measure.thresholds import Threshold
from helpers import approx, assert_close
from dlnjax.data.statistics import Task, best_error, stats_from_examples

needs_native = pytest.mark.skipif(
    jax.default_backend() != "cpu" or not native.available(),
    reason=f"fused native kernels not available here: {native.reason() if jax.default_backend() == 'cpu' else 'not a CPU backend'}",
)


@pytest.fixture(scope="module")
def task():
    """Whitened inputs (Sigma11 = I), noisy targets: E* > 0 and E(0) differs from the zero map's."""
    ds = teacher([3.0, 2.0, 1.0], 6, 3, n_examples=6, noise_std=0.3, seed=0)
    return Task.from_stats(stats_from_examples(ds.x, ds.y, dtype=jnp.float64))


# ----------------------------------------------------------------------------------------
# registries list their names and refuse unknown ones by naming the allowed ones
# ----------------------------------------------------------------------------------------
def test_registries_list_their_names():
    assert set(inits.INITS.names) == {"decoupled", "scaled_gaussian", "orthogonal", "pretrained", "small_gaussian"}
    assert engines.ENGINES.names == ("auto", "xla", "native", "pallas")
    assert list(inits.INITS) == list(inits.INITS.names) and len(engines.ENGINES) == 4


@pytest.mark.parametrize("registry, bad", [(inits.INITS, "xavier"), (engines.ENGINES, "fast")])
def test_unknown_name_is_a_clear_value_error(registry, bad):
    with pytest.raises(ValueError) as e:
        registry[bad]
    msg = str(e.value)
    assert repr(bad) in msg
    for name in registry.names:
        assert name in msg


def test_the_old_gaussian_name_is_an_alias():
    assert inits.INITS["gaussian"] is inits.INITS["scaled_gaussian"]
    assert "gaussian" in inits.INITS and inits.INITS.canonical("gaussian") == "scaled_gaussian"

    class Weights:  # a config enum member is read by its value
        value = "gaussian"

    assert inits.INITS[Weights()] is inits.INITS["scaled_gaussian"]


def test_engine_resolution_env_var_only_a_default(monkeypatch):
    monkeypatch.delenv("DLNJAX_ENGINE", raising=False)
    assert engines.resolve(None) == "auto"
    monkeypatch.setenv("DLNJAX_ENGINE", "xla")
    assert engines.resolve(None) == "xla"
    assert engines.resolve("native") == "native"  # a passed engine wins over the variable
    assert engines.get("pallas") is engines.ENGINES["pallas"]
    monkeypatch.setenv("DLNJAX_ENGINE", "gpu")
    with pytest.raises(ValueError, match="DLNJAX_ENGINE must be one of auto, xla, native, pallas"):
        engines.resolve(None)


def test_engines_follow_the_protocol():
    for name, engine in engines.ENGINES.items():
        assert engine.name == name
        assert isinstance(engine, FullWidthEngine)
    assert isinstance(COMPRESSED, Engine) and not isinstance(COMPRESSED, FullWidthEngine)
    assert engines.ENGINES["xla"].unavailable() is None and engines.ENGINES["auto"].unavailable() is None


# ----------------------------------------------------------------------------------------
# inits
# ----------------------------------------------------------------------------------------
def _hyper(task):
    return dict(u0=1e-2, u_basis=task.u, v_basis=task.v, gain=1.0, std=0.1, top_std=1e-2)


def test_every_init_builds_weights_of_the_right_shapes(task):
    widths = (6, 5, 5, 3)
    hp = _hyper(task)
    for name, init in inits.INITS.items():
        prepared = init.prepare(jax.random.PRNGKey(1), task.stats, n_seeds=2, hidden_layers=[5, 5], std=0.1,
                                lr_scale=0.5, steps=20, record_every=10)
        assert (prepared is None) == (name != "pretrained")
        nets = init.networks(jax.random.PRNGKey(2), widths, 2, dtype=jnp.float64, prepared=prepared, **hp)
        assert len(nets) == (1 if name == "decoupled" else 2), name
        for w in nets:
            assert [tuple(x.shape) for x in w] == [(5, 6), (5, 5), (3, 5)], name
            assert all(np.all(np.isfinite(np.asarray(x))) for x in w)


def test_init_entries_compute_what_the_init_functions_compute(task):
    """The registry entries are thin: the same keys, the same arithmetic (bit for bit)."""
    k = jax.random.PRNGKey(3)
    widths = (6, 7, 3)
    pairs = [
        (inits.INITS["scaled_gaussian"].weights(k, widths, gain=0.7, dtype=jnp.float32), init_fns.scaled_gaussian(k, widths, 0.7, jnp.float32)),
        (inits.INITS["orthogonal"].weights(k, widths, gain=1.1), init_fns.random_orthogonal(k, widths, 1.1)),
        (inits.INITS["small_gaussian"].weights(k, widths, std=0.2), init_fns.small_gaussian(k, widths, 0.2)),
        (inits.INITS["decoupled"].weights(k, widths, u0=1e-3, u_basis=task.u, v_basis=task.v),
         init_fns.decoupled(k, widths, 1e-3, task.u, task.v)),
        (nonlinear.deep_tanh_weights(k, widths, "gaussian", 1.3, jnp.float64), init_fns.scaled_gaussian(k, widths, 1.3, jnp.float64)),
        (nonlinear.deep_tanh_weights(k, widths, "orthogonal", 1.3, jnp.float64), init_fns.random_orthogonal(k, widths, 1.3, jnp.float64)),
    ]
    for got, want in pairs:
        for a, b in zip(got, want):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the square stacks of the random-matrix apps, written out as they were before the registry
    keys = jax.random.split(k, 4)
    gauss = jax.vmap(lambda kk: jax.random.normal(kk, (9, 9), jnp.float64) / jnp.sqrt(9))(keys)
    orth = jax.vmap(lambda kk: init_fns.haar_orthogonal(kk, 9, dtype=jnp.float64))(keys)
    np.testing.assert_array_equal(np.asarray(chaos.random_weights(k, 9, 4, "gaussian", jnp.float64)), np.asarray(gauss))
    np.testing.assert_array_equal(np.asarray(chaos.random_weights(k, 9, 4, "scaled_gaussian", jnp.float64)), np.asarray(gauss))
    np.testing.assert_array_equal(np.asarray(chaos.random_weights(k, 9, 4, "orthogonal", jnp.float64)), np.asarray(orth))
    with pytest.raises(ValueError, match="no stack of square random matrices"):
        chaos.random_weights(k, 9, 4, "decoupled")


def test_missing_hyperparameter_is_named(task):
    with pytest.raises(ValueError, match="'u0'"):
        inits.INITS["decoupled"].weights(jax.random.PRNGKey(0), (6, 5, 3), u_basis=task.u, v_basis=task.v)
    with pytest.raises(ValueError, match="prepared"):
        inits.INITS["pretrained"].weights(jax.random.PRNGKey(0), (6, 5, 3), top_std=0.1)


def test_aligned_flag_is_true_exactly_for_decoupled_and_means_compressible(task):
    assert [n for n, i in inits.INITS.items() if i.aligned] == ["decoupled"]
    widths = (6, 8, 8, 3)  # hidden layers wider than the rank 3
    rot = compressed.rotate_inputs(task.stats.sigma11)
    hp = _hyper(task)
    dec = inits.INITS["decoupled"].weights(jax.random.PRNGKey(4), widths, dtype=jnp.float64, **hp)
    cores, bases = compressed.cores_from_weights(dec, rot)
    assert cores.rank == 3
    assert_close(linear.product(compressed.expand(cores, bases, rot)), linear.product(dec), "float64")
    gauss = inits.INITS["scaled_gaussian"].weights(jax.random.PRNGKey(4), widths, dtype=jnp.float64, **hp)
    with pytest.raises(compressed.NotAlignedError):
        compressed.cores_from_weights(gauss, rot)


# ----------------------------------------------------------------------------------------
# thresholds
# ----------------------------------------------------------------------------------------
def test_threshold_references_match_their_formulas(task):
    widths = (6, 5, 3)
    st = task.stats
    # E*: the best rank-3 error; Sigma11 = I here, so (Eckart-Young) 1/2 tr S33 - 1/2 sum_i s_i(S31)^2
    s = np.linalg.svd(np.asarray(st.sigma31, np.float64), compute_uv=False)
    e_star_np = 0.5 * float(st.tr33) - 0.5 * float(np.sum(s[:3] ** 2))
    e_star = float(best_error(st, rank=3))
    assert e_star == approx(e_star_np, "float64")
    e_zero = 0.5 * float(st.tr33)
    loss0 = 0.75 * e_zero + 1.0
    eps = 0.05

    thr, es = Threshold("relative", "initial", eps).resolve_for(task, widths, loss0=loss0)
    assert es == e_star and thr == e_star + eps * (loss0 - e_star)
    thr, es = Threshold("relative", "zero_map", eps).resolve_for(task, widths)
    assert es == e_star and thr == e_star + eps * (e_zero - e_star)
    for ref in ("initial", "zero_map"):
        assert Threshold("absolute", ref, eps, 3.5).resolve_for(task, widths, loss0=loss0) == (3.5, e_star)


def test_threshold_from_config_and_bad_values():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"kind": "relative", "eps": 0.1, "value": 0.0})
    with pytest.raises(ValueError, match="reference.*initial, zero_map"):
        Threshold.from_config(cfg)  # the schema decides the reference; no silent default here
    for ref in ("initial", "zero_map"):
        cfg2 = OmegaConf.create({"kind": "relative", "eps": 0.1, "value": 0.0, "reference": ref})
        assert Threshold.from_config(cfg2) == Threshold("relative", ref, 0.1, 0.0)
    # each app's schema default: Fig. 4 and lr_sweep from E(0), Figs. 5 and 6A from the zero map
    from experiments.schemas import compose

    want = dict(depth_sweep="initial", lr_sweep="initial", pretraining="zero_map", init_comparison="zero_map")
    for app, ref in want.items():
        assert Threshold.from_config(compose(app, []).threshold).reference == ref, app
    with pytest.raises(ValueError, match="initial, zero_map"):
        Threshold("relative", "final")
    with pytest.raises(ValueError, match="relative, absolute"):
        Threshold("percent")
    with pytest.raises(ValueError, match="loss0"):
        Threshold("relative", "initial").resolve(1.0)


# ----------------------------------------------------------------------------------------
# engines reach the runner
# ----------------------------------------------------------------------------------------
def _batch(task, widths=(6, 20, 20, 3), dtype=jnp.float32):
    st = task.stats.astype(dtype)
    w = init_fns.scaled_gaussian(jax.random.PRNGKey(5), widths, 0.9, dtype)
    lrs = [0.02, 0.05]
    batch = tuple(jnp.broadcast_to(x, (len(lrs),) + x.shape) for x in w)
    thr = float(best_error(task.stats, rank=3)) * 1.05 + 1e-3
    return st, batch, lrs, thr


def test_run_batch_passes_its_engine_to_the_runner(task, monkeypatch):
    st, batch, lrs, thr = _batch(task)
    seen = []
    real = engines.make_runner

    def spy(*a, **kw):
        seen.append(kw.get("engine"))
        return real(*a, **kw)

    monkeypatch.setattr(engines, "make_runner", spy)
    monkeypatch.setenv("DLNJAX_ENGINE", "auto")
    kw = dict(threshold=thr, max_steps=200, chunk_steps=100, record_every=10)
    sweep.run_batch(st, batch, lrs, engine="xla", **kw)
    sweep.run_batch(st, batch, lrs, **kw)
    assert seen == ["xla", "auto"]  # None: the variable applies, as before


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="on a GPU the Pallas engine runs")
def test_run_batch_refuses_an_engine_that_cannot_run_here(task, monkeypatch):
    """The engine passed is the one used: Pallas without a GPU (and without its interpreter
    allowed) is refused, saying so, although $DLNJAX_ENGINE says xla."""
    monkeypatch.delenv("DLNJAX_PALLAS_INTERPRET", raising=False)
    monkeypatch.setenv("DLNJAX_ENGINE", "xla")
    st, batch, lrs, thr = _batch(task)
    with pytest.raises((ValueError, RuntimeError), match="engine='pallas'"):
        sweep.run_batch(st, batch, lrs, threshold=thr, max_steps=100, chunk_steps=100, record_every=10, engine="pallas")


@needs_native
def test_run_batch_xla_and_native_engines_agree(task):
    st, batch, lrs, thr = _batch(task)
    kw = dict(threshold=thr, max_steps=400, chunk_steps=100, record_every=10)
    a = sweep.run_batch(st, batch, lrs, engine="xla", **kw)
    b = sweep.run_batch(st, batch, lrs, engine="native", **kw)
    # E from the statistics (1/2 tr S33 - tr W S31 + 1/2 tr W S11 W^T) cancels as it falls: its
    # rounding is a few ulps of E(0), not of E, so near convergence the absolute term governs
    # (differences of 4 ulps of E(0) = 9.3 seen between the kernels on one CPU)
    atol = 16 * float(np.finfo(np.float32).eps) * float(np.max(a.loss0))
    assert_close(b.loss, a.loss, "float32", atol=atol)
    assert_close(b.loss0, a.loss0, "float32")
    np.testing.assert_array_equal(a.diverged, b.diverged)


def test_engine_objects_build_the_runners_they_name(task):
    """Through the protocol: a full-width engine's runner does gradient descent on Eq. 13 (against
    a NumPy oracle), the compressed one's is compressed.make_member_runner."""
    from helpers import numpy_gradient_descent

    st = task.stats
    w = init_fns.scaled_gaussian(jax.random.PRNGKey(6), (6, 5, 3), 0.9, jnp.float64)
    xla = engines.ENGINES["xla"]
    s1, r1 = jax.jit(xla.make_runner(st, record_every=5, n_records=4))(xla.init_state(w, st), 0.05)
    oracle = numpy_gradient_descent(w, st.sigma11, st.sigma31, float(st.tr33), 0.05, 20)
    assert_close(np.asarray(r1.loss), oracle[::5], "float64")

    rot = compressed.rotate_inputs(st.sigma11)
    cs = compressed.compress_stats(st, rot, jnp.float64)
    cores = compressed.decoupled_cores((6, 5, 5, 3), 1e-2, task.u, task.v, rot)
    run = jax.jit(COMPRESSED.make_runner(cs, record_every=5))
    out = run(COMPRESSED.init_state(cores, cs, n_records=10), 0.05, -jnp.inf, 40)
    ref = jax.jit(compressed.make_member_runner(cs, record_every=5))(compressed.init_member(cores, cs, 10, 0), 0.05, -jnp.inf, 40)
    assert int(out.step) == 40
    np.testing.assert_array_equal(np.asarray(out.rec_loss), np.asarray(ref.rec_loss))


def test_compressed_engine_picks_its_kernels_from_the_engine_name(task):
    """``engine`` names the compressed network's kernels too: xla and pallas (and any GPU) get the
    XLA loop; auto and native the native loop where it is built, which gives the XLA loop's
    numbers (dtype-keyed tolerance: float64 here)."""
    from dlnjax.networks.kernels.native import compressed as ncomp

    assert COMPRESSED.kernels_for("xla") == "xla" and COMPRESSED.kernels_for("pallas") == "xla"
    want = "native" if (jax.default_backend() == "cpu" and ncomp.available()) else "xla"
    assert COMPRESSED.kernels_for("auto") == want and COMPRESSED.kernels_for("native") == want
    st = task.stats
    rot = compressed.rotate_inputs(st.sigma11)
    cs = compressed.compress_stats(st, rot, jnp.float64)
    cores = compressed.decoupled_cores((6, 5, 5, 3), 1e-2, task.u, task.v, rot)
    outs = [jax.jit(COMPRESSED.make_runner(cs, record_every=5, kernels=k))(COMPRESSED.init_state(cores, cs, n_records=10), 0.05, -jnp.inf, 40)
            for k in ("xla", want)]
    assert int(outs[1].step) == 40
    assert_close(np.asarray(outs[1].rec_loss), np.asarray(outs[0].rec_loss), "float64")


def test_init_cores_built_directly_equal_the_cores_of_the_full_width_start():
    """Init.cores: the decoupled init builds its compressed start directly; the default (any
    aligned init) compresses the full-width weights. On non-white inputs the two run the same
    compressed training (float64 tolerance); an init that is not aligned is refused."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 6)) @ np.diag([1.0, 2.0, 3.0, 0.5, 1.5, 2.5])
    st = stats_from_examples(x, rng.standard_normal((40, 3)), dtype=jnp.float64)
    t = Task.from_stats(st)
    rot = compressed.rotate_inputs(st.sigma11)
    cs = compressed.compress_stats(st, rot, jnp.float64)
    widths, key = (6, 5, 5, 3), jax.random.PRNGKey(2)
    hp = dict(u0=1e-2, u_basis=t.u, v_basis=t.v)
    dec = inits.INITS["decoupled"]
    direct = dec.cores(key, widths, rot, dtype=jnp.float64, **hp)
    generic = inits.InitBase.cores(dec, key, widths, rot, dtype=jnp.float64, **hp)
    run = jax.jit(compressed.make_member_runner(cs, record_every=10))
    a, b = (run(compressed.init_member(c, cs, 31, 0), 0.002, -jnp.inf, 300) for c in (direct, generic))  # below the edge
    assert int(a.step) == int(b.step) == 300
    la = np.asarray(a.rec_loss)
    assert np.isfinite(la[:30]).all() and la[29] < 0.9 * la[0]  # recorded every 10 steps, and it learned
    assert_close(np.asarray(b.rec_loss), np.asarray(a.rec_loss), "float64")
    with pytest.raises(ValueError, match="not rank-r aligned"):
        inits.INITS["orthogonal"].cores(key, widths, rot, dtype=jnp.float64, gain=1.0)
