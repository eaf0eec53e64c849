"""``random_products`` (Fig. 6B-C): spectra of products of random matrices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from omegaconf import DictConfig

from .base import AppConfig, Precision, at_least, check_depths, check_engine_not_used, positive


@dataclass
class Config(AppConfig):
    width: int = 200
    depths: List[int] = field(default_factory=lambda: [2, 3, 5, 10, 30])  # N_l: products of N_l - 1 matrices
    realisations: int = 50
    bin_width: float = 0.1
    precision: Precision = Precision.float64


def check(cfg: DictConfig) -> None:
    positive(cfg, "width", "bin_width")
    at_least(cfg, 1, "realisations")
    check_depths(cfg.depths)
    check_engine_not_used(cfg, "random_products", "multiplies random matrices")
