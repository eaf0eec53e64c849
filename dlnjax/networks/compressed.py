"""The compressed engine: exact gradient descent on rank-r aligned deep linear networks.

Two exact reductions, derived from Eq. 13 (``dE/dW^l = A_l^T (W Sigma11 - Sigma31) B_l^T``):

1. **Inputs in Sigma11's eigenbasis.** With ``Sigma11 = Q Lambda Q^T`` the loss depends on the
   first layer only through ``W^1 Q``: ``E = 1/2 tr S33 - tr(W Q (S31 Q)^T) + 1/2 tr(W Q Lambda
   Q^T W^T)``. Gradient descent is equivariant under ``W^1 -> W^1 Q`` (``Q`` orthogonal), so the
   network trained on ``(Lambda, Sigma31 Q)`` takes exactly the rotated steps. A direction q
   with ``Sigma11 q = 0`` has ``X q = 0``, hence ``Sigma31 q = Y^T X q = 0``: it receives no
   gradient and never changes the loss, so it is dropped (its part of W^1 is kept as a
   constant for the end-to-end map). Null directions are found by the largest relative gap of
   the eigenvalue spectrum below ``1e-12 lambda_max`` (on the embedded digits: 126 dropped,
   115 constant pixels and 11 linear dependencies; eigenvalue 5e-12 below the gap, 3.4e-4
   above it; 658 inputs kept), not pixel by pixel. ``W Sigma11`` is then a column scaling.

2. **Rank-r aligned starts stay rank-r.** If ``W^l = P_{l+1} M_l P_l^T`` with ``P_l`` an
   ``N_l x r`` matrix of orthonormal columns for every hidden layer (``P_1 = I_{N_in}``,
   ``P_{N_l} = I_{N_out}``), every gradient of Eq. 13 has its columns in span ``P_{l+1}`` and
   its rows in span ``P_l`` (``A_l`` ends in ``W^{l+1}``, whose rows lie in span ``P_{l+1}``;
   ``B_l`` starts with ``W^{l-1}``, whose columns lie in span ``P_l``), so the form is kept for
   all time and ``dE/dW^l = P_{l+1} (dE/dM_l) P_l^T``: gradient descent on the cores ``M_l``
   (``r x N_in`` first, ``r x r`` hidden, ``N_out x r`` last) *is* gradient descent on the full
   layers, step for step. The hidden width never enters: 1000 hidden units cost what r do.
   :func:`dlnjax.init.functions.decoupled` builds such starts with ``P_l = R_l[:, :r]``,
   ``r = min(widths)`` (10 for digits at any hidden width >= 10).

The step on the cores (one member; ``F`` first core, ``H_1..H_L`` hidden, ``T`` last core,
``L = N_l - 3``; depth 2 has one layer, modelled as ``F`` with a fixed identity ``T``)::

    S_L = T,  S_{l-1} = S_l H_l        (suffix products, N_out x r)
    W = S_0 F,  G = W Lambda - Sigma31 Q,  E = 1/2 tr S33 - <W, S31 Q> + 1/2 <W, W Lambda>
    dE/dF = S_0^T G,  C = G F^T,  Q_1 = C,  Q_{l+1} = Q_l H_l^T
    dE/dH_l = S_l^T Q_l,  dE/dT = Q_{L+1}

The hidden cores are one ``(L_cap, r, r)`` stack walked by ``fori_loop`` with a traced trip
count ``L``, so one compilation serves every depth up to ``L_cap + 3`` (compile time is flat in
depth) and the cost of a step is proportional to the network's own depth.

Nothing here does I/O; everything is jit- and vmap-friendly (vmap over rates shares ``L``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlnjax.networks import curvature
from dlnjax.data.statistics import Stats
from dlnjax.networks.outcome import Member, MemberOutcome

Array = Any

# unrolled broadcast multiply-adds beat XLA's dot for products this small on a CPU (measured:
# 1.9 vs 5.2 us per hidden layer and step at r = 10)
SMALL_INNER = 16


class NotAlignedError(ValueError):
    """A start that is not rank-r aligned (cannot be compressed exactly)."""


# ----------------------------------------------------------------------------------------
# 1. the input rotation
# ----------------------------------------------------------------------------------------
class InputRotation(NamedTuple):
    """Sigma11's eigenbasis with its null directions split off (host-side, float64)."""

    q: np.ndarray  # (N_in, n) kept eigenvectors, eigenvalues descending
    lam: np.ndarray  # (n,) kept eigenvalues
    q_null: np.ndarray  # (N_in, N_in - n) dropped (null) directions
    lam_dropped_max: float  # largest dropped eigenvalue (0 if none)

    @property
    def n_kept(self) -> int:
        return int(self.q.shape[1])

    @property
    def n_dropped(self) -> int:
        return int(self.q_null.shape[1])

    @property
    def gap(self) -> float:
        """Smallest kept over largest dropped eigenvalue (inf when nothing is dropped)."""
        return float("inf") if self.n_dropped == 0 else float(self.lam[-1] / max(self.lam_dropped_max, 1e-300))


def rotate_inputs(sigma11: Array, floor: float = 1e-12, min_gap: float = 1e3) -> InputRotation:
    """Eigenbasis of ``sigma11`` (computed in float64), dropping its null directions.

    Only eigenvalues below ``floor * lambda_max`` (1e-12: numerically zero in float64, far below
    any real direction of image data, e.g. the digits' smallest real eigenvalue is 1e-9
    lambda_max) can be dropped, and only across a gap: the cut is the largest ratio
    ``lambda_i / lambda_{i+1}`` of consecutive eigenvalues (sorted descending) with ``lambda_{i+1}``
    below the floor, and it must exceed ``min_gap`` (1e3), else nothing is dropped. A real but
    small direction is therefore never dropped (dropping one would not be exact).
    Pass float64 statistics: in float32 rounding noise (~1e-7 lambda_max) buries real
    eigenvalues such as the digits' 3.4e-4 (1e-9 lambda_max)."""
    s11 = np.asarray(sigma11, np.float64)
    s11 = 0.5 * (s11 + s11.T)
    evals, evecs = np.linalg.eigh(s11)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    top = max(float(evals[0]), 1e-300)
    small = np.nonzero(evals < floor * top)[0]
    if small.size == 0:
        return InputRotation(evecs, evals, evecs[:, :0], 0.0)
    # exact zeros and rounding noise are clipped at the numerical-zero level (N eps lambda_max),
    # so that the cut falls at the gap between real and vanishing eigenvalues, not inside the noise
    pos = np.maximum(evals, top * np.finfo(np.float64).eps * len(evals))
    # candidate cuts: between i and i+1 with i+1 small (i >= 0)
    cand = small[small >= 1]
    if cand.size == 0:  # even the largest eigenvalue is 'small': a zero matrix
        return InputRotation(evecs[:, :0], evals[:0], evecs, float(max(evals[0], 0.0)))
    ratios = np.log(pos[cand - 1]) - np.log(pos[cand])
    if ratios.max() < np.log(min_gap):  # no clean gap: keep every direction (exact either way)
        return InputRotation(evecs, evals, evecs[:, :0], 0.0)
    cut = int(cand[np.argmax(ratios)])  # first dropped index
    return InputRotation(evecs[:, :cut], evals[:cut], evecs[:, cut:], float(max(evals[cut], 0.0)))


class CStats(NamedTuple):
    """Statistics in the rotated, reduced input basis: ``Sigma11 -> diag(lam)``."""

    lam: Array  # (n,)
    sigma31: Array  # (N_out, n) = Sigma31 Q
    tr33: Array  # scalar

    @property
    def n_in(self) -> int:
        return int(self.lam.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.sigma31.shape[0])

    def as_stats(self) -> Stats:
        """The same problem as full-width :class:`dlnjax.Stats` (Sigma11 = diag(lam))."""
        return Stats(jnp.diag(self.lam), self.sigma31, self.tr33)


def compress_stats(stats: Stats, rot: InputRotation, dtype: Any = None) -> CStats:
    """``(Lambda, Sigma31 Q, tr S33)``; the product is formed in float64 on the host."""
    dtype = dtype or stats.sigma11.dtype
    s31 = np.asarray(stats.sigma31, np.float64) @ rot.q
    return CStats(jnp.asarray(rot.lam, dtype), jnp.asarray(s31, dtype), jnp.asarray(np.float64(stats.tr33), dtype))


def rotated_full_width(stats: Stats, weights: Sequence[Array], rot: InputRotation, dtype: Any = None
                       ) -> tuple[Stats, tuple]:
    """The full-width network with its inputs in Sigma11's eigenbasis, for any start (not only
    aligned ones): the statistics ``(lam, Sigma31 Q, tr S33)`` as a :class:`Stats` whose
    ``sigma11`` is 1-D (diagonal: :func:`dlnjax.networks.linear.times_sigma11` multiplies it
    elementwise) and the weights with the first layer ``W1 Q`` (``weights[0]``: ``(..., N_1,
    N_in)``, any leading batch axes; formed in float64 on the host).

    Exact: gradient descent is equivariant under the orthogonal change of input variables
    ``W1 -> W1 Q``, so every later weight, the loss, the learning time and the Hessian's spectrum
    are those of the original network; the dropped null directions (eigenvalues below 1e-12
    lambda_max across a gap, :func:`rotate_inputs`) carry no gradient (``G q_null = (W Sigma11 -
    Sigma31) q_null = 0``) and no loss, so ``W1 q_null`` never moves and nothing depends on it.
    The step's ``W Sigma11`` costs ``N_out N_in`` instead of ``N_out N_in^2`` operations (with
    N_in = 784 it was most of a narrow network's step)."""
    dtype = dtype or stats.sigma11.dtype
    cs = compress_stats(stats, rot, dtype)
    w1 = np.asarray(weights[0], np.float64) @ rot.q
    return Stats(cs.lam, cs.sigma31, cs.tr33), (jnp.asarray(w1, dtype),) + tuple(jnp.asarray(w, dtype) for w in weights[1:])


# ----------------------------------------------------------------------------------------
# 2. cores
# ----------------------------------------------------------------------------------------
class Cores(NamedTuple):
    """A rank-r aligned network: ``W = last @ hidden[L-1] @ ... @ hidden[0] @ first``.

    ``hidden`` is a capacity stack ``(L_cap, r, r)`` of which the first ``n_hidden`` are used
    (the rest stay identity and are never read). ``first_null`` is the first layer's constant
    part on Sigma11's null directions (``r x (N_in - n)``), needed only for the end-to-end map.
    ``last_trained`` is False for depth 2 (one layer: ``first`` is the layer, ``last = I``)."""

    first: Array  # (r, n)
    hidden: Array  # (L_cap, r, r)
    last: Array  # (N_out, r)
    first_null: Array  # (r, N_in - n)
    n_hidden: Array  # int32 scalar: L = depth - 3 (0 for depth 2 and 3)

    @property
    def rank(self) -> int:
        return int(self.first.shape[-2])


def depth_of(n_hidden: int, last_trained: bool = True) -> int:
    return int(n_hidden) + 3 if last_trained else 2


def capacity(depths: Sequence[int]) -> int:
    """Hidden-stack capacity for a sweep over ``depths`` (at least 1, so shapes never vanish)."""
    return max([max(int(d) - 3, 0) for d in depths] + [1])


def _stack(hidden_cores: Sequence[Array], r: int, l_cap: int, dtype: Any) -> Array:
    eye = jnp.eye(r, dtype=dtype)
    if len(hidden_cores) > l_cap:
        raise ValueError(f"{len(hidden_cores)} hidden cores exceed the capacity {l_cap}")
    pad = [eye] * (l_cap - len(hidden_cores))
    return jnp.stack([jnp.asarray(h, dtype) for h in hidden_cores] + pad)


def decoupled_cores(
    widths: Sequence[int],
    u0: float | Array,
    u_basis: Array,
    v_basis: Array,
    rot: InputRotation,
    *,
    l_cap: int | None = None,
    n_modes: int | None = None,
    dtype: Any = None,
) -> Cores:
    """The cores of :func:`dlnjax.init.functions.decoupled` (any hidden basis, any hidden widths):
    ``W^l = R_{l+1} D_l R_l^T`` with ``P_l = R_l[:, :r]`` gives ``M_1 = D_1 V_r^T``, hidden
    ``M_l = D_l`` (diagonal ``a0 = u0^(1/(N_l-1))``), ``M_last = U_r D``. No full-width weight is
    formed, so depth 1000 x 1000 hidden units costs what depth 1000 x r does."""
    dtype = dtype or jnp.result_type(float)
    widths = tuple(int(w) for w in widths)
    n = len(widths) - 1
    r = min(widths) if n_modes is None else int(n_modes)
    if r > min(widths):
        raise ValueError(f"n_modes={r} exceeds the narrowest layer ({min(widths)})")
    u0 = np.broadcast_to(np.asarray(u0, np.float64), (r,))
    a0 = np.sign(u0) * np.abs(u0) ** (1.0 / n)
    a_first = np.where(u0 < 0, a0, np.abs(a0))
    v = np.asarray(v_basis, np.float64)[:, :r]
    u = np.asarray(u_basis, np.float64)[:, :r]
    first_full = a_first[:, None] * v.T  # (r, N_in)
    l_hidden = max(n - 2, 0)
    l_cap = max(l_hidden, 1) if l_cap is None else int(l_cap)
    if n == 1:  # depth 2: one layer, W = U_r diag(u0) V_r^T
        first_full = (u * a_first[None, :]) @ v.T
        last = np.eye(first_full.shape[0])
        hidden = _stack([], first_full.shape[0], l_cap, dtype)
    else:
        last = u * np.abs(a0)[None, :]
        hidden = _stack([jnp.diag(jnp.asarray(np.abs(a0), dtype))] * l_hidden, r, l_cap, dtype)
    return Cores(
        jnp.asarray(first_full @ rot.q, dtype), hidden, jnp.asarray(last, dtype),
        jnp.asarray(first_full @ rot.q_null, dtype), jnp.asarray(l_hidden, jnp.int32),
    )


def _span(a: np.ndarray, tol: float) -> np.ndarray:
    """Orthonormal basis of the column space of ``a`` (singular values > tol * largest)."""
    if a.size == 0:
        return a[:, :0]
    uu, ss, _ = np.linalg.svd(a, full_matrices=False)
    if ss.size == 0 or ss[0] == 0:
        return uu[:, :0]
    return uu[:, ss > tol * ss[0]]


def aligned_bases(weights: Sequence[Array], rank: int | None = None, tol: float = 1e-10) -> list[np.ndarray]:
    """Bases ``P_2 .. P_{N_l-1}`` (N_l x r, orthonormal columns) with ``W^l = P_{l+1} M_l P_l^T``.

    ``P_l`` spans the column space of ``W^{l-1}`` plus the row space of ``W^l``; the start is
    rank-r aligned when that span has dimension <= r for every hidden layer (``r`` defaults to
    the narrowest width). Raises :class:`NotAlignedError` naming the layer otherwise. A span of
    smaller dimension is completed to r columns (the completion carries zero cores and, by
    Eq. 13, never receives gradient)."""
    ws = [np.asarray(w, np.float64) for w in weights]
    widths = [ws[0].shape[1]] + [w.shape[0] for w in ws]
    r = min(widths) if rank is None else int(rank)
    bases = []
    for l in range(1, len(ws)):  # hidden layer l+1 (1-based layer index), between W^l and W^{l+1}
        span = _span(np.concatenate([ws[l - 1], ws[l].T], axis=1), tol)
        if span.shape[1] > r:
            raise NotAlignedError(
                f"the start is not rank-{r} aligned: hidden layer {l + 1} (width {widths[l]}) carries a "
                f"{span.shape[1]}-dimensional span (column space of W^{l} plus row space of W^{l + 1}); "
                "compression is exact only for starts W^l = P_(l+1) M_l P_l^T with r orthonormal columns "
                "per hidden layer (e.g. init.decoupled). Run it at full width (compress=false)."
            )
        if span.shape[1] < r:
            # complete with directions orthogonal to the span
            rng = np.random.default_rng(0)
            extra = rng.standard_normal((span.shape[0], r - span.shape[1]))
            extra -= span @ (span.T @ extra)
            span = np.concatenate([span, np.linalg.qr(extra)[0]], axis=1)
        bases.append(span)
    return bases


def cores_from_weights(
    weights: Sequence[Array], rot: InputRotation, *, l_cap: int | None = None, rank: int | None = None,
    tol: float = 1e-10, dtype: Any = None,
) -> tuple[Cores, list[np.ndarray]]:
    """Compress full-width weights (any rank-r aligned start) into cores; also returns the
    hidden bases, for :func:`expand`. Refuses (:class:`NotAlignedError`) a start that is not
    aligned rather than compressing it approximately."""
    dtype = dtype or jnp.asarray(weights[0]).dtype
    ws = [np.asarray(w, np.float64) for w in weights]
    bases = aligned_bases(ws, rank=rank, tol=tol)
    n = len(ws)
    if n == 1:
        w = ws[0]
        return Cores(
            jnp.asarray(w @ rot.q, dtype), _stack([], w.shape[0], l_cap or 1, dtype), jnp.eye(w.shape[0], dtype=dtype),
            jnp.asarray(w @ rot.q_null, dtype), jnp.asarray(0, jnp.int32),
        ), bases
    full_bases = [None] + bases + [None]  # P_1 = I, P_last = I

    def core(l: int) -> np.ndarray:
        m = ws[l]
        if full_bases[l + 1] is not None:
            m = full_bases[l + 1].T @ m
        if full_bases[l] is not None:
            m = m @ full_bases[l]
        return m

    first = core(0)
    resid = max(
        float(np.linalg.norm(ws[l] - (full_bases[l + 1] @ core(l) if full_bases[l + 1] is not None else core(l))
                             @ (full_bases[l].T if full_bases[l] is not None else np.eye(ws[l].shape[1]))))
        / max(float(np.linalg.norm(ws[l])), 1e-300)
        for l in range(n)
    )
    if resid > 1e3 * tol:
        raise NotAlignedError(f"the start is not rank-{first.shape[0]} aligned (relative residual {resid:.2g})")
    hidden = [core(l) for l in range(1, n - 1)]
    l_cap = max(len(hidden), 1) if l_cap is None else int(l_cap)
    return Cores(
        jnp.asarray(first @ rot.q, dtype), _stack(hidden, first.shape[0], l_cap, dtype), jnp.asarray(core(n - 1), dtype),
        jnp.asarray(first @ rot.q_null, dtype), jnp.asarray(len(hidden), jnp.int32),
    ), bases


def expand(cores: Cores, bases: Sequence[np.ndarray], rot: InputRotation) -> tuple:
    """Full-width weights of ``cores`` with hidden bases ``bases`` (the inverse of
    :func:`cores_from_weights`; for tests)."""
    first = np.asarray(cores.first, np.float64) @ rot.q.T + np.asarray(cores.first_null, np.float64) @ rot.q_null.T
    if not bases:
        return (jnp.asarray(first, cores.first.dtype),)
    L = int(cores.n_hidden)
    hid = np.asarray(cores.hidden, np.float64)
    ws = [bases[0] @ first]
    for l in range(L):
        ws.append(bases[l + 1] @ hid[l] @ bases[l].T)
    ws.append(np.asarray(cores.last, np.float64) @ bases[-1].T)
    return tuple(jnp.asarray(w, cores.first.dtype) for w in ws)


# ----------------------------------------------------------------------------------------
# 3. the step
# ----------------------------------------------------------------------------------------
def _mm(a: Array, b: Array) -> Array:
    """``a @ b`` over the last two axes; unrolled multiply-adds when the inner dimension is small."""
    k = a.shape[-1]
    if k > SMALL_INNER:
        return a @ b
    acc = a[..., :, 0:1] * b[..., 0:1, :]
    for j in range(1, k):
        acc = acc + a[..., :, j : j + 1] * b[..., j : j + 1, :]
    return acc


def _mT(a: Array) -> Array:
    return jnp.swapaxes(a, -1, -2)


def suffix(cores: Cores, buf: Array) -> tuple[Array, Array]:
    """``S_0 = T H_L ... H_1`` and the suffix products ``S_l`` (written to ``buf[l-1]``)."""
    L = cores.n_hidden

    def body(i, c):
        s, b = c
        j = L - 1 - i
        b = jax.lax.dynamic_update_index_in_dim(b, s, j, 0)
        return _mm(s, jax.lax.dynamic_index_in_dim(cores.hidden, j, 0, keepdims=False)), b

    return jax.lax.fori_loop(0, L, body, (cores.last, buf))


def end_to_end_rotated(cores: Cores) -> Array:
    """``W Q`` (N_out x n): the end-to-end map on the kept input directions."""
    s0, _ = suffix(cores, jnp.zeros((cores.hidden.shape[0],) + cores.last.shape, cores.last.dtype))
    return _mm(s0, cores.first)


def end_to_end(cores: Cores, rot: InputRotation) -> Array:
    """The end-to-end map ``W`` (N_out x N_in) in the original (unrotated) input basis."""
    s0, _ = suffix(cores, jnp.zeros((cores.hidden.shape[0],) + cores.last.shape, cores.last.dtype))
    dtype = cores.first.dtype
    return s0 @ (cores.first @ jnp.asarray(rot.q.T, dtype) + cores.first_null @ jnp.asarray(rot.q_null.T, dtype))


def loss(cores: Cores, cs: CStats) -> Array:
    w = end_to_end_rotated(cores)
    return 0.5 * cs.tr33 - jnp.sum(w * cs.sigma31) + 0.5 * jnp.sum(w * w * cs.lam)


def _backward(cores: Cores, cs: CStats, s0: Array, w: Array, buf: Array) -> tuple[Array, Array, Array]:
    """The gradient of every core from :func:`forward`'s products (Eq. 13 through the hidden
    loop): ``(dE/dM_first, dE/dM_hidden (L_cap, r, r; zero beyond n_hidden), dE/dM_last)``."""
    g = w * cs.lam - cs.sigma31
    g_first = _mT(s0) @ g
    c = g @ _mT(cores.first)

    def body(j, carry):
        q, gh = carry
        h = jax.lax.dynamic_index_in_dim(cores.hidden, j, 0, keepdims=False)
        s = jax.lax.dynamic_index_in_dim(buf, j, 0, keepdims=False)
        gh = jax.lax.dynamic_update_index_in_dim(gh, _mm(_mT(s), q), j, 0)
        return _mm(q, _mT(h)), gh

    q_top, g_hidden = jax.lax.fori_loop(0, cores.n_hidden, body, (c, jnp.zeros_like(cores.hidden)))
    return g_first, g_hidden, q_top


def loss_and_grads(cores: Cores, cs: CStats, buf: Array | None = None) -> tuple[Array, Cores, Array]:
    """Loss and the gradient of every core (as a :class:`Cores`; hidden beyond ``n_hidden`` zero).

    ``buf`` is a ``(L_cap, N_out, r)`` scratch for the suffix products (returned for reuse)."""
    if buf is None:
        buf = jnp.zeros((cores.hidden.shape[0],) + cores.last.shape, cores.last.dtype)
    s0, w, e, buf = forward(cores, cs, buf)
    g_first, g_hidden, q_top = _backward(cores, cs, s0, w, buf)
    grads = Cores(g_first, g_hidden, q_top, jnp.zeros_like(cores.first_null), cores.n_hidden)
    return e, grads, buf


def forward(cores: Cores, cs: CStats, buf: Array) -> tuple[Array, Array, Array, Array]:
    """``(S_0, W Q, E, buf)``: the suffix products (into ``buf``), the map and the loss."""
    s0, buf = suffix(cores, buf)
    w = s0 @ cores.first
    e = 0.5 * cs.tr33 - jnp.sum(w * cs.sigma31) + 0.5 * jnp.sum(w * w * cs.lam)
    return s0, w, e, buf


def update(cores: Cores, cs: CStats, lr: Array, s0: Array, w: Array, buf: Array, last_trained: bool = True) -> Cores:
    """``M_l <- M_l - lr dE/dM_l`` for every core, from :func:`forward`'s products
    (:func:`_backward`'s gradients; hidden gradients beyond ``n_hidden`` are zero, so those cores
    stay as they are). ``lr = 0`` leaves every core bit-for-bit unchanged (a stopped member)."""
    g_first, g_hidden, q_top = _backward(cores, cs, s0, w, buf)
    new_last = cores.last - lr * q_top if last_trained else cores.last
    return Cores(cores.first - lr * g_first, cores.hidden - lr * g_hidden, new_last, cores.first_null, cores.n_hidden)


def step(cores: Cores, cs: CStats, lr: Array, buf: Array, last_trained: bool = True) -> tuple[Cores, Array, Array]:
    """One full-batch step of every core; returns the new cores, the loss *before* the step,
    and the scratch."""
    s0, w, e, buf = forward(cores, cs, buf)
    return update(cores, cs, lr, s0, w, buf, last_trained), e, buf


# ----------------------------------------------------------------------------------------
# 4. a member's run: until it crosses, diverges or reaches its step limit
# ----------------------------------------------------------------------------------------
class MemberState(NamedTuple):
    """One network's training state; a run can be continued from it (resume, longer limit)."""

    cores: Cores
    step: Array  # int32 updates applied
    cross_step: Array  # int32 first step with E < threshold (-1: none)
    diverged: Array  # bool
    diverge_step: Array  # int32 (-1)
    loss0: Array  # E at step 0
    loss_prev: Array  # E at the previous step (spike detection)
    spikes: Array  # int32 steps before the crossing at which E rose by more than spike_rtol
    first_spike: Array  # int32 (-1)
    max_rise: Array  # largest relative rise E_t / E_{t-1} - 1 before the crossing
    rec_loss: Array  # (R,) E every record_every steps (nan: not reached)
    rec_modes: Array  # (R, k) mode strengths diag(U^T W V) (original basis) at those steps


def init_member(cores: Cores, cs: CStats, n_records: int, n_modes: int) -> MemberState:
    e0 = _loss_jit(cores, cs)
    dt = e0.dtype
    i = jnp.int32
    nan = jnp.asarray(jnp.nan, dt)
    return MemberState(
        cores, i(0), i(-1), jnp.asarray(False), i(-1), e0, e0, i(0), i(-1), jnp.asarray(0.0, dt),
        jnp.full((n_records,), nan), jnp.full((n_records, n_modes), nan),
    )


def make_member_runner(
    cs: CStats,
    *,
    record_every: int,
    last_trained: bool = True,
    readout: tuple[Array, Array] | None = None,
    diverge_factor: float = 1e4,
    spike_rtol: float = 1e-3,
) -> Any:
    """``run(state, lr, threshold, limit) -> state``: steps until the member crosses
    ``threshold``, diverges, or has taken ``limit`` steps (all traced scalars: one compilation
    serves every rate, threshold, limit and depth up to the hidden capacity).

    Inside the loop, every step checks the loss *before* its update: the first step with
    ``E < threshold`` is ``cross_step`` (the run stops there); ``E`` not finite or above
    ``diverge_factor * E(0)`` marks divergence (the run stops); ``E_t > (1 + spike_rtol)
    E_{t-1}`` before the crossing is an edge-of-stability event (counted, first one kept,
    largest rise kept): records every ``record_every`` steps would miss them. ``readout = (U_r,
    V_rot)`` with ``V_rot = Q^T V_r`` gives the task's mode strengths at every record.
    jit it; vmap it over states and rates for a batch (members share ``n_hidden``).
    """
    record_every = int(record_every)

    def modes_of(cores: Cores) -> Array:
        if readout is None:
            return jnp.zeros((0,), cores.first.dtype)
        u, v = readout
        return jnp.einsum("or,on,nr->r", u, end_to_end_rotated(cores), v)

    def run(st: MemberState, lr: Array, threshold: Array, limit: Array) -> MemberState:
        dt = st.loss0.dtype
        lr = jnp.asarray(lr, dt)
        threshold = jnp.asarray(threshold, dt)
        limit = jnp.asarray(limit, jnp.int32)
        n_rec = st.rec_loss.shape[0]
        buf0 = jnp.zeros((st.cores.hidden.shape[0],) + st.cores.last.shape, dt)

        def done(s: MemberState) -> Array:
            return (s.cross_step >= 0) | s.diverged | (s.step >= limit)

        def one(s: MemberState, buf: Array) -> tuple[MemberState, Array]:
            s0, w, e, buf = forward(s.cores, cs, buf)
            bad = (~jnp.isfinite(e)) | (e > diverge_factor * jnp.abs(s.loss0) + 1e-30)
            crossed = (e < threshold) & ~bad
            rise = jnp.where(s.step > 0, e / s.loss_prev - 1.0, 0.0)
            spike = (rise > spike_rtol) & ~bad & ~crossed
            stop = bad | crossed
            new = update(s.cores, cs, jnp.where(stop, jnp.zeros_like(lr), lr), s0, w, buf, last_trained)
            rec_i = jnp.minimum(s.step // record_every, n_rec - 1)
            at_rec = (s.step % record_every == 0) & (s.step // record_every < n_rec) & ~bad
            rec_loss = s.rec_loss.at[rec_i].set(jnp.where(at_rec, e, s.rec_loss[rec_i]))
            rec_modes = s.rec_modes
            if readout is not None:
                rec_modes = jax.lax.cond(at_rec, lambda m: m.at[rec_i].set(modes_of(s.cores)), lambda m: m, rec_modes)
            return MemberState(
                new,
                s.step + jnp.where(stop, 0, 1).astype(jnp.int32),
                jnp.where(crossed, s.step, s.cross_step),
                s.diverged | bad,
                jnp.where(bad, s.step, s.diverge_step),
                s.loss0,
                e,
                s.spikes + spike.astype(jnp.int32),
                jnp.where(spike & (s.first_spike < 0), s.step, s.first_spike),
                jnp.maximum(s.max_rise, jnp.where(stop, 0.0, rise).astype(dt)),
                rec_loss,
                rec_modes,
            ), buf

        def cond(c):
            return ~done(c[0])

        def body(c):
            return one(*c)

        st, _ = jax.lax.while_loop(cond, body, (st, buf0))
        return st

    return run


def member_fn(
    cs: CStats, cores0: Cores, threshold: float, *, record_every: int, max_steps: int,
    readout: tuple[Array, Array] | None = None, last_trained: bool = True, runner: Any = None,
    diverge_factor: float = 1e4, spike_rtol: float = 1e-3,
) -> Member:
    """The compressed engine's :class:`~dlnjax.networks.outcome.Member`: ``member(lr, limit, resume)``
    runs one member from ``cores0`` (or continues ``resume``) to ``limit`` steps. Records cover
    up to ``max(max_steps, limit)`` steps (longer runs keep their first records). ``runner`` (a
    jitted :func:`make_member_runner`, or the native one) is built when not given."""

    run = runner or jax.jit(make_member_runner(cs, record_every=record_every, last_trained=last_trained,
                                               readout=readout, diverge_factor=diverge_factor,
                                               spike_rtol=spike_rtol))
    n_rec = int(max_steps) // int(record_every) + 1
    n_modes = 0 if readout is None else int(readout[0].shape[1])
    dtype = cores0.first.dtype
    thr = jnp.asarray(threshold, dtype)

    def member(lr: float, limit: int, resume: Any = None) -> Any:
        # an outcome replayed from a checkpoint keeps no state: continuing it means running it again
        # from the start to `limit` (deterministic, so the same numbers as continuing)
        st = resume.state if resume is not None and resume.state is not None else init_member(cores0, cs, n_rec, n_modes)
        st = run(st, jnp.asarray(lr, dtype), thr, jnp.asarray(int(limit), jnp.int32))
        loss = np.asarray(st.rec_loss)
        return MemberOutcome(
            float(lr), int(limit), int(st.step), int(st.cross_step), int(st.diverge_step) if bool(st.diverged) else -1,
            int(st.spikes), int(st.first_spike), float(st.max_rise),
            np.arange(n_rec) * int(record_every), loss, np.asarray(st.rec_modes), state=st,
        )

    def member_sharpness(o: Any, v0: Any = None, iters: int = 60) -> tuple[float, Any]:
        """Top Hessian eigenvalue at a run's current cores. Always started from the same fixed
        direction (``v0`` is ignored), so the value depends on the cores alone: a resumed sweep
        recomputes bit-identical numbers."""
        v0 = _random_direction(o.state.cores)
        lam, vec = _sharpness_jit(o.state.cores, cs, v0, iters=iters, last_trained=last_trained)
        return float(lam), vec

    return Member(member, member_sharpness)


# ----------------------------------------------------------------------------------------
# 5. sharpness: the top eigenvalue of the loss Hessian of the cores
# ----------------------------------------------------------------------------------------
def _grads_only(cores: Cores, cs: CStats, last_trained: bool) -> Cores:
    _, g, _ = loss_and_grads(cores, cs)
    if not last_trained:
        g = g._replace(last=jnp.zeros_like(g.last))
    return g


def _mask_hidden(c: Cores, n_hidden: Array) -> Cores:
    live = (jnp.arange(c.hidden.shape[0]) < n_hidden)[:, None, None]
    return c._replace(hidden=jnp.where(live, c.hidden, 0.0))


def _dot(a: Cores, b: Cores) -> Array:
    return jnp.sum(a.first * b.first) + jnp.sum(a.hidden * b.hidden) + jnp.sum(a.last * b.last)


def sharpness(cores: Cores, cs: CStats, v0: Cores | None = None, iters: int = 40, last_trained: bool = True) -> tuple[Array, Cores]:
    """Top eigenvalue of the Hessian of E with respect to the trained cores (and its eigenvector),
    by power iteration on Hessian-vector products: the forward-mode derivative (``jax.jvp``) of the
    hand-written gradient (Eq. 13), which runs through the hidden loop of any depth. The compressed
    network's top eigenvalue is the full network's whenever it exceeds the curvature that the extra
    width adds (directions outside the cores' spans). ``v0`` warm-starts the iteration (the
    previous snapshot's eigenvector along a trajectory). Power iteration converges to the
    eigenvalue of largest magnitude; along a training run from a small start the top positive
    one dominates. The iteration is :func:`dlnjax.networks.curvature.top_eigenpair`, with this
    parameter layout's inner product and scaling. Jit it (``iters`` and ``last_trained`` static)."""
    dt = cores.first.dtype
    if v0 is None:
        v0 = _random_direction(cores)
    if not last_trained:
        v0 = v0._replace(last=jnp.zeros_like(v0.last))
    v0 = _mask_hidden(v0, cores.n_hidden)

    def hvp(v: Cores) -> Cores:
        tang = Cores(v.first, v.hidden, v.last, jnp.zeros_like(cores.first_null), None)
        prim = cores._replace(n_hidden=None)

        def g(c):
            return _grads_only(c._replace(n_hidden=cores.n_hidden), cs, last_trained)._replace(n_hidden=None)

        out = jax.jvp(g, (prim,), (tang,))[1]
        return _mask_hidden(out._replace(n_hidden=cores.n_hidden), cores.n_hidden)

    def scale(v: Cores, c: Array) -> Cores:
        return jax.tree_util.tree_map(lambda x: x / c, v._replace(n_hidden=None))._replace(n_hidden=cores.n_hidden)

    def normalize(v: Cores) -> Cores:  # the norm inside the map: XLA fuses it per leaf (kept as written)
        return jax.tree_util.tree_map(lambda x: x / jnp.sqrt(_dot(v, v)), v._replace(n_hidden=None))._replace(n_hidden=cores.n_hidden)

    return curvature.top_eigenpair(hvp, v0, iters, dtype=dt, dot=_dot, scale=scale, normalize=normalize)


def _random_direction(cores: Cores) -> Cores:
    dt = cores.first.dtype
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    return Cores(jax.random.normal(k1, cores.first.shape, dt), jax.random.normal(k2, cores.hidden.shape, dt),
                 jax.random.normal(k3, cores.last.shape, dt), jnp.zeros_like(cores.first_null), cores.n_hidden)


# one compilation per shape, shared by every depth of a sweep (statistics are arguments)
_sharpness_jit = jax.jit(sharpness, static_argnames=("iters", "last_trained"))
_loss_jit = jax.jit(loss)


def input_direction_overlap(vec: Cores, rot: InputRotation, direction: Array) -> Array:
    """Share of a core-space direction's squared norm that acts on the input ``direction``.

    ``vec`` is a direction in the space of the trained cores (e.g. the top Hessian eigenvector from
    :func:`sharpness`); its first-layer part moves the first layer by ``dW^1 = P_2 vec.first Q^T``
    (``Q`` the kept eigenvectors of Sigma11), so its action on a unit input direction ``x`` (pixel
    space) is ``P_2 vec.first Q^T x``, of squared norm ``||vec.first Q^T x||^2`` (``P_2`` has
    orthonormal columns). Returned: that squared norm over ``<vec, vec>`` (all cores), a number in
    [0, 1]. With ``x = Q[:, 0]`` (Sigma11's top eigenvector: the top principal direction of the
    inputs; on raw pixels close to the mean image) it is the share of the first layer's column
    along that direction, ``||vec.first[:, 0]||^2 / <vec, vec>``. Summed over an orthonormal basis
    of inputs it gives the first layer's share. Pure; jit-able."""
    x = jnp.asarray(direction, vec.first.dtype)
    x = x / jnp.sqrt(jnp.sum(x * x))
    xr = jnp.asarray(rot.q, vec.first.dtype).T @ x  # (n,) coordinates in the kept eigenbasis
    col = vec.first @ xr
    return jnp.sum(col * col) / _dot(vec._replace(n_hidden=None), vec._replace(n_hidden=None))
