"""Greedy pretraining and the consistency condition (Section 3, Eq. 18)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlnjax.init import functions as init_fns
from dlnjax.init import pretrain
from dlnjax.measure import sweep
from helpers import TOL, TOL_ULPS, approx, assert_close
from dlnjax.data.statistics import Task, full_svd_basis, stats_from_examples

F64 = "float64"  # the covariances, bases and weights here are float64


def _basis(n, seed):
    return np.asarray(init_fns.haar_orthogonal(jax.random.PRNGKey(seed), n, dtype=jnp.float64))


def _projector(m):
    """Orthogonal projector onto the column span of m."""
    q, _ = np.linalg.qr(m)
    return q @ q.T


LAMBDAS = np.array([5.0, 4.0, 3.0, 0.5, 0.2, 0.1])


def test_linear_autoencoder_converges_to_the_principal_subspace():
    q = _basis(6, 0)
    cov = q @ np.diag(LAMBDAS) @ q.T
    enc, dec, rec, st = pretrain.train_autoencoder(
        jax.random.PRNGKey(1), jnp.asarray(cov), 3, std=1e-3, lr=0.5 / LAMBDAS[0], steps=3000, record_every=100
    )
    enc, dec = np.asarray(enc), np.asarray(dec)
    p3 = q[:, :3] @ q[:, :3].T
    # row space of the encoder = the top-3 principal subspace; product = projector onto it (M -> I),
    # to the convergence of 3000 steps (not rounding)
    assert_close(_projector(enc.T), p3, atol=1e-8)
    assert_close(dec @ enc, p3, atol=1e-8)
    # its error reached the best rank-3 reconstruction error 1/2 sum of the discarded variances
    assert abs(float(rec.loss[-1]) - 0.5 * LAMBDAS[3:].sum()) < 1e-8  # converged, as above
    assert not bool(st.diverged)
    # balanced layers (W_enc W_enc^T - W_dec^T W_dec is conserved in continuous time, ~0 from a
    # small start; gradient descent at lr * lambda = 0.5 lets it drift by O(lr)): W_enc ~ R Q^T
    assert_close(enc @ enc.T, np.eye(3), atol=5e-3)


def _task(v_dirs, n_out=3, seed=5):
    u = _basis(n_out, seed)
    s = np.array([3.0, 2.0, 1.0])[: v_dirs.shape[1]]
    return (u[:, : len(s)] * s) @ v_dirs.T


def test_consistency_metric_zero_when_q_equals_v_and_large_when_violated():
    q = _basis(6, 0)
    cov = q @ np.diag(LAMBDAS) @ q.T
    # consistent: the task's right singular vectors are principal components (Q = V)
    s31 = _task(q[:, [0, 2, 4]])
    u, s, v = full_svd_basis(jnp.asarray(s31))
    assert pretrain.offdiag_fraction(cov, np.asarray(v)[:, :3]) < TOL[F64]["atol"]  # 0 up to rounding
    # violated: each task direction mixes a strong and a weak component
    c, d = np.cos(np.pi / 4), np.sin(np.pi / 4)
    mixed = np.stack([c * q[:, 0] + d * q[:, 5], c * q[:, 1] - d * q[:, 4], c * q[:, 2] + d * q[:, 3]], axis=1)
    u, s, v = full_svd_basis(jnp.asarray(_task(mixed)))
    bad = pretrain.offdiag_fraction(cov, np.asarray(v)[:, :3])
    assert bad > 0.3
    # the random-basis baseline sits between the two for this spectrum
    mean, std = pretrain.offdiag_fraction_random(jnp.asarray(cov), 3, jax.random.PRNGKey(2), n_draws=50)
    assert 0.05 < mean < 1.0
    # std is the spread of the 50 draws themselves (same keys, same frames), not of their mean
    draws = [pretrain.offdiag_fraction(cov, init_fns.haar_orthogonal(k, 6, 3, jnp.float32)) for k in jax.random.split(jax.random.PRNGKey(2), 50)]
    assert_close(mean, np.mean(draws), rtol=TOL_ULPS[F64]["rtol"])
    assert_close(std, np.std(draws), rtol=TOL_ULPS[F64]["rtol"])
    # random frames differ, and the consistent basis (~0) lies more than 3 spreads below their mean
    assert std > 0.01
    assert mean - pretrain.offdiag_fraction(cov, q[:, [0, 2, 4]]) > 3 * std


def test_consistency_metric_does_not_depend_on_how_v_is_completed():
    q = _basis(6, 0)
    cov = q @ np.diag(LAMBDAS) @ q.T
    v = _basis(6, 9)[:, :2]
    full = pretrain.completed_basis(cov, v)
    assert_close(full.T @ full, np.eye(6), F64)
    assert_close(full[:, :2], v, F64)
    rot = full.T @ cov @ full
    # complement block diagonal by construction; task rows carry the whole off-diagonal mass
    comp = rot[2:, 2:]
    assert_close(comp - np.diag(np.diagonal(comp)), 0.0, F64)
    rows = rot[:2]
    frac = 1.0 - np.sum(np.diagonal(rot)[:2] ** 2) / np.sum(rows**2)
    assert abs(frac - pretrain.offdiag_fraction(cov, v)) < TOL[F64]["atol"]  # fractions of 1, in absolute terms
    # any other completion (a rotation of the complement) gives the same number
    other = np.concatenate([v, full[:, 2:] @ _basis(4, 3)], axis=1)
    rot2 = other.T @ cov @ other
    frac2 = 1.0 - np.sum(np.diagonal(rot2)[:2] ** 2) / np.sum(rot2[:2] ** 2)
    assert abs(frac2 - frac) < TOL[F64]["atol"]


def _pretrained_first_layer(cov, steps):
    pre = pretrain.greedy_pretrain(
        jax.random.PRNGKey(4), jnp.asarray(cov), [4], std=1e-7, lr_scale=0.5, steps=steps, record_every=steps
    )
    return np.asarray(pre.layers[0])


def test_pretrained_start_is_decoupled_exactly_when_q_equals_v():
    """Partial pretraining (distinct M) of a 6 -> 4 autoencoder: the first layer's Gram in the
    task basis is diagonal when Q = V (Eq. 18), not when the task mixes principal components."""
    q = _basis(6, 0)
    lam = np.array([5.0, 3.0, 1.5, 0.8, 0.2, 0.1])
    cov = q @ np.diag(lam) @ q.T
    w = _pretrained_first_layer(cov, steps=100)
    m = np.sort(np.linalg.svd(w, compute_uv=False))[::-1] ** 2  # learned strengths per component
    assert m[1] > 0.9 and m[2] < 0.5  # partial: M is far from a multiple of the identity
    consistent = q[:, [0, 1, 3]]
    assert pretrain.decoupling_offdiag(w, consistent) < 1e-6  # what is left of the 1e-7 random start, not rounding
    c, d = np.cos(np.pi / 4), np.sin(np.pi / 4)
    mixed = np.stack([c * q[:, 0] + d * q[:, 3], c * q[:, 1] - d * q[:, 2], q[:, 4]], axis=1)
    assert pretrain.decoupling_offdiag(w, mixed) > 0.05
    # once every component the task touches is fully learned (M = I on them) any orthonormal
    # task directions inside the learned subspace decouple too: the "or M ~ I" clause
    w_full = _pretrained_first_layer(cov, steps=300)
    assert np.allclose(np.linalg.svd(w_full, compute_uv=False) ** 2, 1.0, atol=1e-3)  # learned within 300 steps
    assert pretrain.decoupling_offdiag(w_full, mixed[:, :2]) < 1e-6  # as above: the start's remnant and M's distance from I
    # a small random first layer is not decoupled either
    rnd = np.asarray(init_fns.small_gaussian(jax.random.PRNGKey(0), (6, 4), 0.01, jnp.float64)[0])
    assert pretrain.decoupling_offdiag(rnd, consistent) > 0.05


def test_greedy_stack_trains_each_layer_on_the_representation_below():
    q = _basis(6, 0)
    cov = q @ np.diag(LAMBDAS) @ q.T
    pre = pretrain.greedy_pretrain(jax.random.PRNGKey(7), jnp.asarray(cov), [4, 3], std=1e-3, lr_scale=0.5, steps=2000, record_every=100)
    assert [w.shape for w in pre.layers] == [(4, 6), (3, 4)]
    assert pre.total_steps == 4000 and not any(pre.diverged)
    assert pre.learning_rates[0] == approx(0.5 / LAMBDAS[0], F64)
    w1 = np.asarray(pre.layers[0])
    c2 = w1 @ cov @ w1.T
    assert pre.learning_rates[1] == approx(0.5 / np.linalg.eigvalsh(c2).max(), F64)
    assert pre.initial_error[1] == approx(0.5 * np.trace(c2), F64)
    # the stack encodes the top-3 principal subspace of the data (to 1e-5: the first layer's
    # singular values sit at 1 +- 2e-4 after gradient descent, which tilts C2's eigenvectors slightly)
    stack = np.asarray(pre.layers[1]) @ w1
    assert_close(_projector(stack.T), q[:, :3] @ q[:, :3].T, atol=1e-5)
    net = pretrain.pretrained_network(jax.random.PRNGKey(0), pre, 4, 2, top_std=0.01)
    assert [w.shape for w in net] == [(4, 6), (3, 4), (2, 3)]
    with pytest.raises(ValueError, match="needs 3 pretrained layers"):
        pretrain.pretrained_network(jax.random.PRNGKey(0), pre, 5, 2, top_std=0.01)


def test_run_batch_of_mixed_starts_equals_each_start_alone():
    """vmap equals loop: members of one batch (different inits and rates) train as if alone."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    y = x @ rng.normal(size=(6, 3)) * 0.5
    stats = stats_from_examples(jnp.asarray(x), jnp.asarray(y), jnp.float64)
    widths = (6, 5, 5, 3)
    nets = [
        init_fns.scaled_gaussian(jax.random.PRNGKey(1), widths, dtype=jnp.float64),
        init_fns.random_orthogonal(jax.random.PRNGKey(2), widths, dtype=jnp.float64),
    ]
    lrs = [2e-3, 5e-3]
    task = Task.from_stats(stats)
    from dlnjax.measure.thresholds import Threshold

    thr, _ = Threshold("relative", "zero_map", 0.05).resolve_for(task, widths)
    kw = dict(threshold=thr, max_steps=400, chunk_steps=100, record_every=10)
    batch = tuple(jnp.stack([n[l] for n in nets]) for l in range(3))
    both = sweep.run_batch(stats, batch, lrs, **kw)
    for i, (net, lr) in enumerate(zip(nets, lrs)):
        alone = sweep.run_batch(stats, tuple(w[None] for w in net), [lr], **kw)
        assert_close(both.loss[i, : alone.loss.shape[1]], alone.loss[0], rtol=TOL_ULPS[F64]["rtol"])
        assert both.learning_time[i] == alone.learning_time[0] or (np.isnan(both.learning_time[i]) and np.isnan(alone.learning_time[0]))
    assert np.all(np.isfinite(both.learning_time))
