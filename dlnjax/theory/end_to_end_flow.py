"""The gradient flow of a *balanced* deep linear network, integrated on its end-to-end map.

A network ``W = W^{N} ... W^{1}`` (``N = N_l - 1`` weight matrices) is balanced when
``W^{l+1 T} W^{l+1} = W^{l} W^{l T}`` for every hidden layer: the matrix form of the paper's
conserved ``a_i^2 - a_j^2`` (Eq. 14) at the value zero. The gradient flow conserves it (its time
derivative is ``W^{l+1 T} R W^{l T} - W^{l+1 T} R W^{l T}``, ``R = -dE/dW``), and the decoupled
start of Fig. 4 (every layer ``a0 = u0^(1/N)`` on every mode) is balanced. On that set the
end-to-end map obeys a closed equation (Arora, Cohen & Hazan, ICML 2018, Theorem 1; derived again
below)::

    dW/dt = - sum_{j=1}^{N} (W W^T)^{(N-j)/N} G (W^T W)^{(j-1)/N},    G = dE/dW = W Sigma11 - Sigma31.

Derivation. Balance gives, by induction from the output end, ``(W^N...W^{j+1})(W^N...W^{j+1})^T
= (W W^T)^{(N-j)/N}`` and from the input end ``(W^{j-1}...W^1)^T (W^{j-1}...W^1) = (W^T
W)^{(j-1)/N}`` (each layer's Gram matrices are powers of the next one's). With ``dW^j/dt = -A_j^T
G B_j^T`` (Eq. 13, ``A_j = W^N...W^{j+1}``, ``B_j = W^{j-1}...W^1``) the product rule gives
``dW/dt = -sum_j A_j A_j^T G B_j^T B_j``, which is the sum above.

Evaluation. With the thin SVD ``W = U diag(s) V^T`` of rank r (``e_i = s_i^{2/N}``), the sum is
``U (K o U^T G V) V^T + U e^{N-1} U^T G (I - V V^T) + (I - U U^T) G V e^{N-1} V^T`` (plus ``(I - U
U^T) G (I - V V^T)`` when N = 1), where ``K_ik = sum_{m=0}^{N-1} e_i^{N-1-m} e_k^m =
e_max^{N-1} (1 - exp(-N d)) / (1 - exp(-d))`` with ``d = |log e_i - log e_k|`` (N where d = 0):
every factor is bounded, and the cost is that of a few ``N_out x n x r`` products, whatever the
depth. ``N`` enters only as a number, so one compilation serves every depth.

Why it is here. The flow path of Fig. 4 (``T_ct`` and the top Hessian eigenvalue ``lambda*`` along
the flow) was followed by gradient descent at a small rate; its cost grows with depth x steps
(depth 1000: 354k steps of a 1000-layer network). This flow costs the same at every depth, and it
is exact on the balanced set, where a small-rate run is accurate only to O(rate) and rounding: at
depth 1000 the float32 small-rate run crosses 1.45% late (docs/fig4.md, "The flow on the
end-to-end map"). The layers at any time are recovered up to an orthogonal change of basis in
each hidden layer (:func:`balanced_cores`), which changes neither the loss nor the Hessian's
spectrum (the change is an isometry of parameter space that leaves E invariant), so lambda* is
computed on them exactly.

Coordinates. Everything is in the compressed engine's rotated input basis
(:class:`dlnjax.networks.compressed.CStats`: ``Sigma11 = diag(lam)``), ``W`` is ``N_out x n``.
Nothing here does I/O; everything is jit-able.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

Array = Any

__all__ = ["EndToEndPath", "vector_field", "frozen_preconditioner", "balanced_cores", "balance_residual",
           "n_layers_of", "solve_path", "solve_path_jit", "flow_loss", "SOLVERS"]

SOLVERS = ("rosenbrock_w", "tsit5")


def _thin_svd(w: Array, rank: int) -> tuple[Array, Array, Array, Array]:
    """The top ``rank`` singular triplets of ``w`` (``N_out x n``, n large) through a QR of
    ``w^T`` and the SVD of its small triangular factor (4x cheaper than the SVD of ``w`` on a
    CPU, and as accurate: both are backward stable): ``(u, s, vr, q)`` with ``V = q vr^T``."""
    uf, s, vt, q = _svd_full(w)
    return uf[:, :rank], s[:rank], vt[:rank], q


def _svd_full(w: Array) -> tuple[Array, Array, Array, Array]:
    """``(U_f, s, vt, q)`` with ``w = U_f diag(s) vt q^T``: ``U_f`` a complete basis of the
    output space, through a QR of ``w^T`` and the SVD of its small triangular factor."""
    q, r = jnp.linalg.qr(w.T)  # w = r^T q^T
    uf, s, vt = jnp.linalg.svd(r.T)
    return uf, s, vt, q


def _kernel(s: Array, n: Array) -> tuple[Array, Array]:
    """``(K, e^{N-1})`` of the module docstring from the singular values ``s`` (N = ``n``)."""
    ell = (2.0 / n) * jnp.log(s)  # log e_i
    hi = jnp.maximum(ell[:, None], ell[None, :])
    d = jnp.abs(ell[:, None] - ell[None, :])
    d_safe = jnp.where(d > 0, d, 1.0)
    k = jnp.exp((n - 1.0) * hi) * jnp.where(d > 0, jnp.expm1(-n * d_safe) / jnp.expm1(-d_safe), n)
    return k, jnp.exp((n - 1.0) * ell)  # e^{N-1} = s^{2(N-1)/N}


def vector_field(w: Array, lam: Array, sigma31: Array, n_layers: Array, rank: int) -> Array:
    """``dW/dt`` of the balanced flow (module docstring) at the end-to-end map ``w`` (``N_out x
    n``, rank ``rank``) on the statistics ``(diag(lam), sigma31)``; ``n_layers`` = N (traced).
    The three terms regrouped: ``U ((K - e_i^{N-1} - e_k^{N-1}) o M) V^T + G V e^{N-1} V^T + U
    e^{N-1} U^T G`` with ``M = U^T G V``, so that only four products have the long side n."""
    g = w * lam - sigma31
    n = jnp.asarray(n_layers, w.dtype)
    u, s, vr, q = _thin_svd(w, rank)
    k, en = _kernel(s, n)
    gq = g @ q  # (N_out, r_q): G in the QR basis of w's row space
    gv = gq @ vr.T  # G V
    utg = u.T @ g
    m = u.T @ gv
    c = (k - en[:, None] - en[None, :]) * m
    p = ((u @ c + gv * en[None, :]) @ vr) @ q.T + (u * en[None, :]) @ utg
    # (I - U U^T) G (I - V V^T): the N = 1 term, computed only there (a branch, not a mask: two
    # more long products per evaluation otherwise)
    return -jax.lax.cond(n == 1.0, lambda: p + (g - u @ utg - ((gv - u @ m) @ vr) @ q.T), lambda: p)


def frozen_preconditioner(w: Array, lam: Array, n_layers: Array, rank: int, tau: Array) -> tuple:
    """The linear algebra of one Rosenbrock-W step at ``w`` (:mod:`dlnjax.theory.rosenbrock_w`):
    ``(solve, apply_j)`` for ``J X = -P_w(X Lambda)``, the field's Jacobian with the preconditioner
    ``P_w(M) = sum_j (W W^T)^{(N-j)/N} M (W^T W)^{(j-1)/N}`` held at ``w`` (``Lambda = diag(lam)``).
    ``J`` carries the stiff part: its top eigenvalue is the Hessian's (``K_11 lam``), and what it
    leaves out, ``dP/dW`` applied to the gradient, vanishes at the fixed point.

    The solve of ``X + tau P_w(X Lambda) = R``. Split ``P_w(M) = A M + F(M V) V^T`` with ``A = U_f
    diag(alpha) U_f^T`` (``alpha = e^{N-1}`` on the r modes; on the other ``N_out - r`` output
    directions 0, or 1 when N = 1) and ``F(Z) = -A Z + U (K o U^T Z) + (I - U U^T) Z e^{N-1}``,
    which is elementwise in the output basis: ``U_f^T F(Z) = C o U_f^T Z`` with ``C_ak = K_ak -
    e_a^{N-1}`` (a < r) and ``e_k^{N-1} - alpha_a`` (a >= r). ``S(X) = X + tau A X Lambda`` is
    elementwise too: ``(U_f^T S(X))_ab = (U_f^T X)_ab (1 + tau alpha_a lam_b)``. So ``X = S^{-1}(R -
    tau F(Z) V^T)`` with ``Z = X Lambda V``, and in ``Z~ = U_f^T Z`` each output row a solves its own
    r x r system ``z~_a (I + tau diag(c_a) V^T diag(lam / (1 + tau alpha_a lam)) V) = (U_f^T
    S^{-1}(R) Lambda V)_a``. Cost: a few ``N_out x n x r`` products and ``N_out`` r x r solves."""
    n = jnp.asarray(n_layers, w.dtype)
    n_out = w.shape[0]
    uf, s, vt, q = _svd_full(w)
    s = s[:rank]
    v = q @ vt[:rank].T  # (n, r)
    k, en = _kernel(s, n)
    rest = jnp.where(n == 1.0, 1.0, 0.0) * jnp.ones((n_out - rank,), w.dtype)
    alpha = jnp.concatenate([en, rest])
    c = jnp.concatenate([k - en[:, None], en[None, :] - rest[:, None]])  # (N_out, r)
    dmat = 1.0 + tau * alpha[:, None] * lam[None, :]
    g = (v.T[None] * (lam[None, :] / dmat)[:, None, :]) @ v  # (N_out, r, r): V^T diag(lam / D_a) V
    m = jnp.eye(rank, dtype=w.dtype)[None] + tau * c[:, :, None] * g  # row a: I + tau diag(c_a) G_a

    def solve(rhs: Array) -> Array:
        x0 = (uf.T @ rhs) / dmat  # U_f^T S^{-1}(R)
        z0 = ((uf @ x0) * lam[None, :]) @ v
        zt = jnp.linalg.solve(jnp.swapaxes(m, 1, 2), (uf.T @ z0)[:, :, None])[:, :, 0]  # z~_a M_a = z0~_a
        return uf @ (x0 - tau * ((c * zt) @ v.T) / dmat)

    def apply_j(x: Array) -> Array:
        xl = x * lam[None, :]
        return -(uf @ (alpha[:, None] * (uf.T @ xl) + (c * (uf.T @ (xl @ v))) @ v.T))

    return solve, apply_j


def flow_loss(w: Array, cs: Any) -> Array:
    """E of the end-to-end map ``w`` (rotated) on ``cs`` (:func:`dlnjax.networks.compressed.loss`)."""
    return 0.5 * cs.tr33 - jnp.sum(w * cs.sigma31) + 0.5 * jnp.sum(w * w * cs.lam)


def n_layers_of(cores: Any, last_trained: bool = True) -> Array:
    """N, the number of trained weight matrices of a compressed network (depth - 1; 1 for depth 2)."""
    return cores.n_hidden + 2 if last_trained else jnp.ones_like(cores.n_hidden)


def balanced_cores(w: Array, template: Any, last_trained: bool = True) -> Any:
    """Balanced cores with end-to-end map ``w`` (:class:`dlnjax.networks.compressed.Cores`, the
    shapes, depth and null part of ``template``): ``last = U s^{1/N}``, hidden ``diag(s^{1/N})``,
    ``first = s^{1/N} V^T``. Any balanced network with this map and hidden width r equals these up
    to an orthogonal change of basis in each hidden layer, so its loss and Hessian spectrum are
    these cores'. Depth 2 (``last_trained=False``): ``first = w``."""
    from dlnjax.networks.compressed import Cores

    if not last_trained:
        return template._replace(first=w.astype(template.first.dtype))
    r = template.rank
    n = jnp.asarray(n_layers_of(template), w.dtype)
    u, s, vr, q = _thin_svd(w, r)
    vt = vr @ q.T
    c = s ** (1.0 / n)
    live = (jnp.arange(template.hidden.shape[0]) < template.n_hidden)[:, None, None]
    hidden = jnp.where(live, jnp.diag(c)[None], jnp.eye(r, dtype=w.dtype)[None])
    return Cores(c[:, None] * vt, hidden, u * c[None, :], template.first_null, template.n_hidden)


def balance_residual(cores: Any) -> float:
    """``max_l ||W^{l+1 T} W^{l+1} - W^l W^{l T}||_max`` over the trained cores, relative to the
    largest Gram entry (host-side, float64): 0 on a balanced network."""
    first, last = np.asarray(cores.first, np.float64), np.asarray(cores.last, np.float64)
    hid = np.asarray(cores.hidden, np.float64)[: int(cores.n_hidden)]  # one transfer, not one per layer
    chain = [first] + list(hid) + [last]
    scale, worst = 0.0, 0.0
    for a, b in zip(chain[:-1], chain[1:]):
        ga, gb = a @ a.T, b.T @ b
        scale = max(scale, float(np.max(np.abs(ga))), float(np.max(np.abs(gb))))
        worst = max(worst, float(np.max(np.abs(gb - ga))))
    return worst / scale if scale > 0 else 0.0


class EndToEndPath(NamedTuple):
    """The flow from a start to the threshold: ``t_ct`` (inf: not reached by ``t_max``; 0: starts
    below), and the maps ``ws`` at the times ``ts``: the save times reached, then the end (``t_ct``,
    or ``t_max``), then inf (diffrax's layout when an event ends the solve early); the solver's
    step count."""

    t_ct: Array
    ts: Array  # (len(save_ts) + 1,)
    ws: Array  # (len(save_ts) + 1, N_out, n)
    num_steps: Array

    def snapshots(self) -> tuple[np.ndarray, np.ndarray]:
        """Host-side ``(times, maps)`` of the path, from the first save time to the end inclusive."""
        ts = np.asarray(self.ts)
        keep = np.nonzero(np.isfinite(ts))[0]
        return ts[keep], np.asarray(self.ws[keep])  # only the states reached leave the device


def solve_path(w0: Array, cs: Any, n_layers: Array, threshold: Array, t_max: Array, save_ts: Array, *, rank: int,
               rtol: float = 1e-8, atol: float = 1e-12, max_steps: int = 4_000_000,
               solver: str = "tsit5") -> EndToEndPath:
    """Integrate the balanced flow from ``w0`` to the first time ``E <= threshold`` or ``t_max``,
    saving the map at ``save_ts`` (increasing, inside ``(0, t_max]``). Pure and jit-able (``rank``,
    the tolerances and ``solver`` static). Both control the error of each component relative to
    itself (``atol + rtol |w|``, max norm).

    - ``solver="tsit5"``: diffrax's Tsit5 with PID control, the event located on the dense output.
      Its steps are bounded by stability (about ``lambda* T_ct / 3.3``), not accuracy, so ``rtol``
      barely changes their number: the reference, exact to rounding at rtol 1e-8.
    - ``solver="rosenbrock_w"``: ROS34PW2 (:mod:`dlnjax.theory.rosenbrock_w`) with
      :func:`frozen_preconditioner` as its J; steps sized by accuracy alone (at depth 1000, rtol
      1e-5: 13.4k steps instead of 94.5k, T_ct 8e-6 from Tsit5's; ``docs/fig4.md``)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, not {solver!r}")
    dtype = w0.dtype
    threshold = jnp.asarray(threshold, dtype)
    t_max = jnp.asarray(t_max, dtype)
    below = flow_loss(w0, cs) <= threshold

    def field(w: Array) -> Array:
        return vector_field(w, cs.lam, cs.sigma31, n_layers, rank)

    if solver == "rosenbrock_w":
        from dlnjax.theory import rosenbrock_w

        sol = rosenbrock_w.integrate(
            field, lambda w, tau: frozen_preconditioner(w, cs.lam, n_layers, rank, tau), w0, t_max, save_ts,
            event=lambda w: flow_loss(w, cs) - threshold, event_grad=lambda w: w * cs.lam - cs.sigma31,
            rtol=rtol, atol=atol, h0=1e-7 * t_max, max_steps=max_steps)
        return EndToEndPath(sol.t_event, sol.ts, sol.ys, sol.num_steps)

    def cond_fn(t, y, args, **kwargs):
        return flow_loss(y, cs) - threshold

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: field(y)),
        diffrax.Tsit5(), t0=jnp.zeros((), dtype), t1=t_max, dt0=1e-7 * t_max, y0=w0,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.4, norm=optx.max_norm),
        saveat=diffrax.SaveAt(ts=jnp.asarray(save_ts, dtype), t1=True),
        event=diffrax.Event(cond_fn, root_finder=optx.Newton(rtol=1e-12, atol=1e-14)),
        max_steps=max_steps, throw=False,
    )
    hit = sol.event_mask if sol.event_mask is not None else jnp.asarray(False)
    t_end = jnp.max(jnp.where(jnp.isfinite(sol.ts), sol.ts, -jnp.inf))  # the end: saves past it are inf
    t_ct = jnp.where(below, 0.0, jnp.where(hit, t_end, jnp.inf)).astype(dtype)
    return EndToEndPath(t_ct, sol.ts, sol.ys, sol.stats["num_steps"])


solve_path_jit = jax.jit(solve_path, static_argnames=("rank", "rtol", "atol", "max_steps", "solver"))
