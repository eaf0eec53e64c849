"""The reduced (W1, B, G) dynamics equals the full network, linear (engine) and tanh (flax/optax)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlnjax.init import functions as init_fns
from dlnjax.networks import engines
from dlnjax.nonlinear import networks as nonlinear, reduced
from dlnjax.data import hierarchy
from helpers import TOL, TOL_ULPS, assert_close
from dlnjax.data.statistics import full_svd_basis, stats_from_examples

F64 = "float64"  # the statistics and weights here are float64


@pytest.fixture(scope="module")
def small():
    ds = hierarchy(levels=3, n_features=50, seed=4)
    st = stats_from_examples(ds.x, ds.y, dtype=jnp.float64)
    u, s, v = full_svd_basis(st.sigma31)
    r = int(np.sum(np.asarray(s) > 1e-8))
    return ds, st, u, s, v, r


@pytest.mark.parametrize("act", ["linear", "tanh"])
def test_reduced_equals_flax_optax_full_network(small, act):
    ds, st, u, s, v, r = small
    w = init_fns.small_gaussian(jax.random.PRNGKey(1), (8, 6, 50), 0.3, dtype=jnp.float64)
    prob = reduced.make_problem(jnp.asarray(ds.x), ds.y, u[:, :r], v, r)
    sf, losses, _ = reduced.train(reduced.reduce_weights(w[0], w[1], u[:, :r]), prob, 0.01, activation=act, num_steps=200, record_every=10)
    model = nonlinear.MLP((6, 50), activation=act)
    train = nonlinear.make_train_examples(model, optax.sgd(0.01), jnp.asarray(ds.x), jnp.asarray(ds.y), num_steps=200, record_every=10)
    params, losses_full = train(nonlinear.params_from_weights(w))
    w1, w2 = nonlinear.weights_from_params(params)
    assert_close(losses, losses_full, rtol=TOL[F64]["rtol"])
    assert_close(sf.w1, w1, F64)
    assert_close(sf.b, u[:, :r].T @ w2, F64)
    g_full = w2.T @ w2 - (u[:, :r].T @ w2).T @ (u[:, :r].T @ w2)
    assert_close(sf.g, g_full, F64)


def test_reduced_linear_modes_equal_engine(small):
    ds, st, u, s, v, r = small
    w = init_fns.small_gaussian(jax.random.PRNGKey(2), (8, 6, 50), 0.3, dtype=jnp.float64)
    prob = reduced.make_problem(jnp.asarray(ds.x), ds.y, u[:, :r], v, r)
    _, losses, md = reduced.train(reduced.reduce_weights(w[0], w[1], u[:, :r]), prob, 0.01, activation="linear", num_steps=100, record_every=10)
    _, rec = engines.train(w, st, 0.01, num_steps=100, record_every=10, u=u[:, :r], v=v[:, :r])
    assert_close(losses, rec.loss, rtol=TOL[F64]["rtol"])
    assert_close(md, rec.modes, F64)


@pytest.mark.slow
def test_vmap_over_inits_equals_loop(small):
    ds, st, u, s, v, r = small
    prob = reduced.make_problem(jnp.asarray(ds.x), ds.y, u[:, :r], v, r)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    ws = jax.vmap(lambda k: init_fns.small_gaussian(k, (8, 6, 50), 0.1, dtype=jnp.float64))(keys)
    f = lambda w: reduced.train(reduced.reduce_weights(w[0], w[1], u[:, :r]), prob, 0.02, activation="tanh", num_steps=50, record_every=10)  # noqa: E731
    _, lb, mb = jax.vmap(f)(ws)
    for i in range(3):
        _, l1, m1 = f(jax.tree_util.tree_map(lambda a: a[i], ws))
        assert_close(lb[i], l1, rtol=TOL_ULPS[F64]["rtol"])
        assert_close(mb[i], m1, F64, **TOL_ULPS[F64])
