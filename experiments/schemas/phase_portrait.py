"""``phase_portrait`` (Fig. 2): the three-layer scalar dynamics and their hyperbolas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from omegaconf import DictConfig

from .base import EngineName, Precision, at_least, check_engine_not_used, positive, require


@dataclass
class Config:
    s: float = 1.0
    tau: float = 1.0
    dt: float = 0.01  # step of the simulated gradient descent, in units of tau
    t_max: float = 8.0
    starts: List[List[float]] = field(
        default_factory=lambda: [[0.05, 0.6], [0.6, 0.05], [-0.3, 1.2], [1.4, -0.2], [0.02, 0.02], [1.8, 1.5], [-0.4, 0.5], [-0.9, 0.2]]
    )
    uf_fraction: float = 0.9  # u_f = fraction * s for the learning-time check
    grid: int = 21
    extent: float = 2.0
    precision: Precision = Precision.float64
    engine: EngineName = EngineName.auto  # recorded; scalar dynamics run on XLA


def check(cfg: DictConfig) -> None:
    positive(cfg, "s", "tau", "dt", "t_max", "extent")
    at_least(cfg, 1, "grid")
    require(0.0 < cfg.uf_fraction < 1.0, "uf_fraction", cfg.uf_fraction, "a fraction in (0, 1)")
    check_engine_not_used(cfg, "phase_portrait", "integrates scalar dynamics")
