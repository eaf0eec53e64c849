"""``depth_sweep`` (Fig. 4): learning time and best learning rate against depth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from omegaconf import DictConfig

from .base import check_depths
from .fig4_protocol import Fig4Protocol, check_protocol


@dataclass
class Config(Fig4Protocol):
    depths: List[int] = field(default_factory=lambda: [3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 50, 70, 100])


def check(cfg: DictConfig) -> None:
    check_protocol(cfg)
    check_depths(cfg.depths)
