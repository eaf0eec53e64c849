"""``pretraining`` (Fig. 5): the consistency condition (Eq. 18) and greedy pretraining."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig

from .base import (ENGINE_DEFAULT, EngineName, LearningRates, Precision, PretrainConfig, ThresholdConfig, ThresholdReference, at_least,
                   check_data, check_learning_rates, check_pretrain, check_threshold, multiple_of, positive, require)


@dataclass
class Config:
    data: Any = MISSING
    depth: int = 5
    hidden: int = 64
    init_std: float = 0.01  # the random start: every weight i.i.d. N(0, init_std^2)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    learning_rates: LearningRates = field(default_factory=LearningRates)
    # relative to the zero map's error, so that the pretrained and the random start are judged alike
    threshold: ThresholdConfig = field(default_factory=lambda: ThresholdConfig(reference=ThresholdReference.zero_map))
    max_steps: int = 40000
    chunk_steps: int = 1000
    record_every: int = 10
    submatrix: int = 30  # size of the displayed blocks of Sigma11 and V Sigma11 V^T
    random_basis_draws: int = 20
    seed: int = 0
    precision: Precision = Precision.float32
    engine: EngineName = ENGINE_DEFAULT  # the full-width kernel (random and pretrained starts are not compressible)


def check(cfg: DictConfig) -> None:
    check_data(cfg)
    require(cfg.depth >= 3, "depth", cfg.depth, "an integer >= 3 (pretraining needs a hidden layer)")
    positive(cfg, "init_std")
    at_least(cfg, 1, "hidden", "max_steps", "chunk_steps", "record_every", "submatrix", "random_basis_draws")
    multiple_of(cfg, "chunk_steps", "record_every")
    check_pretrain(cfg)
    check_learning_rates(cfg)
    check_threshold(cfg)
