"""``mode_dynamics`` (Fig. 3): mode strengths of a three-layer network on hierarchical data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig

from .base import AppConfig, ENGINE_DEFAULT, EngineName, at_least, check_data, multiple_of, positive, require


@dataclass
class Config(AppConfig):
    data: Any = MISSING
    hidden: int = 32
    lr: float = 0.5e-3
    u0: float = 1e-6
    init_std: Optional[float] = None  # default sqrt(u0 / hidden): |a||b| ~ u0 per mode
    num_steps: int = 4000
    record_every: int = 10
    modes: List[int] = field(default_factory=lambda: [1, 2, 3, 5, 12, 18, 31])
    n_init: int = 100
    decoupled_lr_factors: List[float] = field(default_factory=lambda: [1.0, 0.1])
    engine: EngineName = ENGINE_DEFAULT  # the full-width kernel of the random-start linear runs


def check(cfg: DictConfig) -> None:
    check_data(cfg)
    positive(cfg, "lr", "u0")
    at_least(cfg, 1, "hidden", "num_steps", "record_every", "n_init")
    multiple_of(cfg, "num_steps", "record_every")
    modes = list(cfg.modes)
    require(len(modes) >= 1 and all(m >= 1 for m in modes), "modes", modes, "a non-empty list of mode numbers >= 1 (1 = strongest)")
    f = list(cfg.decoupled_lr_factors)
    require(len(f) >= 1 and all(x > 0 for x in f), "decoupled_lr_factors", f, "a non-empty list of numbers > 0")
    if cfg.init_std is not None:
        positive(cfg, "init_std")
