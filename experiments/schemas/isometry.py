"""``isometry`` (Fig. 7): singular values of deep tanh networks' end-to-end Jacobians."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from omegaconf import DictConfig

from .base import AppConfig, Precision, at_least, check_engine_not_used, positive, positive_list


@dataclass
class Config(AppConfig):
    gains: List[float] = field(default_factory=lambda: [0.9, 0.95, 1.0, 1.05, 1.1, 1.5])
    input_variances: List[float] = field(default_factory=lambda: [0.2, 1.0, 4.0])
    width: int = 300
    depth: int = 100
    # float64: an SVD resolves singular values down to ~eps x the largest; float32's 1e-7 would
    # cut off the small tail of the Gaussian products
    precision: Precision = Precision.float64


def check(cfg: DictConfig) -> None:
    positive_list(cfg, "gains", "input_variances")
    positive(cfg, "width")
    at_least(cfg, 2, "depth")
    check_engine_not_used(cfg, "isometry", "computes tanh networks' Jacobians")
