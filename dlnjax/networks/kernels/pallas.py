"""Fused GPU kernels for the deep linear step, written in Pallas (Triton backend).

The same two passes as the CPU kernels of :mod:`dlnjax.networks.kernels.native` and the same interface
(:func:`top_down`, :func:`bottom_up`), one ``pallas_call`` per layer and pass:

- top-down, ``P_l = P_{l+1} W_l`` (r x n_in): a grid over blocks of ``BN`` columns; each program
  walks down the rows of W in tiles of ``BK`` and accumulates a (16 x BN) tile of the product.
  W is read once.
- bottom-up, one layer W (n_out x n_in) with ``M_l`` (r x n_in) and the coefficients
  ``P_{l+1}`` (r x n_out): a grid over blocks of ``BR`` rows; each program walks its rows in
  tiles of ``BC`` columns, and with each tile of W loaded once it accumulates its rows of
  ``M_{l+1} = M_l W^T`` (old weights) and stores the tile of ``W - lr P_{l+1}^T M_l`` back in
  place (``input_output_aliases``). W is read once and written once.

So a step moves 3 x (bytes of the weights), the roofline of ``benchmarks/linear_step.py``. XLA
runs the input-side product ``M_l W_l^T`` as a matrix-product kernel and the update as another,
so it presumably reads each weight once more (inferred from the structure, not profiled). The r <= 16 rows are padded to 16 inside the kernels (Triton's
smallest dot) and masked; the other dimensions are arbitrary (masked tiles). The products run
at ``Precision.HIGHEST`` (IEEE float32/float64 on the FMA units, never TF32), so the step equals
the XLA engine's to rounding. Under ``vmap`` Pallas adds the batch as a grid axis: one launch
per layer and pass for all members.

On a CPU Pallas can only interpret the kernels (``interpret=True``: the same kernel bodies,
as XLA loops; slow): that is how the tests check them on machines without a GPU. The engine
refuses to run interpreted unless ``DLNJAX_PALLAS_INTERPRET=1`` (see
:meth:`dlnjax.networks.engines.base.FullWidthEngine.kernels`).

Status: correct (tested, interpreted, against the XLA engine; on an H200 its layers after 40
steps were 8.3e-7 from XLA's) and lowered to Triton for CUDA in the tests. Timed on an H200
(2026-12-04, depth 20, 1000 hidden, 20 rates, float32): 4.9 ms a step against 3.3 ms for the
XLA engine, so ``auto`` does not choose it. The block sizes below are first guesses for an
H100, not tuned; ``benchmarks/linear_step.py`` times this engine next to the others on a GPU.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from dlnjax.networks.kernels import native

try:
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    _REASON = "ok"
except Exception as e:  # noqa: BLE001 - any failure means: not available, and say why
    pl = plt = None
    _REASON = f"Pallas' Triton backend cannot be imported: {type(e).__name__}: {e}"

Array = Any
MAX_RANK = native.MAX_RANK  # output units (16): the padded row count of every tile
# Tile sizes (powers of two; Triton's dots need every dimension >= 16).
BLOCKS: dict[str, int] = {
    "bottom_up_rows": 32,  # BR
    "bottom_up_cols": 128,  # BC
    "bottom_up_warps": 4,
    "bottom_up_stages": 2,
    "top_down_rows": 32,  # BK
    "top_down_cols": 64,  # BN
    "top_down_warps": 4,
    "top_down_stages": 3,
}
_HI = jax.lax.Precision.HIGHEST


def available() -> bool:
    """True when Pallas and its Triton backend import (they ship with jax)."""
    return _REASON == "ok"


def reason() -> str:
    """Why :func:`available` is False ("ok" when it is True)."""
    return _REASON


def on_gpu() -> bool:
    """An NVIDIA (CUDA) GPU is JAX's default device (the kernels compile through Triton for it)."""
    try:
        d = jax.devices()[0]
    except RuntimeError:
        return False
    if d.platform == "cuda":
        return True
    return d.platform == "gpu" and "cuda" in str(getattr(d.client, "platform_version", "")).lower()


def interpret_allowed() -> bool:
    return os.environ.get("DLNJAX_PALLAS_INTERPRET", "0") == "1"


def supports(weights: Sequence[Array]) -> bool:
    """The shapes and dtypes the kernels handle, backend aside (those of the native kernels:
    :func:`dlnjax.networks.kernels.native.fused_shapes_ok`)."""
    return native.fused_shapes_ok(weights)


def off_gpu_problem() -> str | None:
    """Why the kernels cannot run here (no CUDA GPU and no interpreter allowed), or None."""
    if on_gpu() or interpret_allowed():
        return None
    return (
        f"needs a CUDA GPU (the backend here is {jax.default_backend()!r}); unset it, or set "
        "DLNJAX_PALLAS_INTERPRET=1 to run its kernels in the Pallas interpreter instead (slow; for tests)"
    )


def _interpret(interpret: bool | None) -> bool:
    return (not on_gpu()) if interpret is None else bool(interpret)


def _i32(x: int) -> Array:
    return jnp.int32(x)


def top_down_layer(p: Array, w: Array, *, interpret: bool | None = None) -> Array:
    """``p @ w`` for ``p`` (r x n_out, r <= 16) and ``w`` (n_out x n_in), W read once."""
    r, n_out = p.shape
    n_in = w.shape[1]
    bk, bn = BLOCKS["top_down_rows"], BLOCKS["top_down_cols"]
    R = MAX_RANK
    n_tiles = pl.cdiv(n_out, bk)

    def kernel(p_ref: Any, w_ref: Any, o_ref: Any) -> None:
        j0 = pl.program_id(0) * bn
        cmask = (j0 + jnp.arange(bn, dtype=jnp.int32)) < n_in
        kmask = jnp.arange(R, dtype=jnp.int32) < r

        def body(t: Array, acc: Array) -> Array:
            k0 = t * bk
            km = (k0 + jnp.arange(bk, dtype=jnp.int32)) < n_out
            pt = plt.load(p_ref.at[pl.ds(_i32(0), R), pl.ds(k0, bk)], mask=kmask[:, None] & km[None, :], other=0.0)
            wt = plt.load(w_ref.at[pl.ds(k0, bk), pl.ds(j0, bn)], mask=km[:, None] & cmask[None, :], other=0.0)
            return acc + jnp.dot(pt, wt, precision=_HI)

        acc = jax.lax.fori_loop(_i32(0), _i32(n_tiles), body, jnp.zeros((R, bn), w.dtype))
        plt.store(o_ref.at[pl.ds(_i32(0), R), pl.ds(j0, bn)], acc, mask=kmask[:, None] & cmask[None, :])

    return pl.pallas_call(
        kernel,
        out_shape=jax.ShapeDtypeStruct((r, n_in), w.dtype),
        grid=(pl.cdiv(n_in, bn),),
        compiler_params=plt.CompilerParams(num_warps=BLOCKS["top_down_warps"], num_stages=BLOCKS["top_down_stages"]),
        interpret=_interpret(interpret),
        name="dlnjax_top_down",
    )(p, w)


def bottom_up_layer(
    lr: Array, m: Array, coef: Array | None, w: Array, *, interpret: bool | None = None
) -> tuple[Array, Array]:
    """``(w - lr * coef^T m, m w^T)`` for ``w`` (n_out x n_in), ``m`` (r x n_in) and ``coef``
    (r x n_out; ``None``: the identity, for the last layer, where n_out = r). W is read once and
    written once; the first result aliases ``w`` (in place when XLA can)."""
    r, n_in = m.shape
    n_out = w.shape[0]
    br, bc = BLOCKS["bottom_up_rows"], BLOCKS["bottom_up_cols"]
    R = MAX_RANK
    n_tiles = pl.cdiv(n_in, bc)
    identity = coef is None

    def kernel(*refs: Any) -> None:
        if identity:
            lr_ref, m_ref, w_ref, wo_ref, mn_ref = refs
        else:
            lr_ref, m_ref, c_ref, w_ref, wo_ref, mn_ref = refs
        i0 = pl.program_id(0) * br
        rows = i0 + jnp.arange(br, dtype=jnp.int32)
        rmask = rows < n_out
        ks = jnp.arange(R, dtype=jnp.int32)
        kmask = ks < r
        lr_v = plt.load(lr_ref.at[pl.ds(_i32(0), 1)])  # (1,)
        if identity:
            c = jnp.where((ks[:, None] == rows[None, :]) & kmask[:, None], jnp.ones((R, br), w.dtype), 0.0)
        else:
            c = plt.load(c_ref.at[pl.ds(_i32(0), R), pl.ds(i0, br)], mask=kmask[:, None] & rmask[None, :], other=0.0)
        c = c * lr_v[:, None]  # (R, br): lr P_{l+1} for these rows

        def body(t: Array, acc: Array) -> Array:
            j0 = t * bc
            cmask = (j0 + jnp.arange(bc, dtype=jnp.int32)) < n_in
            wmask = rmask[:, None] & cmask[None, :]
            wt = plt.load(w_ref.at[pl.ds(i0, br), pl.ds(j0, bc)], mask=wmask, other=0.0)  # (br, bc)
            mt = plt.load(m_ref.at[pl.ds(_i32(0), R), pl.ds(j0, bc)], mask=kmask[:, None] & cmask[None, :], other=0.0)
            acc = acc + jax.lax.dot_general(wt, mt, (((1,), (1,)), ((), ())), precision=_HI)  # (br, R)
            upd = jax.lax.dot_general(c, mt, (((0,), (0,)), ((), ())), precision=_HI)  # (br, bc)
            plt.store(wo_ref.at[pl.ds(i0, br), pl.ds(j0, bc)], wt - upd, mask=wmask)
            return acc

        acc = jax.lax.fori_loop(_i32(0), _i32(n_tiles), body, jnp.zeros((br, R), w.dtype))
        plt.store(mn_ref.at[pl.ds(_i32(0), R), pl.ds(i0, br)], acc.T, mask=kmask[:, None] & rmask[None, :])

    lr = jnp.reshape(jnp.asarray(lr, w.dtype), (1,))
    args = (lr, m, w) if identity else (lr, m, coef, w)
    return pl.pallas_call(
        kernel,
        out_shape=(jax.ShapeDtypeStruct(w.shape, w.dtype), jax.ShapeDtypeStruct((r, n_out), w.dtype)),
        grid=(pl.cdiv(n_out, br),),
        input_output_aliases={len(args) - 1: 0},
        compiler_params=plt.CompilerParams(num_warps=BLOCKS["bottom_up_warps"], num_stages=BLOCKS["bottom_up_stages"]),
        interpret=_interpret(interpret),
        name="dlnjax_bottom_up",
    )(*args)


def top_down(weights: Sequence[Array], *, interpret: bool | None = None) -> list[Array]:
    """``[P_1, ..., P_{N-1}]`` with ``P_l = W_N ... W_l`` (r x n_l); ``P_1`` is the end-to-end map
    (as :func:`dlnjax.networks.kernels.native.top_down`)."""
    weights = tuple(weights)
    acc = weights[-1]
    out = []
    for w in reversed(weights[:-1]):
        acc = top_down_layer(acc, w, interpret=interpret)
        out.append(acc)
    return out[::-1]


def bottom_up(
    lr: Array, g: Array, ps: Sequence[Array], weights: Sequence[Array], *, interpret: bool | None = None
) -> tuple[Array, ...]:
    """``W_l - lr * P_{l+1}^T M_l`` for every layer, with ``M_1 = g``, ``M_{l+1} = M_l W_l^T`` (old
    weights), ``ps = [P_2, ..., P_{N-1}]``, ``P_N = W_N`` and ``P_{N+1} = I`` (as
    :func:`dlnjax.networks.kernels.native.bottom_up`)."""
    weights = tuple(weights)
    n = len(weights)
    coefs = list(ps) + [weights[-1], None]
    m = g
    new = []
    for i, w in enumerate(weights):
        w_new, m_next = bottom_up_layer(lr, m, coefs[i], w, interpret=interpret)
        new.append(w_new)
        m = m_next
    assert len(new) == n
    return tuple(new)

