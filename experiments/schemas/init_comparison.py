"""``init_comparison`` (Fig. 6A): learning time and best rate vs depth for several inits."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List

from omegaconf import MISSING, DictConfig

from dlnjax.init.registry import INITS

from .base import RandomStartProtocol, at_least, check_depths, check_random_start_protocol, positive, require


# The initialisations this figure can compare: every entry of dlnjax.init.registry.INITS (adding an init
# there makes it a value of `inits` here, with nothing else to edit).
InitKind = Enum("InitKind", {name: name for name in INITS.names})


@dataclass
class Config(RandomStartProtocol):
    data: Any = MISSING
    depths: List[int] = field(default_factory=lambda: [3, 4, 6, 8, 12, 16, 24, 32])
    hidden: int = 64
    inits: List[InitKind] = field(
        default_factory=lambda: [InitKind.scaled_gaussian, InitKind.pretrained, InitKind.orthogonal, InitKind.decoupled]
    )
    seeds: int = 1  # random initialisations per (depth, rate); learning time = their median
    u0: float = 1e-3  # decoupled reference
    gain: float = 1.0  # orthogonal and scaled Gaussian gain
    init_std: float = 0.01  # small_gaussian: every weight i.i.d. N(0, init_std^2)
    fit_min_depth: int = 5
    orthogonal_example: int = 100  # size of the random orthogonal matrix whose eigenvalues are shown
    checkpoint_every: int = 5000  # steps between saves of the training state (0: finished depths only)
    # the decoupled reference runs on the exact compressed engine (its own batch); false: full width
    compress: bool = True
    # the full-width batch with its hidden layers as one stack for every depth (one compilation
    # per batch size for all depths: dlnjax.measure.sweep.run_batch's ``capacity``) on the native
    # kernels (engine=auto where they build, or native); other engines keep a program per depth
    # (XLA's loops over a stack are slower, on a CPU and a GPU); false: a program per depth
    # (docs/benchmarks.md, "One compilation across depths at full width")
    stack_depths: bool = True


def check(cfg: DictConfig) -> None:
    check_random_start_protocol(cfg)
    positive(cfg, "u0", "gain", "init_std")
    at_least(cfg, 1, "seeds", "orthogonal_example")
    check_depths(cfg.depths)
    require(len(cfg.inits) >= 1, "inits", list(cfg.inits), "a non-empty list of: " + ", ".join(INITS.names))
    if any(k.value == "pretrained" for k in cfg.inits):
        check_depths(cfg.depths, minimum=3, why="with inits including pretrained (it needs a hidden layer)")
    require(cfg.checkpoint_every >= 0, "checkpoint_every", cfg.checkpoint_every, "an integer >= 0 (0: off)")
