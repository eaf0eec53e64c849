"""``pretraining`` (Fig. 5): the consistency condition (Eq. 18) and greedy pretraining."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING, DictConfig

from .base import RandomStartProtocol, at_least, check_random_start_protocol, positive, require


@dataclass
class Config(RandomStartProtocol):
    data: Any = MISSING
    depth: int = 5
    hidden: int = 64
    init_std: float = 0.01  # the random start: every weight i.i.d. N(0, init_std^2)
    max_steps: int = 40000
    chunk_steps: int = 1000
    submatrix: int = 30  # size of the displayed blocks of Sigma11 and V Sigma11 V^T
    random_basis_draws: int = 20


def check(cfg: DictConfig) -> None:
    check_random_start_protocol(cfg)
    require(cfg.depth >= 3, "depth", cfg.depth, "an integer >= 3 (pretraining needs a hidden layer)")
    positive(cfg, "init_std")
    at_least(cfg, 1, "submatrix", "random_basis_draws")
