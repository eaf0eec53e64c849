"""``lr_sweep``: the inner sweep of Fig. 4 for one depth (learning time against rate)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from .base import require
from .fig4_protocol import Fig4Protocol, check_protocol


@dataclass
class Config(Fig4Protocol):
    depth: int = 10


def check(cfg: DictConfig) -> None:
    check_protocol(cfg)
    require(cfg.depth >= 2, "depth", cfg.depth, "an integer >= 2")
