"""``deep_tanh`` (the talk's claim): deep tanh networks from orthogonal weights with gain g."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

from omegaconf import MISSING, DictConfig

from dlnjax.registry import enum_value

from .base import (AppConfig, DigitsName, at_least, check_data, check_engine_not_used, positive,
                   positive_list, require)


@dataclass
class Config(AppConfig):
    data: Any = MISSING
    depth: int = 30
    width: int = 128
    gains: List[float] = field(default_factory=lambda: [1.0, 1.1, 2.0, 4.0, 10.0])
    gaussian: bool = True  # also scaled Gaussian weights (gain 1)
    seeds: int = 2
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 128
    epochs: int = 10
    error_threshold: float = 0.05  # epochs_to_train_error: first epoch with train error below it


def check(cfg: DictConfig) -> None:
    check_data(cfg)
    name = enum_value(cfg.data.name)
    require(name in {d.value for d in DigitsName}, "data", name,
            "a data set with a test split: " + ", ".join(d.value for d in DigitsName))
    positive(cfg, "lr", "width")
    positive_list(cfg, "gains")
    at_least(cfg, 2, "depth")
    at_least(cfg, 1, "seeds", "batch_size", "epochs")
    require(0.0 <= cfg.momentum < 1.0, "momentum", cfg.momentum, "a number in [0, 1)")
    require(0.0 < cfg.error_threshold < 1.0, "error_threshold", cfg.error_threshold, "a fraction in (0, 1)")
    check_engine_not_used(cfg, "deep_tanh", "trains tanh networks")
