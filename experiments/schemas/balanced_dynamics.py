"""``balanced_dynamics``: exact beta-balanced dynamics of a one-hidden-layer network (rich to lazy)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from omegaconf import DictConfig

from .base import AppConfig, Precision, check_engine_not_used, require


@dataclass
class Config(AppConfig):
    n_in: int = 4
    n_hidden: int = 4
    n_out: int = 4
    singular_values: List[float] = field(default_factory=lambda: [3.0, 2.0, 1.0, 0.5])
    scales: List[float] = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0])
    signs: List[int] = field(default_factory=lambda: [-1, 0, 1])
    beta_factor: float = 1.0  # |beta| = beta_factor * scale^2
    t_max: float = 6.0  # flow time (rate x steps)
    n_times: int = 25  # saved times in [0, t_max]
    lr: float = 1.0e-3  # the simulation's rate (capped per scale, see the app's docstring)
    precision: Precision = Precision.float64


def check(cfg: DictConfig) -> None:
    for key in ("n_in", "n_hidden", "n_out"):
        require(cfg[key] >= 1, key, cfg[key], "an integer >= 1")
    sv = list(cfg.singular_values)
    require(len(sv) >= 1 and all(s > 0 for s in sv), "singular_values", sv, "a non-empty list of numbers > 0")
    require(len(sv) <= min(cfg.n_in, cfg.n_out), "singular_values", sv, f"at most min(n_in, n_out) = {min(cfg.n_in, cfg.n_out)} values")
    scales = list(cfg.scales)
    require(len(scales) >= 1 and all(s > 0 for s in scales), "scales", scales, "a non-empty list of numbers > 0")
    signs = list(cfg.signs)
    require(len(signs) >= 1 and all(s in (-1, 0, 1) for s in signs) and len(set(signs)) == len(signs), "signs", signs,
            "a non-empty list of distinct values from -1, 0, 1")
    if 1 in signs:
        require(cfg.n_hidden <= cfg.n_out, "n_hidden", cfg.n_hidden, f"<= n_out ({cfg.n_out}) when signs include 1 (beta > 0)")
    if -1 in signs:
        require(cfg.n_hidden <= cfg.n_in, "n_hidden", cfg.n_hidden, f"<= n_in ({cfg.n_in}) when signs include -1 (beta < 0)")
    require(cfg.beta_factor > 0, "beta_factor", cfg.beta_factor, "a number > 0")
    require(cfg.t_max > 0, "t_max", cfg.t_max, "a number > 0")
    require(cfg.n_times >= 2, "n_times", cfg.n_times, "an integer >= 2")
    require(cfg.lr > 0, "lr", cfg.lr, "a number > 0")
    require(cfg.t_max / cfg.lr <= 2e6, "lr", cfg.lr, f"a rate with t_max / lr <= 2e6 steps (t_max = {cfg.t_max})")
    check_engine_not_used(cfg, "balanced_dynamics", "trains two-layer networks by plain JAX")
