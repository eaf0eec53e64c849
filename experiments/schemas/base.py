"""What the app schemas share: the config error, enums, common config blocks and their checks.

Types and enum values are checked by OmegaConf when a config is composed (a typo, an unknown
key, a non-numeric value or an unknown name fails there, with the key and the allowed values);
value ranges are checked by each app's ``check(cfg)`` (beside its schema, in
``experiments/schemas/<app>.py``), which raises :class:`ConfigError` with a one-line message
before any work is done.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, List, Optional

from omegaconf import DictConfig, OmegaConf

from dlnjax.data.registry import DigitsName, Preprocessing
from dlnjax.networks.engines import ENGINES, ENV
from dlnjax.registry import enum_value
from dlnjax.registry import require as _require


class ConfigError(ValueError):
    """A config value outside its allowed range (message names key, value and what is allowed)."""


class Precision(Enum):
    float32 = "float32"
    float64 = "float64"


# The full-width kernel of a linear-network step: the names of dlnjax.networks.engines.ENGINES (adding an
# engine there makes it a value of `engine`); ``auto`` picks by backend. ``compress`` (where an app
# has it) decides whether a network is compressed at all.
EngineName = Enum("EngineName", {name: name for name in ENGINES.names})


def _engine_default() -> EngineName:
    """``$DLNJAX_ENGINE`` when set to a known name, else ``auto``: the environment variable is only
    a default (read when the schemas are registered), and the engine is a concrete key of every
    resolved config, ``.hydra/config.yaml`` included. An unknown name is refused before any work
    by the apps' start-up check (:func:`experiments.common.check_engine`)."""
    try:
        return EngineName(os.environ.get(ENV, "auto"))
    except ValueError:
        return EngineName.auto


# apps with a full-width linear-network step (the engine matters)
ENGINE_DEFAULT: Any = _engine_default()


class ThresholdKind(Enum):
    relative = "relative"
    absolute = "absolute"


class ThresholdReference(Enum):
    """What a relative threshold is relative to (:mod:`dlnjax.measure.thresholds`).

    ``initial``: ``E <= E* + eps (E(0) - E*)`` (the loss of each run's own start);
    ``zero_map``: ``E <= E* + eps (E_0 - E*)``, ``E_0`` the error of the zero map (the same
    number for every start, so that different initialisations are judged alike)."""

    initial = "initial"
    zero_map = "zero_map"


@dataclass
class AppConfig:
    """Keys most apps share (an app's own schema subclasses it, redefining a default where its
    own differs: a redefined field keeps its place)."""

    seed: int = 0
    precision: Precision = Precision.float32
    engine: EngineName = EngineName.auto  # apps without a deep-linear step: recorded, XLA only


@dataclass
class LearningRates:
    min: float = 1e-7
    max: float = 1e-4
    num: int = 20
    values: Optional[List[float]] = None  # explicit list overrides min/max/num


@dataclass
class ThresholdConfig:
    kind: ThresholdKind = ThresholdKind.relative
    reference: ThresholdReference = ThresholdReference.initial  # relative: to E(0) or to the zero map
    eps: float = 0.05  # relative: E <= E* + eps (E_ref - E*)
    value: float = 1.3e4  # absolute: summed squared error (paper, 60,000 digits)


@dataclass
class PretrainConfig:
    """Greedy layer-wise autoencoder pretraining (Section 3)."""

    steps: int = 1000  # gradient steps per layer
    lr_scale: float = 0.5  # rate = lr_scale / lambda_max(C_l); < 1 is stable
    std: float = 0.01  # i.i.d. N(0, std^2) start of each autoencoder
    top_std: float = 0.01  # the output layer (not pretrainable) starts i.i.d. N(0, top_std^2)
    record_every: int = 10


@dataclass
class RandomStartProtocol(AppConfig):
    """Figs. 5 and 6A: random (and pretrained) starts trained at full width per rate of a grid, to a
    threshold relative to the zero map's error, so that every start is judged against one number."""

    engine: EngineName = ENGINE_DEFAULT  # the full-width kernel (random starts are not compressible)
    # train with the inputs in Sigma11's eigenbasis (exact: dlnjax.networks.compressed.rotated_full_width;
    # W Sigma11 becomes elementwise); false: in the pixel basis, for checking
    rotate_inputs: bool = True
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    learning_rates: LearningRates = field(default_factory=LearningRates)
    threshold: ThresholdConfig = field(default_factory=lambda: ThresholdConfig(reference=ThresholdReference.zero_map))
    max_steps: int = 20000
    chunk_steps: int = 500
    record_every: int = 10


def check_random_start_protocol(cfg: DictConfig) -> None:
    check_data(cfg)
    at_least(cfg, 1, "hidden", "max_steps", "chunk_steps", "record_every")
    multiple_of(cfg, "chunk_steps", "record_every")
    check_pretrain(cfg)
    check_learning_rates(cfg)
    check_threshold(cfg)


# ----------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------
def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise :class:`ConfigError` ``invalid config: key=value (allowed: ...)`` unless ``ok``
    (:func:`dlnjax.registry.require`)."""
    _require(ok, key, value, allowed, ConfigError)


def _get(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key)


def positive(cfg: DictConfig, *keys: str) -> None:
    for key in keys:
        v = _get(cfg, key)
        require(v is not None and v > 0, key, v, "a number > 0")


def at_least(cfg: DictConfig, n: int, *keys: str) -> None:
    for key in keys:
        v = _get(cfg, key)
        require(v is not None and v >= n, key, v, f"an integer >= {n}")


def positive_list(cfg: DictConfig, *keys: str) -> None:
    for key in keys:
        vals = list(_get(cfg, key))
        require(len(vals) >= 1 and all(v > 0 for v in vals), key, vals, "a non-empty list of numbers > 0")


def multiple_of(cfg: DictConfig, key: str, of: str) -> None:
    require(cfg[key] % cfg[of] == 0, key, cfg[key], f"a multiple of {of} ({cfg[of]})")


def check_depths(depths: Iterable[int], key: str = "depths", minimum: int = 2, why: str = "") -> None:
    depths = list(depths)
    require(len(depths) >= 1, key, depths, f"a non-empty list of integers >= {minimum}")
    require(all(d >= minimum for d in depths), key, depths,
            f"integers >= {minimum} " + (why or "(layers, input and output included)"))


def check_data(cfg: DictConfig) -> None:
    """The data source's own range checks (:mod:`dlnjax.data.registry`)."""
    from dlnjax.data import registry

    try:
        registry.check(cfg.data)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_learning_rates(cfg: DictConfig) -> None:
    lr = cfg.learning_rates
    if lr["values"] is not None:
        vals = list(lr["values"])
        require(len(vals) >= 1 and all(v > 0 for v in vals), "learning_rates.values", vals, "a non-empty list of numbers > 0")
    else:
        require(lr["min"] > 0, "learning_rates.min", lr["min"], "a number > 0")
        require(lr["max"] >= lr["min"], "learning_rates.max", lr["max"], f"a number >= learning_rates.min ({lr['min']})")
        require(lr.num >= 1, "learning_rates.num", lr.num, "an integer >= 1")


def check_threshold(cfg: DictConfig) -> None:
    require(0.0 < cfg.threshold.eps < 1.0, "threshold.eps", cfg.threshold.eps, "a fraction in (0, 1)")
    positive(cfg, "threshold.value")


def check_pretrain(cfg: DictConfig) -> None:
    p = cfg.pretrain
    require(p.steps >= 1, "pretrain.steps", p.steps, "an integer >= 1")
    require(0.0 < p.lr_scale < 2.0, "pretrain.lr_scale", p.lr_scale, "a number in (0, 2) (1 = the stability edge of a learned mode)")
    positive(cfg, "pretrain.std", "pretrain.top_std")
    require(p.record_every >= 1 and p.steps % p.record_every == 0, "pretrain.record_every", p.record_every,
            f"an integer >= 1 dividing pretrain.steps ({p.steps})")


def check_engine_not_used(cfg: DictConfig, app: str, what: str) -> None:
    """Apps that never take a full-width linear-network step record ``engine`` but can only run
    their own JAX code: anything but ``auto`` / ``xla`` is refused, not silently ignored."""
    name = enum_value(cfg.engine)
    require(name in ("auto", "xla"), "engine", name, f"auto or xla ({app} {what}; it has no native or Pallas kernel)")
