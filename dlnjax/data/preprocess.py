"""Input preprocessing, fitted on the training split and applied to both splits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dlnjax.data.core import Dataset

PREPROCESSING = ("raw", "centred", "whitened")


def preprocess(ds: Dataset, kind: str = "raw", rel_tol: float = 1e-6) -> Dataset:
    """``raw``: unchanged (pixels in [0, 1], as in the paper). ``centred``: training mean removed.

    ``whitened``: centred, then PCA-whitened so that ``Sigma11 = sum_mu x x^T = I`` exactly
    on the training set (the theory's assumption). Directions with variance below
    ``rel_tol`` times the largest (constant border pixels, and any direction beyond the
    rank of the training set) carry no signal and are dropped, so the input dimension
    becomes the number kept (``info['n_whitened_dims']``).
    """
    if kind == "raw":
        return replace(ds, info={**ds.info, "preprocessing": "raw"})
    if kind not in PREPROCESSING:
        raise ValueError(f"preprocessing={kind!r} (allowed: {', '.join(PREPROCESSING)})")
    mean = ds.x.mean(axis=0)
    xc = ds.x - mean
    xtc = None if ds.x_test is None else ds.x_test - mean
    if kind == "centred":
        return replace(ds, x=xc, x_test=xtc, info={**ds.info, "preprocessing": "centred"})
    cov = xc.T @ xc
    evals, evecs = np.linalg.eigh(cov)
    keep = evals > rel_tol * evals.max()
    w = evecs[:, keep] / np.sqrt(evals[keep])
    info = {**ds.info, "preprocessing": "whitened", "n_whitened_dims": int(keep.sum())}
    return replace(ds, x=xc @ w, x_test=None if xtc is None else xtc @ w, info=info)
