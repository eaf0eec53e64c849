"""``edge_of_chaos`` (Fig. 8): the variance map's fixed point against simulated tanh networks."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List

from omegaconf import DictConfig

from dlnjax.init.registry import INITS

from .base import AppConfig, at_least, check_engine_not_used, positive, positive_list, require


# The inits of dlnjax.init.registry.INITS that make square weight stacks (and their aliases: `gaussian`
# is the scaled Gaussian), the orthogonal one first (the default).
_SQUARE = sorted((n for n in INITS.names if INITS[n].has_square_stack), key=lambda n: n != "orthogonal")
WeightKind = Enum("WeightKind", {n: n for n in _SQUARE + [a for a, t in INITS.aliases.items() if t in _SQUARE]})


@dataclass
class Config(AppConfig):
    gain_min: float = 0.5
    gain_max: float = 3.0
    gain_points: int = 201
    sim_gains: List[float] = field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.5, 2.0, 2.5, 3.0])
    widths: List[int] = field(default_factory=lambda: [50, 200, 1000])
    depth: int = 30
    q1: float = 1.0
    n_seeds: int = 4
    weights: WeightKind = WeightKind.orthogonal


def check(cfg: DictConfig) -> None:
    require(0 < cfg.gain_min < cfg.gain_max, "gain_min", cfg.gain_min, f"a number in (0, gain_max = {cfg.gain_max})")
    positive_list(cfg, "sim_gains", "widths")
    positive(cfg, "q1", "gain_points", "n_seeds")
    at_least(cfg, 2, "depth")
    check_engine_not_used(cfg, "edge_of_chaos", "simulates tanh networks")
