"""Deep linear networks trained by full-batch gradient descent on sufficient statistics.

A network is a tuple of weight matrices ``(W^1, ..., W^{n})`` with ``W^l`` of shape
``(N_{l+1}, N_l)`` and ``n = N_l - 1`` (``depth`` counts layers, as the paper does).
The training error (paper README conventions) is

    E = 1/2 sum_mu ||y - W x||^2 = 1/2 tr Sigma33 - tr(W Sigma31^T) + 1/2 tr(W Sigma11 W^T)

with ``W = W^n ... W^1``, so a step never touches the P examples. The gradient of Eq. 13,
``dE/dW^l = A_l^T (W Sigma11 - Sigma31) B_l^T`` (``A_l`` the product above layer l,
``B_l`` the product below), is computed by hand in two passes over the weights, every
product contracted from the narrow end of the chain (``min(N_1, N_{N_l})`` rows), so a
step costs O(min(N_1, N_out) * sum_l N_l N_{l+1}) and reads each weight twice and writes it
once. :func:`loss_from_stats` is the plain autodiff-able definition, kept as the test oracle.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from dlnjax.data.statistics import Stats

Array = Any
Weights = tuple  # tuple[Array, ...]


def product(weights: Sequence[Array]) -> Array:
    """End-to-end map ``W^n ... W^1``, contracted from the narrower end of the chain."""
    weights = tuple(weights)
    if weights[-1].shape[0] <= weights[0].shape[1]:
        out = weights[-1]
        for w in reversed(weights[:-1]):
            out = out @ w
    else:
        out = weights[0]
        for w in weights[1:]:
            out = w @ out
    return out


def loss_from_stats(weights: Sequence[Array], stats: Stats) -> Array:
    """E = 1/2 tr S33 - tr(W S31^T) + 1/2 tr(W S11 W^T) (autodiff oracle)."""
    w = product(weights)
    return 0.5 * stats.tr33 - jnp.sum(w * stats.sigma31) + 0.5 * jnp.sum(w * times_sigma11(w, stats.sigma11))


def loss_from_examples(weights: Sequence[Array], x: Array, y: Array) -> Array:
    """E = 1/2 sum_mu ||y^mu - W x^mu||^2 on the examples themselves (rows)."""
    w = product(weights)
    r = y - x @ w.T
    return 0.5 * jnp.sum(r * r)


def times_sigma11(w: Array, sigma11: Array) -> Array:
    """``w Sigma11``. A 1-D ``sigma11`` is a diagonal Sigma11, its eigenvalues: the inputs are in
    its eigenbasis (:func:`dlnjax.networks.compressed.rotated_full_width`, an exact change of
    variables), and the product is elementwise, N_out N_in operations instead of N_out N_in^2."""
    return w * sigma11 if sigma11.ndim == 1 else w @ sigma11


def _loss(w: Array, ws11: Array, stats: Stats) -> Array:
    """E from the end-to-end map ``w`` and ``w @ Sigma11`` (already formed for the gradient)."""
    return 0.5 * stats.tr33 - jnp.sum(w * stats.sigma31) + 0.5 * jnp.sum(w * ws11)


def _factors(weights: Sequence[Array], stats: Stats) -> tuple[Array, list, list]:
    """Loss and the rank-r factors of every layer's gradient: ``dE/dW^l = left_l @ right_l``.

    Output side narrow (r = N_out rows): ``left_l = A_l^T`` (N_{l+1} x r) from a top-down pass
    and ``right_l = M_l = G B_l^T`` (r x N_l) from a bottom-up pass. Input side narrow
    (r = N_in): ``left_l = K_l = A_l^T G`` (N_{l+1} x r), ``right_l = B_l^T`` (r x N_l).
    ``None`` stands for an identity factor (first / last layer).
    """
    weights = tuple(weights)
    n = len(weights)
    left: list = [None] * n
    right: list = [None] * n
    if weights[-1].shape[0] <= weights[0].shape[1]:
        acc = None
        for l in range(n - 1, -1, -1):
            left[l] = None if acc is None else acc.T
            acc = weights[l] if acc is None else acc @ weights[l]
        w = acc
        ws11 = times_sigma11(w, stats.sigma11)
        m = ws11 - stats.sigma31  # M_1 = G (N_out, N_in)
        for l in range(n):
            right[l] = m
            if l + 1 < n:
                m = m @ weights[l].T
    else:
        acc = None
        for l in range(n):
            right[l] = None if acc is None else acc.T
            acc = weights[l] if acc is None else weights[l] @ acc
        w = acc
        ws11 = times_sigma11(w, stats.sigma11)
        k = ws11 - stats.sigma31  # K_n = G
        for l in range(n - 1, -1, -1):
            left[l] = k
            if l > 0:
                k = weights[l].T @ k
    return _loss(w, ws11, stats), left, right


def _apply(left: Array | None, right: Array | None) -> Array:
    if left is None:
        return right
    if right is None:
        return left
    return left @ right


def loss_and_grad(weights: Sequence[Array], stats: Stats) -> tuple[Array, Weights]:
    """Loss and hand-written gradient (Eq. 13), two narrow passes over the weights."""
    loss, left, right = _factors(weights, stats)
    return loss, tuple(_apply(a, b) for a, b in zip(left, right))


# Below this rank the update ``W - lr * left @ right`` is written as ``rank`` fused
# multiply-adds (one pass over W, memory-bound) instead of a dot with a tiny inner dimension
# followed by a subtraction (which XLA on CPU runs as a slow GEMM plus a second pass).
FUSED_UPDATE_MAX_RANK = 16


def _update(w: Array, lr: Array, left: Array | None, right: Array | None) -> Array:
    if left is None or right is None:
        return w - lr * _apply(left, right)
    r = left.shape[1]
    if r > FUSED_UPDATE_MAX_RANK:
        return w - lr * (left @ right)
    acc = w
    for k in range(r):
        acc = acc - (lr * left[:, k])[:, None] * right[k][None, :]
    return acc


def _fused_factors(kernels: Any, weights: Sequence[Array], stats: Stats) -> tuple[Array, list, Array]:
    """Loss, ``[P_2, ..., P_{N-1}]`` and G from a fused top-down pass (``kernels``: a module of
    fused kernels, :meth:`dlnjax.networks.engines.base.FullWidthEngine.kernels`)."""
    ps = kernels.top_down(weights)
    w = ps[0]
    ws11 = times_sigma11(w, stats.sigma11)
    return _loss(w, ws11, stats), ps[1:], ws11 - stats.sigma31


def mode_strengths(w_total: Array, u: Array, v: Array) -> Array:
    """diag(U^T W V): strength of each task mode in the end-to-end map (U, V fixed, not re-sorted)."""
    return jnp.einsum("ir,ij,jr->r", u, w_total, v)


class TrainState(NamedTuple):
    """State of one network's training, carried across chunks of steps."""

    weights: Weights
    step: Array  # int32: number of updates applied
    cross_step: Array  # int32: first step with E < threshold, -1 if none yet
    diverged: Array  # bool
    diverge_step: Array  # int32, -1 if not diverged
    loss_ref: Array  # loss at step 0 (for the divergence test)


class Records(NamedTuple):
    step: Array  # (R,)
    loss: Array  # (R,)  E at that step (nan after divergence)
    modes: Array  # (R, r) mode strengths (nan after divergence)


def init_state(weights: Sequence[Array], stats: Stats) -> TrainState:
    weights = tuple(weights)
    loss0 = loss_from_stats(weights, stats)
    i = jnp.int32
    return TrainState(weights, i(0), i(-1), jnp.asarray(False), i(-1), loss0)


def make_runner(
    stats: Stats,
    *,
    record_every: int,
    n_records: int,
    u: Array | None = None,
    v: Array | None = None,
    diverge_factor: float = 1e4,
    kernels: Callable[[Sequence[Array]], Any] | None = None,
) -> Any:
    """Build ``run(state, lr, threshold) -> (state, Records)``: ``n_records * record_every`` steps.

    ``kernels(weights)`` gives the module of fused kernels that computes a step on these
    (per-member) weights, or None for the hand-written gradient as XLA operations (the default).
    The engines supply it: :func:`dlnjax.networks.engines.make_runner` (``engine='xla'``, ``'native'``,
    ``'pallas'`` or ``'auto'``) is how the apps build a runner. All compute the same step (tested
    to rounding).

    Each record holds the loss and mode strengths at the start of its block of
    ``record_every`` steps. Inside, every step checks the loss: the first step with
    ``E < threshold`` is kept exactly in ``cross_step``; a loss that is not finite or exceeds
    ``diverge_factor * E(0)`` marks the network diverged and stops its updates (its later
    records are nan), so one bad member of a vmapped batch never disturbs the others.
    ``lr`` and ``threshold`` are traced scalars: vmap over them, over states, or both.
    """
    record_every = int(record_every)
    n_records = int(n_records)
    pick = kernels if kernels is not None else (lambda w: None)

    def run(state: TrainState, lr: Array, threshold: Array = -jnp.inf) -> tuple[TrainState, Records]:
        return _blocks(state, lr, threshold, stats, pick, product, diverge_factor, record_every, n_records, u, v)

    return run


def _blocks(state: TrainState, lr: Array, threshold: Array, stats: Stats, pick: Callable[[Any], Any],
            prod: Callable[[Any], Array], diverge_factor: float, record_every: int, n_records: int, u: Array | None,
            v: Array | None) -> tuple[TrainState, Records]:
    """``n_records`` blocks of :func:`_block` (the runners' body; ``lr``, ``threshold`` traced)."""
    lr = jnp.asarray(lr, state.loss_ref.dtype)
    threshold = jnp.asarray(threshold, state.loss_ref.dtype)
    return jax.lax.scan(lambda st, _: _block(st, lr, threshold, stats, pick, diverge_factor, record_every, u, v, prod),
                        state, None, length=n_records)


def _step(st: TrainState, lr: Array, threshold: Array, stats: Stats, pick: Callable[[Sequence[Array]], Any],
          diverge_factor: float) -> tuple[TrainState, Array]:
    """One gradient step with the threshold and divergence checks of :func:`make_runner`."""
    fused = pick(st.weights)
    if fused is not None:
        loss, ps, g = _fused_factors(fused, st.weights, stats)
    else:
        loss, left, right = _factors(st.weights, stats)
    bad = (~jnp.isfinite(loss)) | (loss > diverge_factor * jnp.abs(st.loss_ref) + 1e-30)
    newly_bad = bad & ~st.diverged
    diverged = st.diverged | bad
    crossed = (loss < threshold) & (st.cross_step < 0) & ~diverged
    cross_step = jnp.where(crossed, st.step, st.cross_step)
    # a diverged member gets a zero rate: the update stays a plain ``w - lr g`` (which XLA can
    # fold into the matrix product's epilogue) and its weights stop changing (or turn nan if
    # its gradient is no longer finite; its records are masked either way)
    eff_lr = jnp.where(diverged, jnp.zeros_like(lr), lr)
    if fused is not None:
        new_w = fused.bottom_up(eff_lr, g, ps, st.weights)
    else:
        new_w = tuple(_update(w, eff_lr, a, b) for w, a, b in zip(st.weights, left, right))
    return TrainState(
        new_w,
        st.step + jnp.where(diverged, 0, 1).astype(st.step.dtype),
        cross_step,
        diverged,
        jnp.where(newly_bad, st.step, st.diverge_step),
        st.loss_ref,
    ), loss


def _block(st: TrainState, lr: Array, threshold: Array, stats: Stats, pick: Callable[[Sequence[Array]], Any],
           diverge_factor: float, record_every: int, u: Array | None, v: Array | None,
           prod: Callable[[Any], Array] = product) -> tuple[TrainState, Records]:
    """``record_every`` steps and the record at their start (loss, mode strengths); ``prod``: the
    end-to-end map of the weights (:func:`product`, or :meth:`StackedKernels.product`)."""
    w_tot = prod(st.weights)
    modes = mode_strengths(w_tot, u, v) if u is not None else jnp.zeros((0,), w_tot.dtype)
    step0 = st.step

    def body(i, carry):
        s, first = carry
        s, loss = _step(s, lr, threshold, stats, pick, diverge_factor)
        return s, jnp.where(i == 0, loss, first)

    # the block's first loss is carried through the loop (a first step outside the loop
    # would make XLA keep a second copy of every weight: 2x instead of ~1.3x peak memory)
    st, first_loss = jax.lax.fori_loop(0, record_every, body, (st, jnp.zeros_like(st.loss_ref)))
    nan = jnp.asarray(jnp.nan, first_loss.dtype)
    dead = st.diverged & (st.diverge_step <= step0)
    rec = Records(step0, jnp.where(dead, nan, first_loss), jnp.where(dead, nan, modes))
    return st, rec


# ----------------------------------------------------------------------------------------
# One compilation across depths: the hidden layers as one capacity stack with a traced count
# ----------------------------------------------------------------------------------------
class Stacked(NamedTuple):
    """A network of equal hidden widths as ``W = last @ hidden[L-1] @ ... @ hidden[0] @ first``:
    ``first`` (h, N_in), ``hidden`` a capacity stack ``(L_cap, h, h)`` of which the first
    ``L = n_layers - 2`` are the hidden layers (the rest identity, never read or written),
    ``last`` (N_out, h). The layer count ``L`` is not part of the weights but a traced argument of
    :func:`make_stacked_runner`, shared by a batch: so one compiled program steps every depth up to
    ``L_cap + 2`` layers, where the tuple layout compiles one program per depth (and its trace grows
    with the depth: the layers are unrolled). The same rank-r trick as the compressed engine's
    cores (:class:`dlnjax.networks.compressed.Cores`, which is this with r = h), at full width."""

    first: Array
    hidden: Array
    last: Array


def stackable(weights: Sequence[Array]) -> bool:
    """Whether a network (one member, or a batch with a leading member axis) has the stacked form:
    at least two layers and every hidden layer square of one width."""
    weights = tuple(weights)
    if len(weights) < 2:
        return False
    h = weights[0].shape[-2]
    return weights[-1].shape[-1] == h and all(w.shape[-2:] == (h, h) for w in weights[1:-1])


def stack_layers(weights: Sequence[Array], capacity: int) -> tuple[Stacked, int]:
    """``(Stacked, L)``: the layers in the stacked form with a hidden stack of ``capacity`` (at
    least 1) padded with identities; works on one member or a batch (leading member axes)."""
    weights = tuple(weights)
    if not stackable(weights):
        raise ValueError(f"stack_layers needs equal square hidden layers; got shapes {[tuple(w.shape) for w in weights]}")
    hidden = weights[1:-1]
    cap = max(int(capacity), 1)
    if len(hidden) > cap:
        raise ValueError(f"{len(hidden)} hidden layers exceed the stack's capacity {cap}")
    first = weights[0]
    h = first.shape[-2]
    eye = jnp.broadcast_to(jnp.eye(h, dtype=first.dtype), first.shape[:-2] + (h, h))
    stack = jnp.stack(list(hidden) + [eye] * (cap - len(hidden)), axis=-3)
    return Stacked(first, stack, weights[-1]), len(hidden)


def unstack_layers(w: Stacked, n_hidden: int) -> tuple:
    """The layers of a :class:`Stacked` network as a tuple (the inverse of :func:`stack_layers`)."""
    return (w.first,) + tuple(w.hidden[..., j, :, :] for j in range(int(n_hidden))) + (w.last,)


def _at(stack: Array, j: Array) -> Array:
    """``stack[j]`` as a plain dynamic slice, for ``0 <= j < len(stack)`` (no wrap-around of
    negative indices, which ``stack[j]`` adds to every access)."""
    z = jnp.zeros((), jnp.int32)
    j = jnp.asarray(j, jnp.int32)
    return jax.lax.dynamic_slice(stack, (j,) + (z,) * (stack.ndim - 1), (1,) + stack.shape[1:])[0]


def _put(stack: Array, x: Array, j: Array) -> Array:
    """``stack.at[j].set(x)`` as a plain dynamic update slice (see :func:`_at`)."""
    z = jnp.zeros((), jnp.int32)
    j = jnp.asarray(j, jnp.int32)
    return jax.lax.dynamic_update_slice(stack, x[None], (j,) + (z,) * (stack.ndim - 1))


class StackedKernels:
    """The step of :func:`make_runner` on :class:`Stacked` weights, as XLA operations: the
    top-down products and the bottom-up update of :func:`_factors` (output side narrow) walked
    by ``fori_loop`` over the ``n_hidden`` used layers of the stack, with the same products in
    the same order (so the same numbers as the tuple layout, to rounding). Quacks like a module
    of fused kernels (``top_down``, ``bottom_up``) for :func:`_step`."""

    def __init__(self, n_hidden: Array):
        self.n = jnp.asarray(n_hidden, jnp.int32)

    def product(self, w: Stacked) -> Array:
        """The end-to-end map ``last @ hidden[L-1] @ ... @ hidden[0] @ first``."""
        acc = jax.lax.fori_loop(0, self.n, lambda i, a: a @ _at(w.hidden, self.n - 1 - i), w.last)
        return acc @ w.first

    def top_down(self, w: Stacked) -> list:
        """``[P_1, Pstack]`` with ``P_1`` the end-to-end map and ``Pstack[j] = P_{j+2} = last @
        hidden[L-1] @ ... @ hidden[j]`` (r x h; entries j >= L unused)."""
        n = self.n

        def body(i, c):
            acc, ps = c
            j = n - 1 - i
            acc = acc @ _at(w.hidden, j)
            return acc, _put(ps, acc, j)

        ps0 = jnp.zeros((w.hidden.shape[0],) + w.last.shape, w.last.dtype)
        acc, ps = jax.lax.fori_loop(0, n, body, (w.last, ps0))
        return [acc @ w.first, ps]

    def bottom_up(self, lr: Array, g: Array, ps: Sequence[Array], w: Stacked) -> Stacked:
        """``W_l - lr P_{l+1}^T M_l`` for every layer (``M_1 = g``, ``M_{l+1} = M_l W_l^T`` with
        the old weights, ``P_{L+3} = I``), as :func:`_update` writes it. Two loops over the stack:
        the ``M_l`` first (reading it), then the updates (each reads only the layer it writes).
        In one loop the old layer feeds both ``M_{l+1}`` and its own update, and XLA then copies
        the whole stack at every layer (7x slower at 29 layers, measured)."""
        (pst,) = ps
        n, cap = self.n, w.hidden.shape[0]

        def coef(j):  # P_{j+2}: the stack's entry j for j < L, else the last layer
            return jnp.where(j < n, _at(pst, jnp.minimum(j, cap - 1)), w.last)

        def m_body(j, c):
            m, ms = c
            return m @ _at(w.hidden, j).T, _put(ms, m, j)

        ms0 = jnp.zeros((cap,) + w.last.shape, w.last.dtype)
        m_top, ms = jax.lax.fori_loop(0, n, m_body, (g @ w.first.T, ms0))
        hidden = jax.lax.fori_loop(
            0, n, lambda j, hid: _put(hid, _update(_at(hid, j), lr, coef(j + 1).T, _at(ms, j)), j), w.hidden)
        return Stacked(_update(w.first, lr, coef(0).T, g), hidden, w.last - lr * m_top)


def make_stacked_runner(
    stats: Stats,
    *,
    record_every: int,
    n_records: int,
    u: Array | None = None,
    v: Array | None = None,
    diverge_factor: float = 1e4,
    kernels: Callable[[Array], StackedKernels] | None = None,
) -> Any:
    """``run(state, lr, threshold, n_hidden) -> (state, Records)``: :func:`make_runner` on a state
    whose weights are :class:`Stacked` (:func:`stack_layers`), with the hidden-layer count a
    traced argument: one compilation serves every depth up to the stack's capacity (vmap it with
    ``n_hidden`` shared by the batch, ``in_axes=None``: a batched count would make the loops run
    to the largest count with selects on every weight). ``kernels(n_hidden)`` computes the step:
    :class:`StackedKernels` (XLA operations, the default) or an engine's
    (:meth:`dlnjax.networks.engines.base.FullWidthBase.stacked_kernels`)."""
    make = kernels or StackedKernels
    record_every = int(record_every)
    n_records = int(n_records)

    def run(state: TrainState, lr: Array, threshold: Array, n_hidden: Array) -> tuple[TrainState, Records]:
        kern = make(n_hidden)
        return _blocks(state, lr, threshold, stats, lambda w: kern, kern.product, diverge_factor, record_every,
                       n_records, u, v)

    return run


def evaluate(state: TrainState, stats: Stats, u: Array | None = None, v: Array | None = None) -> Records:
    """A single record at the state's current step (the end point of a run)."""
    w_tot = product(state.weights)
    loss = loss_from_stats(state.weights, stats)
    modes = mode_strengths(w_tot, u, v) if u is not None else jnp.zeros((0,), w_tot.dtype)
    nan = jnp.asarray(jnp.nan, loss.dtype)
    return Records(state.step, jnp.where(state.diverged, nan, loss), jnp.where(state.diverged, nan, modes))


def train(
    weights: Sequence[Array],
    stats: Stats,
    lr: Array,
    *,
    num_steps: int,
    record_every: int = 1,
    u: Array | None = None,
    v: Array | None = None,
    threshold: Array = -jnp.inf,
    diverge_factor: float = 1e4,
    kernels: Callable[[Sequence[Array]], Any] | None = None,
) -> tuple[TrainState, Records]:
    """Train one network for ``num_steps`` full-batch steps (jit/vmap friendly; ``kernels`` as in
    :func:`make_runner`: the apps use :func:`dlnjax.networks.engines.train`, which picks them by engine).

    Returns the final state and ``num_steps // record_every + 1`` records at steps
    ``0, k, 2k, ..., num_steps``. vmap it over weights (seeds, initial scales) and ``lr``.
    """
    if num_steps % record_every:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of record_every ({record_every})")
    run = make_runner(
        stats, record_every=record_every, n_records=num_steps // record_every, u=u, v=v, diverge_factor=diverge_factor,
        kernels=kernels,
    )
    st, rec = run(init_state(weights, stats), lr, threshold)
    last = evaluate(st, stats, u, v)
    rec = jax.tree_util.tree_map(lambda r, l: jnp.concatenate([r, l[None]]), rec, last)
    return st, rec
