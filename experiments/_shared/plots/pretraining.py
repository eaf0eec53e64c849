"""Fig. 5's figure (``pretraining``): the consistency condition (Eq. 18), greedy pretraining,
and pretrained vs random fine-tuning, drawn from a :class:`PretrainingResult`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # keeps JAX out of the import (apps import JAX only once they run)
    from dlnjax.init.pretrain import Pretrained


@dataclass(frozen=True)
class PretrainingResult:
    """What the figure draws (numpy arrays and plain numbers; no config).

    Fine-tuning ran one batch per start over the same rates: ``loss_*`` are (R, T) on
    ``steps``, ``learning_time_*`` (R,) with nan where not learned; ``best_*`` index each start's
    fastest rate (None if no rate learned)."""

    dataset: str
    depth: int
    init_std: float
    sigma11_block: np.ndarray  # Sigma11 on the most variable pixels (k x k)
    rotated_block: np.ndarray  # leading k x k block of V^T Sigma11 V (the task's modes first)
    task_modes: int
    offdiag: float  # off-diagonal share of the task rows (pretrain.offdiag_fraction)
    offdiag_random: float  # the same for random orthonormal directions
    pretrained: "Pretrained"  # record_steps, reconstruction_error, initial_error, layers, total_steps
    best_errors: list[float]  # each autoencoder's best reconstruction error, 1/2 sum_{a > h} lambda_a(C_l)
    learning_rates: np.ndarray  # (R,)
    steps: np.ndarray  # (T,)
    loss_random: np.ndarray
    loss_pretrained: np.ndarray
    learning_time_random: np.ndarray
    learning_time_pretrained: np.ndarray
    best_random: int | None
    best_pretrained: int | None
    threshold: float
    best_error: float  # E*


def _normalised(m: np.ndarray) -> np.ndarray:
    dg = np.sqrt(np.maximum(np.abs(np.diagonal(m)), 1e-300))
    return np.abs(m) / dg[:, None] / dg[None, :]


def figure(out: Path, r: PretrainingResult) -> None:
    """``pretraining.{png,pdf}``: Sigma11's block, V^T Sigma11 V's block, the pretraining curves with
    each layer's best error, and the fine-tuning curves (the pretrained one shifted right by the
    pretraining steps) with E* and the learning-time threshold."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    k = r.sigma11_block.shape[0]
    pre = r.pretrained
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.4), gridspec_kw=dict(width_ratios=[1, 1, 1.35, 1.35]))
    a0, a1, a2, a3 = axes
    a0.imshow(_normalised(r.sigma11_block), cmap="gray_r", vmin=0, vmax=1)
    a0.set_title(f"Σ11 block ({k} most variable pixels)\n|Σij| / √(Σii Σjj)", fontsize=9)
    a1.imshow(_normalised(r.rotated_block), cmap="gray_r", vmin=0, vmax=1)
    a1.axhline(r.task_modes - 0.5, color="tab:red", lw=0.8)
    a1.axvline(r.task_modes - 0.5, color="tab:red", lw=0.8)
    a1.set_title(f"V Σ11 Vᵀ, first {k} (task modes above the red line)\n"
                 f"off-diagonal share {r.offdiag:.3f} (random basis {r.offdiag_random:.3f})", fontsize=9)
    for a in (a0, a1):
        a.set_xticks([])
        a.set_yticks([])

    # pretraining diagnostics
    for i, (e, f, e0) in enumerate(zip(pre.reconstruction_error, r.best_errors, pre.initial_error)):
        c = plt.cm.viridis(i / max(len(r.best_errors) - 1, 1))
        a2.plot(pre.record_steps, e / e0, color=c, label=f"layer {i + 1} autoencoder")
        if f > 0:
            a2.axhline(f / e0, color=c, ls=":", lw=0.8, label=f"layer {i + 1}: best rank-{pre.layers[i].shape[0]} error")
    a2.set_yscale("log")
    a2.set_xlabel("pretraining step (per layer)")
    a2.set_ylabel("reconstruction error / ½ tr C_l")
    a2.set_title("Greedy pretraining (each layer on the one below)")
    a2.legend(fontsize=8)

    steps, shift, lr = r.steps, pre.total_steps, r.learning_rates
    i_rand, i_pre = r.best_random, r.best_pretrained
    if i_rand is not None:
        a3.plot(steps, r.loss_random[i_rand], color="k", label=f"random N(0, {r.init_std}²), lr {lr[i_rand]:.2g}")
    if i_pre is not None and i_pre != i_rand:
        a3.plot(steps, r.loss_random[i_pre], color="k", ls="--", label=f"random, at the pretrained start's rate {lr[i_pre]:.2g}")
    if i_pre is not None:
        a3.plot(steps + shift, r.loss_pretrained[i_pre], color="tab:red", label=f"pretrained, lr {lr[i_pre]:.2g}")
        a3.axvspan(0, shift, color="tab:red", alpha=0.08, label=f"pretraining ({shift} steps)")
    a3.axhline(r.threshold, color="0.5", ls="--", lw=0.8, label="learning-time threshold")
    a3.axhline(r.best_error, color="0.5", ls=":", lw=0.8, label=f"E* (best rank-{r.task_modes} error)")
    a3.set_xlabel("iteration")
    a3.set_ylabel("training error E")
    a3.set_title(f"{r.depth}-layer network on {r.dataset}")
    ends = [r.learning_time_random[i] if i is not None else np.nan for i in (i_rand, i_pre)]
    ends.append(r.learning_time_pretrained[i_pre] + shift if i_pre is not None else np.nan)
    if np.isfinite(ends).any():
        a3.set_xlim(0, 1.6 * np.nanmax(ends))
    a3.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "pretraining")
