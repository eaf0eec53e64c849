"""The experiment apps: thin Hydra apps, one per figure family (``python -m experiments.<app>``).

:data:`APPS` is the one list of apps: their configs (``configs/<app>/``), schemas
(``experiments/schemas/<app>.py``), the reproduction report (``experiments.reproduce``) and the
tests all read it. Adding an app: its module here, its schema module, its config folder, and one
entry below. No app imports another; what they share lives in ``experiments/common.py`` and
``experiments/_shared/`` (``tests/test_layout.py`` enforces it).

Importing this package is cheap (no JAX): it only names things.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# The config tree (``configs/``, beside this package in a clone). Each app's config.yaml adds
# ``${oc.env:DLNJAX_CONFIGS}/shared`` (the ``hydra`` block, once) to Hydra's search path.
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
os.environ.setdefault("DLNJAX_CONFIGS", str(CONFIGS))


@dataclass(frozen=True)
class App:
    """One app. ``figure``: the paper's figure it reproduces (None: not part of the reproduction
    report's claims); ``figures``: the PNGs it writes that the report shows."""

    name: str
    summary: str
    figure: str | None = None
    figures: tuple[str, ...] = field(default_factory=tuple)
    has_data: bool = False  # has a `data` config group (a source of dlnjax.data.DATASETS)


APPS: dict[str, App] = {a.name: a for a in [
    App("phase_portrait", "three-layer scalar dynamics, hyperbolas, analytic learning time", "Fig. 2", ("phase_portrait.png",)),
    App("mode_dynamics", "mode strengths on hierarchical data: linear, tanh, theory", "Fig. 3", ("mode_dynamics.png",), True),
    App("depth_sweep", "learning time and best rate against depth (the main job)", "Fig. 4",
        ("depth_sweep.png", "depth_sweep_grid.png"), True),
    App("lr_sweep", "one depth of Fig. 4: learning time against rate, finite-rate theory", None, (), True),
    App("pretraining", "consistency condition (Eq. 18), greedy pretraining vs random", "Fig. 5", ("pretraining.png",), True),
    App("init_comparison", "learning time vs depth for several initialisations", "Fig. 6A", ("init_comparison.png",), True),
    App("random_products", "spectra of products of random matrices", "Fig. 6B–C", ("random_products.png",)),
    App("isometry", "Jacobian singular values of deep tanh networks", "Fig. 7", ("isometry.png",)),
    App("edge_of_chaos", "variance map fixed point vs simulated tanh networks", "Fig. 8", ("edge_of_chaos.png",)),
    App("deep_tanh", "30-layer tanh networks from orthogonal weights with gain g", "deep tanh (talk)", ("deep_tanh.png",), True),
    App("balanced_dynamics", "exact dynamics from beta-balanced starts: rich to lazy", None, (), False),
    App("reproduce", "every figure, then a report with verdicts", None, (), False),
]}
