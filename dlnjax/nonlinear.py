"""Nonlinear (tanh or any elementwise) networks as flax modules, trained on the examples with optax.

This is the general, example-based path (any depth, any activation, any optax optimiser).
For the one-hidden-layer networks of Fig. 3 the exact reduced dynamics of
:mod:`dlnjax.reduced` is much faster and is checked against this module in the tests.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from .reduced import ACTIVATIONS

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
