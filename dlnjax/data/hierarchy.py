"""Hierarchically structured data by diffusion down a tree (Saxe, McClelland & Ganguli 2013).

Used for Fig. 3: each feature starts at the root as +1 or -1 with equal probability and is
copied down a tree with ``levels`` levels of branching; at every edge the value flips with
probability ``flip_prob``. The leaves are the items: ``branching ** levels`` items, each
with a one-hot input, so ``Sigma11 = I`` and ``Sigma31 = Y^T`` (features x items).
"""

from __future__ import annotations

import numpy as np

from dlnjax.data.core import Dataset


def hierarchy(
    levels: int = 5, branching: int = 2, n_features: int = 1000, flip_prob: float = 0.1, seed: int = 0
) -> Dataset:
    """One-hot items (rows of the identity) and their +-1 features from the tree diffusion."""
    if levels < 1 or branching < 2 or n_features < 1 or not 0.0 <= flip_prob <= 1.0:
        raise ValueError(
            f"hierarchy: need levels >= 1, branching >= 2, n_features >= 1, 0 <= flip_prob <= 1; "
            f"got levels={levels}, branching={branching}, n_features={n_features}, flip_prob={flip_prob}"
        )
    rng = np.random.default_rng(seed)
    values = rng.choice(np.array([-1.0, 1.0]), size=(1, n_features))
    for _ in range(levels):
        values = np.repeat(values, branching, axis=0)
        flips = rng.random(values.shape) < flip_prob
        values = np.where(flips, -values, values)
    n_items = values.shape[0]
    x = np.eye(n_items)
    info = dict(levels=levels, branching=branching, n_features=n_features, flip_prob=flip_prob, seed=seed)
    return Dataset("hierarchy", x, values, info=info)
