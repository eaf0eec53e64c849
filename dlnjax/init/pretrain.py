"""Greedy layer-wise pretraining and the consistency condition (Section 3, Eq. 18; Fig. 5).

A linear autoencoder (target = input) trained on inputs with correlation ``C`` has
``Sigma31 = Sigma11 = C = Q Lambda Q^T``: its task modes are the principal components, every
mode's fixed point is strength 1 (``s / d = lambda / lambda``), so the product
``W_dec W_enc -> Q M Q^T`` with ``M -> I`` on the learned modes (the ICLR correction of the
main text's ``sqrt(Lambda)``; ``iclr-version-extras.md``). Balanced layers (the conserved
``a^2 - b^2`` stays ~0 from small random weights) give ``W_enc = R M^(1/2) Q^T``. That is a
decoupled start for a task ``Sigma31 = U S V^T`` when ``Q = V`` (Eq. 18) or when ``M`` is a
multiple of the identity on the task's modes; otherwise the task's modes are mixed.

Two numbers quantify it, both independent of ``R`` and of how ``V`` is completed:

* :func:`offdiag_fraction`: the share of the squared Frobenius mass of the task's rows of
  ``V^T Sigma11 V`` that lies off the diagonal, ``sum_a (||Sigma11 v_a||^2 - (v_a^T Sigma11
  v_a)^2) / sum_a ||Sigma11 v_a||^2``: 0 exactly when every task direction ``v_a`` is an
  eigenvector of ``Sigma11``. The baseline it must beat is the same number for random
  orthonormal directions (:func:`offdiag_fraction_random`).
* :func:`decoupling_offdiag`: the same share for the Gram matrix
  ``(W_enc V)^T (W_enc V)`` of a (pretrained) first layer: 0 exactly when ``W_enc V = R D``
  (a decoupled start for the task's modes).

No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dlnjax.init import functions as init_fns
from dlnjax.networks import engines, linear
from dlnjax.data.statistics import Stats

Array = Any

__all__ = [
    "offdiag_fraction",
    "offdiag_fraction_random",
    "completed_basis",
    "decoupling_offdiag",
    "autoencoder_stats",
    "train_autoencoder",
    "greedy_pretrain",
    "Pretrained",
    "pretrained_network",
]


def _row_offdiag(m_rows: np.ndarray, diag: np.ndarray) -> float:
    total = float(np.sum(m_rows**2))
    if total <= 0.0:
        return 0.0
    return float(max(total - float(np.sum(diag**2)), 0.0) / total)


def offdiag_fraction(sigma11: Array, v_task: Array) -> float:
    """Off-diagonal share of the squared mass of the task rows of ``V^T Sigma11 V`` (Eq. 18 test).

    ``v_task`` (N1 x r) holds the task's right singular vectors as orthonormal columns. The
    rows of a full orthonormal ``V`` carry ``||Sigma11 v_a||^2`` whatever its completion, so
    the number depends only on the task's directions. In float64 (numpy).
    """
    s11 = np.asarray(sigma11, np.float64)
    v = np.asarray(v_task, np.float64)
    a = s11 @ v  # (N1, r): column a = Sigma11 v_a, the a-th row of V^T Sigma11 V (transposed)
    return _row_offdiag(a, np.sum(v * a, axis=0))


def offdiag_fraction_random(sigma11: Array, r: int, key: Array, n_draws: int = 20) -> tuple[float, float]:
    """Mean and standard deviation of :func:`offdiag_fraction` for Haar-random r-frames."""
    n = int(np.shape(sigma11)[0])
    keys = jax.random.split(key, n_draws)
    vals = [offdiag_fraction(sigma11, init_fns.haar_orthogonal(k, n, r, jnp.float32)) for k in keys]
    return float(np.mean(vals)), float(np.std(vals))


def completed_basis(sigma11: Array, v_task: Array) -> np.ndarray:
    """``[v_task, E]``: the task's directions, completed by the eigenvectors (descending) of
    ``Sigma11`` restricted to their orthogonal complement.

    The completion most favourable to the condition: in this basis the complement block of
    ``V^T Sigma11 V`` is diagonal, so what is left off the diagonal is what the task fixes. Used
    for display (the centre panel of Fig. 5).
    """
    s11 = np.asarray(sigma11, np.float64)
    v = np.asarray(v_task, np.float64)
    n, r = v.shape
    # orthonormal basis of the complement: the last n - r left singular vectors of v
    # QR of [v, I] keeps v's span in its first r columns; the rest span the complement
    q, _ = np.linalg.qr(np.concatenate([v, np.eye(n)], axis=1))
    comp = q[:, r:n]
    evals, evecs = np.linalg.eigh(comp.T @ s11 @ comp)
    order = np.argsort(evals)[::-1]
    return np.concatenate([v, comp @ evecs[:, order]], axis=1)


def decoupling_offdiag(w_first: Array, v_task: Array) -> float:
    """Off-diagonal share of the task rows of the Gram matrix ``(W V)^T (W V)`` of a first layer.

    0 exactly when ``W v_a`` are mutually orthogonal, i.e. ``W V_r = R D`` for an orthonormal
    ``R`` and diagonal ``D``: the layer is a decoupled start for the task's modes (Section 2).
    """
    w = np.asarray(w_first, np.float64)
    v = np.asarray(v_task, np.float64)
    wv = w @ v  # (N2, r)
    g = wv.T @ wv  # (r, r) task block of the Gram
    # rows of the full Gram V^T W^T W V restricted to the task: W^T W v_a expressed in V
    full_rows = w.T @ wv  # (N1, r): ||.||^2 of column a = squared mass of row a of the Gram
    return _row_offdiag(full_rows, np.diagonal(g))


def autoencoder_stats(cov: Array) -> Stats:
    """Statistics of the autoencoder on inputs with correlation ``cov``: Sigma31 = Sigma11 = cov."""
    cov = jnp.asarray(cov)
    return Stats(cov, cov, jnp.trace(cov))


def train_autoencoder(
    key: Array,
    cov: Array,
    hidden: int,
    *,
    std: float,
    lr: float,
    steps: int,
    record_every: int,
) -> tuple[Array, Array, linear.Records, linear.TrainState]:
    """One linear autoencoder ``x -> W_dec W_enc x`` by full-batch gradient descent from
    i.i.d. N(0, std^2) weights on the correlation ``cov`` (sums over examples).

    Returns ``(W_enc (hidden x n), W_dec (n x hidden), records, final state)``; records hold the
    reconstruction error ``1/2 sum ||x - W_dec W_enc x||^2`` every ``record_every`` steps.
    """
    cov = jnp.asarray(cov)
    n = int(cov.shape[0])
    w0 = init_fns.small_gaussian(key, (n, int(hidden), n), std, dtype=cov.dtype)
    st, rec = engines.train(w0, autoencoder_stats(cov), lr, num_steps=int(steps), record_every=int(record_every))
    return st.weights[0], st.weights[1], rec, st


@dataclass
class Pretrained:
    """A greedy stack of pretrained layers (bottom first) and how each was trained."""

    layers: tuple  # W^1 (N2 x N1), W^2 (N3 x N2), ...
    learning_rates: list[float]  # per layer
    steps_per_layer: int
    record_steps: np.ndarray  # (T,)
    reconstruction_error: list[np.ndarray]  # per layer, (T,)
    initial_error: list[float]  # per layer: 1/2 tr C_l (the zero map's error)
    diverged: list[bool]

    @property
    def total_steps(self) -> int:
        return self.steps_per_layer * len(self.layers)


def greedy_pretrain(
    key: Array,
    sigma11: Array,
    hidden_widths: Sequence[int],
    *,
    std: float,
    lr_scale: float,
    steps: int,
    record_every: int,
) -> Pretrained:
    """Greedy layer-wise pretraining (Section 3): layer l is the encoder of a linear autoencoder
    trained on the representation below it, ``C_{l+1} = W^l C_l W^l^T`` with ``C_1 = Sigma11``.

    Each autoencoder runs ``steps`` full-batch steps at rate ``lr_scale / lambda_max(C_l)``: the
    stability edge of a balanced autoencoder mode at its fixed point is ``1 / lambda`` (its
    Hessian eigenvalue is ``lambda (a^2 + b^2) = 2 lambda``), so ``lr_scale < 1`` is stable for
    every mode, and mode a is learned in about ``lambda_max / (lr_scale lambda_a)`` steps
    times a logarithm: with a finite budget only the leading components are learned.
    """
    cov = jnp.asarray(sigma11)
    layers, lrs, errs, init_err, div = [], [], [], [], []
    rec_steps = None
    keys = jax.random.split(key, max(len(hidden_widths), 1))
    for k, h in zip(keys, hidden_widths):
        lam = float(np.linalg.eigvalsh(np.asarray(cov, np.float64)).max())
        if not np.isfinite(lam) or lam <= 0:
            raise ValueError("greedy_pretrain: the representation has no variance left to encode")
        lr = float(lr_scale) / lam
        enc, _dec, rec, st = train_autoencoder(k, cov, int(h), std=std, lr=lr, steps=steps, record_every=record_every)
        layers.append(enc)
        lrs.append(lr)
        errs.append(np.asarray(rec.loss, np.float64))
        init_err.append(0.5 * float(jnp.trace(cov)))
        div.append(bool(st.diverged))
        rec_steps = np.asarray(rec.step)
        cov = enc @ cov @ enc.T
    return Pretrained(tuple(layers), lrs, int(steps), rec_steps if rec_steps is not None else np.zeros(0), errs, init_err, div)


def pretrained_network(key: Array, pre: Pretrained, depth: int, n_out: int, top_std: float) -> tuple:
    """A ``depth``-layer network: the first ``depth - 2`` pretrained layers, then an output layer
    of i.i.d. N(0, top_std^2) weights (the output layer cannot be an autoencoder; as in greedy
    layer-wise practice it starts small and random and is learned during fine-tuning).
    """
    n_hidden = depth - 2
    if n_hidden > len(pre.layers):
        raise ValueError(f"depth {depth} needs {n_hidden} pretrained layers, the stack has {len(pre.layers)}")
    lower = tuple(pre.layers[:n_hidden])
    width = int(lower[-1].shape[0]) if lower else None
    if width is None:
        raise ValueError("depth must be >= 3 for a pretrained network (at least one hidden layer)")
    top = top_std * jax.random.normal(key, (int(n_out), width), lower[-1].dtype)
    return lower + (top,)
