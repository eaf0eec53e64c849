"""Exact reduced dynamics of one-hidden-layer networks with a wide linear readout.

For ``yhat = W2 phi(W1 x)`` trained by full-batch gradient descent on
``E = 1/2 sum ||y - yhat||^2``, split the readout along an orthonormal basis ``U_r`` (N3 x r)
of the targets' span: ``W2 = U_r B + C`` with ``U_r^T C = 0``. Then

    E = 1/2 ||Phi B^T - Y U_r||^2 + 1/2 tr(Phi G Phi^T) + const,   G = C^T C  (N2 x N2)

and the orthogonal part evolves as ``C <- C (I - lr K)`` with ``K = Phi^T Phi``, so
``G <- (I - lr K) G (I - lr K)``. The state ``(W1, B, G)`` has no N3-sized array, yet the
trajectory of every observable (loss, ``U^T Sigma31_net V``) is that of the full network,
exactly (tests/test_reduced.py checks it against the full network and a flax/optax model).
For Fig. 3 (N3 = 1000 features, 32 items) this cuts a step ~40-fold.
``phi`` is any elementwise function (identity gives the deep linear network of depth 3).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = Any

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "linear": lambda h: h,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
}


class ReducedState(NamedTuple):
    w1: Array  # (N2, N1)
    b: Array  # (r, N2)  = U_r^T W2
    g: Array  # (N2, N2) = W2^T (I - U_r U_r^T) W2


class ReducedProblem(NamedTuple):
    x: Array  # (P, N1)
    y_r: Array  # (P, r)  targets in the U_r basis
    y_perp_sq: Array  # scalar: ||Y (I - U_r U_r^T)||^2
    v: Array  # (N1, m) input singular vectors whose modes are recorded
    n_modes: int


def make_problem(x: Array, y: Array, u_r: Array, v: Array, n_modes: int) -> ReducedProblem:
    x = jnp.asarray(x)
    y = jnp.asarray(y, x.dtype)
    y_r = y @ u_r
    y_perp_sq = jnp.sum(y * y) - jnp.sum(y_r * y_r)
    return ReducedProblem(x, y_r, y_perp_sq, jnp.asarray(v, x.dtype)[:, :n_modes], int(n_modes))


def reduce_weights(w1: Array, w2: Array, u_r: Array) -> ReducedState:
    b = u_r.T @ w2
    g = w2.T @ w2 - b.T @ b
    return ReducedState(w1, b, 0.5 * (g + g.T))


def loss_and_grad(st: ReducedState, prob: ReducedProblem, phi: Callable) -> tuple[Array, ReducedState, Array]:
    """E, dE/d(W1, B), and K = Phi^T Phi (for the G update)."""
    h = prob.x @ st.w1.T
    f, vjp = jax.vjp(phi, h)
    r = f @ st.b.T - prob.y_r
    fg = f @ st.g
    loss = 0.5 * jnp.sum(r * r) + 0.5 * jnp.sum(fg * f) + 0.5 * prob.y_perp_sq
    d_f = r @ st.b + fg
    (d_h,) = vjp(d_f)
    return loss, ReducedState(d_h.T @ prob.x, r.T @ f, jnp.zeros_like(st.g)), f.T @ f


def modes(st: ReducedState, prob: ReducedProblem, phi: Callable) -> Array:
    """diag(U^T Sigma31_net V) with Sigma31_net = sum yhat x^T (first n_modes modes)."""
    f = phi(prob.x @ st.w1.T)
    proj = st.b[: prob.n_modes] @ (f.T @ (prob.x @ prob.v))  # (m, m)
    return jnp.diagonal(proj)


def train(
    st: ReducedState,
    prob: ReducedProblem,
    lr: Array,
    *,
    activation: str,
    num_steps: int,
    record_every: int,
) -> tuple[ReducedState, Array, Array]:
    """Gradient descent for ``num_steps``; records (loss, modes) at steps 0, k, ..., num_steps."""
    phi = ACTIVATIONS[activation]
    if num_steps % record_every:
        raise ValueError("num_steps must be a multiple of record_every")
    eye = jnp.eye(st.g.shape[0], dtype=st.g.dtype)

    def step(s: ReducedState, _=None) -> ReducedState:
        _, grad, k = loss_and_grad(s, prob, phi)
        m = eye - lr * k
        return ReducedState(s.w1 - lr * grad.w1, s.b - lr * grad.b, m @ s.g @ m)

    def block(s, _):
        loss = loss_and_grad(s, prob, phi)[0]
        md = modes(s, prob, phi)
        s = jax.lax.fori_loop(0, record_every, lambda _, z: step(z), s)
        return s, (loss, md)

    st, (losses, md) = jax.lax.scan(block, st, None, length=num_steps // record_every)
    last_loss = loss_and_grad(st, prob, phi)[0]
    losses = jnp.concatenate([losses, last_loss[None]])
    md = jnp.concatenate([md, modes(st, prob, phi)[None]])
    return st, losses, md
