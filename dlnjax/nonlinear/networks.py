"""Nonlinear (tanh or any elementwise) networks as flax modules, trained on the examples with optax.

This is the general, example-based path (any depth, any activation, any optax optimiser).
For the one-hidden-layer networks of Fig. 3 the exact reduced dynamics of
:mod:`dlnjax.nonlinear.reduced` is much faster and is checked against this module in the tests.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dlnjax.nonlinear.reduced import ACTIVATIONS

Array = Any


class MLP(nn.Module):
    """``x -> W^n phi(... phi(W^1 x))``: elementwise ``phi`` on hidden layers, linear readout.

    ``widths`` lists the layer sizes after the input (hidden..., output). No biases by
    default, as in the paper's networks. Kernels are stored (in, out) as flax does, so
    ``W^l = kernel.T``.
    """

    widths: Sequence[int]
    activation: str = "tanh"
    use_bias: bool = False
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        phi = ACTIVATIONS[self.activation]
        for i, w in enumerate(self.widths):
            x = nn.Dense(w, use_bias=self.use_bias, kernel_init=self.kernel_init, name=f"layer{i + 1}")(x)
            if i + 1 < len(self.widths):
                x = phi(x)
        return x


def params_from_weights(weights: Sequence[Array]) -> dict:
    """Flax params for :class:`MLP` from matrices ``W^l`` of shape (N_{l+1}, N_l)."""
    return {"params": {f"layer{i + 1}": {"kernel": jnp.asarray(w).T} for i, w in enumerate(weights)}}


def weights_from_params(params: dict) -> tuple:
    p = params["params"]
    return tuple(p[f"layer{i + 1}"]["kernel"].T for i in range(len(p)))


def sum_squared_error(model: nn.Module, params: dict, x: Array, y: Array) -> Array:
    """E = 1/2 sum_mu ||y^mu - f(x^mu)||^2 (sums, not means; paper README)."""
    r = model.apply(params, x) - y
    return 0.5 * jnp.sum(r * r)


def make_train_examples(
    model: nn.Module, optimizer: optax.GradientTransformation, x: Array, y: Array, *, num_steps: int, record_every: int
) -> Callable:
    """``train(params) -> (params, losses)``: full-batch optax steps on the examples inside scan."""
    if num_steps % record_every:
        raise ValueError("num_steps must be a multiple of record_every")
    loss_fn = lambda p: sum_squared_error(model, p, x, y)  # noqa: E731

    def train(params):
        opt_state = optimizer.init(params)

        def step(carry, _):
            p, o = carry
            loss, g = jax.value_and_grad(loss_fn)(p)
            upd, o = optimizer.update(g, o, p)
            return (optax.apply_updates(p, upd), o), loss

        def block(carry, _):
            carry, losses = jax.lax.scan(step, carry, None, length=record_every)
            return carry, losses[0]

        (params, _), losses = jax.lax.scan(block, (params, opt_state), None, length=num_steps // record_every)
        return params, jnp.concatenate([losses, loss_fn(params)[None]])

    return train


def deep_tanh_weights(key: Array, widths: Sequence[int], init: str, gain: float | Array, dtype: Any = None) -> tuple:
    """Weights ``W^l`` (N_{l+1} x N_l) for a deep tanh network.

    ``init='orthogonal'``: Haar (semi-)orthogonal times ``gain`` (ICLR version, Section 4);
    ``'gaussian'`` (alias of ``'scaled_gaussian'``): i.i.d. N(0, gain^2 / N_in). The readout layer
    gets the same scaling as the others. Any init of :data:`dlnjax.init.registry.INITS` that needs no
    more than ``gain`` works.
    """
    from dlnjax.init.registry import INITS

    return INITS[init].weights(key, widths, gain=gain, dtype=dtype)


def make_classifier_train(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    x: Array,
    labels: Array,
    x_test: Array,
    labels_test: Array,
    *,
    batch_size: int,
    epochs: int,
    key: Array,
) -> Callable:
    """``train(params) -> (params, metrics)``: minibatch training with softmax cross-entropy.

    Every member of a vmapped batch of parameters sees the same minibatches (one shuffle per
    epoch from ``key``), so members differ only by their initialisation. ``metrics`` holds,
    for epoch 0 (before training) to ``epochs``: ``train_error`` and ``test_error`` (fraction
    misclassified) and ``train_loss`` (mean cross-entropy on the training set).
    """
    n = x.shape[0]
    steps = n // batch_size
    if steps < 1:
        raise ValueError(f"batch_size ({batch_size}) exceeds the {n} training examples")
    perms = jnp.stack(
        [jax.random.permutation(k, n)[: steps * batch_size].reshape(steps, batch_size) for k in jax.random.split(key, epochs)]
    )

    def loss_fn(p, xb, yb):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model.apply(p, xb), yb))

    def evaluate(p):
        logits = model.apply(p, x)
        e_tr = jnp.mean(jnp.argmax(logits, -1) != labels)
        l_tr = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
        e_te = jnp.mean(jnp.argmax(model.apply(p, x_test), -1) != labels_test)
        return e_tr, e_te, l_tr

    def step(carry, idx):
        p, o = carry
        g = jax.grad(loss_fn)(p, x[idx], labels[idx])
        upd, o = optimizer.update(g, o, p)
        return (optax.apply_updates(p, upd), o), None

    def epoch(carry, perm):
        carry, _ = jax.lax.scan(step, carry, perm)
        return carry, evaluate(carry[0])

    def train(params):
        first = evaluate(params)
        (params, _), metrics = jax.lax.scan(epoch, (params, optimizer.init(params)), perms)
        names = ("train_error", "test_error", "train_loss")
        return params, {k: jnp.concatenate([f[None], m]) for k, f, m in zip(names, first, metrics)}

    return train
