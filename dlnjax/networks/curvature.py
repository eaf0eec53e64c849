"""The top eigenpair of the loss Hessian: one routine for every engine.

Power iteration on Hessian-vector products (:func:`top_eigenpair`): each engine supplies its
``hvp`` (the forward-mode derivative, ``jax.jvp``, of its hand-written gradient of Eq. 13) and,
where its parameters are not a plain tuple of arrays, its inner product and scaling (the
compressed cores, :func:`dlnjax.networks.compressed.sharpness`, skip their fixed parts). The
full-width engines use :func:`full_width_top_eigenpair`. Power iteration converges to the
eigenvalue of largest magnitude; along a training run from a small start the top positive one
dominates. The independent check is Lanczos with a residual bound,
:func:`dlnjax.theory.hessian.top_eigen` (``tests/test_hessian.py`` holds the two together).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

Array = Any

__all__ = ["tree_dot", "tree_scale", "top_eigenpair", "full_width_top_eigenpair", "random_start"]


def tree_dot(a: Any, b: Any) -> Array:
    """``<a, b>`` summed leaf by leaf, in leaf order."""
    return sum(jnp.sum(x * y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def tree_scale(v: Any, c: Array) -> Any:
    """``v / c`` leaf by leaf."""
    return jax.tree_util.tree_map(lambda x: x / c, v)


def top_eigenpair(hvp: Callable[[Any], Any], v0: Any, iters: int, *, dtype: Any,
                  dot: Callable[[Any, Any], Array] = tree_dot, scale: Callable[[Any, Array], Any] = tree_scale,
                  normalize: Callable[[Any], Any] | None = None) -> tuple[Array, Any]:
    """``(lambda, v)``: the Rayleigh quotient after ``iters`` power steps ``v <- H v / ||v||``
    from ``v0``, and the unit vector of the last product. ``hvp``, ``dot`` and ``scale`` act on
    one pytree layout (the parameters'); ``normalize(v)`` (default ``scale(v, sqrt(dot(v, v)))``)
    is the step's normalisation, which a layout may write its own way; ``dtype`` is the
    eigenvalue's. Traceable (``iters`` static)."""
    if normalize is None:
        def normalize(v: Any) -> Any:
            return scale(v, jnp.sqrt(dot(v, v)))

    def body(_, carry):
        v, _lam = carry
        v = normalize(v)
        hv = hvp(v)
        return hv, dot(v, hv)

    hv, lam = jax.lax.fori_loop(0, int(iters), body, (v0, jnp.asarray(0.0, dtype)))
    return lam, scale(hv, jnp.sqrt(dot(hv, hv)))


def full_width_top_eigenpair(stats: Any, iters: int = 40) -> Callable[[Sequence[Array], Any], tuple[Array, Any]]:
    """Jitted ``(weights, v0) -> (lambda, v)`` for the full-width network on ``stats``: the
    Hessian-vector product is ``jax.jvp`` of :func:`dlnjax.networks.linear.loss_and_grad`'s
    gradient. ``v0=None`` is not accepted here: see :func:`random_start`."""
    from dlnjax.networks import linear

    def grads(ws):
        return linear.loss_and_grad(ws, stats)[1]

    @jax.jit
    def power(ws, v0):
        return top_eigenpair(lambda v: jax.jvp(grads, (ws,), (v,))[1], tuple(v0), iters, dtype=ws[0].dtype)

    return power


def random_start(weights: Sequence[Array]) -> tuple[Array, ...]:
    """The fixed start of the full-width iteration (key 0): the same weights give the same
    eigenvalue bit for bit, so a resumed sweep recomputes identical numbers."""
    keys = jax.random.split(jax.random.PRNGKey(0), len(weights))
    return tuple(jax.random.normal(k, w.shape, w.dtype) for k, w in zip(keys, weights))
