"""``reproduce``: every figure experiment, then report.md / report.html."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from omegaconf import DictConfig

from .base import require


class ReproducePreset(Enum):
    quick = "quick"
    paper = "paper"


@dataclass
class Config:
    preset: ReproducePreset = ReproducePreset.quick
    only: List[str] = field(default_factory=list)  # a subset of the experiments (default: all)
    data_root: Optional[str] = None  # MNIST directory for the paper preset
    # runs at once, each its own process (0: one per CPU core; 1: one after another); the report
    # does not depend on it
    jobs: int = 2


def check(cfg: DictConfig) -> None:
    from experiments import APPS
    from experiments.reproduce import BEYOND_RUNS, FIG4_FASHION

    allowed = [name for name, app in APPS.items() if app.figure] + [b[0] for b in BEYOND_RUNS + [FIG4_FASHION]
                                                                      if b[0] not in APPS or not APPS[b[0]].figure]
    require(int(cfg.jobs) >= 0, "jobs", cfg.jobs, "an integer >= 0 (0: one per CPU core)")
    bad = [a for a in cfg.only if a not in allowed]
    require(not bad, "only", list(cfg.only), "a list of: " + ", ".join(allowed))
