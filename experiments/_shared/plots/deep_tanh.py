"""The deep tanh figure (``deep_tanh``): training and test error per epoch for each
initialisation, drawn from a :class:`DeepTanhResult`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class DeepTanhResult:
    """What the figure draws (numpy arrays and plain numbers; no config).

    ``train_error`` and ``test_error`` are (I, E + 1): the mean over the finite members of each
    initialisation ``labels[i]`` at each epoch; ``gaussian[i]`` marks the scaled Gaussian start."""

    dataset: str
    depth: int
    width: int
    labels: list[str]
    gaussian: list[bool]
    epochs: np.ndarray  # (E + 1,)
    train_error: np.ndarray
    test_error: np.ndarray
    threshold: float  # the training-error threshold for "epochs to train error"


def figure(out: Path, r: DeepTanhResult) -> None:
    """``deep_tanh.{png,pdf}``: training error (with the threshold) and test error per epoch, one
    curve per initialisation (the scaled Gaussian dotted black), on log axes."""
    import matplotlib.pyplot as plt

    from ...common import save_figure

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    cols = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(r.labels)))
    for i, lab_ in enumerate(r.labels):
        ls = ":" if r.gaussian[i] else "-"
        c = "k" if r.gaussian[i] else cols[i]
        a1.plot(r.epochs, r.train_error[i], ls, color=c, marker="o", ms=3, label=lab_)
        a2.plot(r.epochs, r.test_error[i], ls, color=c, marker="o", ms=3, label=lab_)
    for ax, name in ((a1, "training"), (a2, "test")):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} error (fraction misclassified)")
        ax.set_title(f"{name.capitalize()} error, {r.depth}-layer tanh, width {r.width} ({r.dataset})")
    a1.axhline(r.threshold, color="0.6", lw=0.8, ls="--")
    a1.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "deep_tanh")
