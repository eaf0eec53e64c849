"""``init_comparison`` (Fig. 6A): learning time and best rate vs depth for several inits."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List

from omegaconf import MISSING, DictConfig

from dlnjax.inits import INITS

from .base import (ENGINE_DEFAULT, EngineName, LearningRates, Precision, PretrainConfig, ThresholdConfig, ThresholdReference, at_least,
                   check_data, check_depths, check_learning_rates, check_pretrain, check_threshold, multiple_of,
                   positive, require)


# The initialisations this figure can compare: every entry of dlnjax.inits.INITS (adding an init
# there makes it a value of `inits` here, with nothing else to edit).
InitKind = Enum("InitKind", {name: name for name in INITS.names})


@dataclass
class Config:
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
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    learning_rates: LearningRates = field(default_factory=LearningRates)
    # relative to the zero map's error: every initialisation is judged against the same number
    threshold: ThresholdConfig = field(default_factory=lambda: ThresholdConfig(reference=ThresholdReference.zero_map))
    max_steps: int = 20000
    chunk_steps: int = 500
    record_every: int = 10
    fit_min_depth: int = 5
    orthogonal_example: int = 100  # size of the random orthogonal matrix whose eigenvalues are shown
    seed: int = 0
    precision: Precision = Precision.float32
    checkpoint_every: int = 5000  # steps between saves of the training state (0: finished depths only)
    # the decoupled reference runs on the exact compressed engine (its own batch); false: full width
    compress: bool = True
    engine: EngineName = ENGINE_DEFAULT  # the full-width kernel (random starts are not compressible)


def check(cfg: DictConfig) -> None:
    check_data(cfg)
    positive(cfg, "u0", "gain", "init_std")
    at_least(cfg, 1, "hidden", "seeds", "max_steps", "chunk_steps", "record_every", "orthogonal_example")
    multiple_of(cfg, "chunk_steps", "record_every")
    check_depths(cfg.depths)
    require(len(cfg.inits) >= 1, "inits", list(cfg.inits), "a non-empty list of: " + ", ".join(INITS.names))
    if any(k.value == "pretrained" for k in cfg.inits):
        check_depths(cfg.depths, minimum=3, why="with inits including pretrained (it needs a hidden layer)")
    check_pretrain(cfg)
    check_learning_rates(cfg)
    check_threshold(cfg)
    require(cfg.checkpoint_every >= 0, "checkpoint_every", cfg.checkpoint_every, "an integer >= 0 (0: off)")
