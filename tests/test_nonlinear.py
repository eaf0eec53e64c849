"""Minibatch classifier training (deep tanh): vmapped members equal single runs; learning happens."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dlnjax.nonlinear import networks as nonlinear
from helpers import TOL, TOL_ULPS, assert_close

F64 = "float64"  # the weights (and so the training) here are float64


def _toy(n=200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    lab = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return jnp.asarray(x), jnp.asarray(lab)


def test_classifier_training_learns_and_vmap_equals_loop():
    x, lab = _toy()
    xt, labt = _toy(seed=1)
    widths = (6, 16, 16, 2)
    model = nonlinear.MLP(widths[1:], activation="tanh")
    train = nonlinear.make_classifier_train(model, optax.sgd(0.05, momentum=0.9), x, lab, xt, labt, batch_size=20, epochs=5, key=jax.random.PRNGKey(0))
    ps = [nonlinear.params_from_weights(nonlinear.deep_tanh_weights(jax.random.PRNGKey(s), widths, "orthogonal", 1.1, jnp.float64)) for s in range(3)]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *ps)
    _, mb = jax.jit(jax.vmap(train))(stacked)
    for i, p in enumerate(ps):
        _, m1 = jax.jit(train)(p)
        assert_close(mb["train_loss"][i], m1["train_loss"], rtol=TOL[F64]["rtol"])
    err = np.asarray(mb["train_error"])
    assert err.shape == (3, 6)
    assert np.all(err[:, -1] < 0.1) and np.all(err[:, 0] > err[:, -1])


def test_deep_tanh_weight_scalings():
    w = nonlinear.deep_tanh_weights(jax.random.PRNGKey(0), (50, 50, 50), "orthogonal", 2.0, jnp.float64)
    assert_close(np.linalg.svd(np.asarray(w[0]), compute_uv=False), 2.0, rtol=TOL_ULPS[F64]["rtol"])
    g = nonlinear.deep_tanh_weights(jax.random.PRNGKey(0), (400, 400), "gaussian", 1.0, jnp.float64)[0]
    assert abs(float(jnp.var(g)) * 400 - 1.0) < 0.02  # variance 1/N_in (160,000 entries: std error ~0.4%)
