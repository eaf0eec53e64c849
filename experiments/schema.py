"""Structured config schemas (dataclasses in Hydra's ConfigStore).

Types and enum values are checked by OmegaConf when the config is composed (a typo, an
unknown key, a non-numeric value or an unknown name fails with the key and the allowed
values); ranges are checked by :func:`validate`, which every app calls before doing any
work and which raises :class:`ConfigError` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config value outside its allowed range (message names key, value and what is allowed)."""


class DataName(Enum):
    hierarchy = "hierarchy"
    teacher = "teacher"
    embedded = "embedded"
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"


class Preprocessing(Enum):
    raw = "raw"
    centred = "centred"
    whitened = "whitened"


class Precision(Enum):
    float32 = "float32"
    float64 = "float64"


class ThresholdKind(Enum):
    relative = "relative"
    absolute = "absolute"


class Activation(Enum):
    linear = "linear"
    tanh = "tanh"
    relu = "relu"
    sigmoid = "sigmoid"


@dataclass
class DataConfig:
    """One schema for every data source; fields a source does not use are ignored."""

    name: DataName = MISSING
    seed: int = 0
    # hierarchy
    levels: int = 5
    branching: int = 2
    n_features: int = 1000
    flip_prob: float = 0.1
    # teacher
    singular_values: List[float] = field(default_factory=lambda: [8.0, 4.0, 2.0, 1.0])
    n_in: int = 8
    n_out: int = 8
    noise_std: float = 0.0
    # MNIST-format digits (embedded / mnist / fashion_mnist)
    root: Optional[str] = None
    download: bool = False
    n_train: Optional[int] = None
    preprocessing: Preprocessing = Preprocessing.raw


@dataclass
class PhasePortraitConfig:
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


@dataclass
class ModeDynamicsConfig:
    data: DataConfig = field(default_factory=DataConfig)
    hidden: int = 32
    lr: float = 0.5e-3
    u0: float = 1e-6
    init_std: Optional[float] = None  # default sqrt(u0 / hidden): |a||b| ~ u0 per mode
    num_steps: int = 4000
    record_every: int = 10
    modes: List[int] = field(default_factory=lambda: [1, 2, 3, 5, 12, 18, 31])
    n_init: int = 100
    seed: int = 0
    decoupled_lr_factors: List[float] = field(default_factory=lambda: [1.0, 0.1])
    precision: Precision = Precision.float32


@dataclass
class LearningRates:
    min: float = 1e-7
    max: float = 1e-4
    num: int = 20
    values: Optional[List[float]] = None  # explicit list overrides min/max/num


@dataclass
class ThresholdConfig:
    kind: ThresholdKind = ThresholdKind.relative
    eps: float = 0.05  # relative: E <= E* + eps (E(0) - E*)
    value: float = 1.3e4  # absolute: summed squared error (paper, 60,000 digits)


class EngineName(Enum):
    """The full-width kernel (``compress`` decides whether a network is compressed at all)."""

    auto = "auto"
    xla = "xla"
    native = "native"
    pallas = "pallas"


@dataclass
class RateStatsConfig:
    """How the robust Fig. 4 statistics are measured (see dlnjax.robust)."""

    stop_factor: float = 3.0  # a rate still above the threshold at this x the fastest crossing is stopped
    probe_steps: int = 2000  # before any rate has crossed, a run is parked after this many steps
    edge_bisections: int = 4  # bisection steps of the measured stability edge (grid ratio^(1/2^k))
    edge_patience: float = 5.0  # an edge probe must cross within this x the fastest crossing
    small_rate_factor: float = 16.0  # the gradient-flow run starts at the fastest rate / this
    band: float = 0.1  # the band of rates within this fraction of the fastest time
    snapshots: int = 16  # Hessian top-eigenvalue evaluations along the gradient-flow path
    spike_rtol: float = 1e-3  # a loss rise E_t > (1 + spike_rtol) E_(t-1) before the crossing is a spike


@dataclass
class DepthSweepConfig:
    data: DataConfig = field(default_factory=DataConfig)
    depths: List[int] = field(default_factory=lambda: [3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 50, 70, 100])
    hidden: int = 1000
    u0: float = 1e-3
    learning_rates: LearningRates = field(default_factory=LearningRates)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    max_steps: int = 20000
    chunk_steps: int = 500  # full-width runs (compress=false) step in chunks of this many steps
    record_every: int = 10
    hidden_basis: str = "random"
    fit_min_depth: int = 5
    seed: int = 0
    precision: Precision = Precision.float32
    # compress=true: exact compressed engine (decoupled starts: the hidden width drops out);
    # false: the full-width network on `engine`, for checking
    compress: bool = True
    engine: EngineName = EngineName.auto
    stats: RateStatsConfig = field(default_factory=RateStatsConfig)
    # kept for old overrides; the compressed sweep checkpoints every finished run instead
    checkpoint_every: int = 5000


@dataclass
class LrSweepConfig(DepthSweepConfig):
    depth: int = 10


class WeightKind(Enum):
    orthogonal = "orthogonal"
    gaussian = "gaussian"


@dataclass
class EdgeOfChaosConfig:
    gain_min: float = 0.5
    gain_max: float = 3.0
    gain_points: int = 201
    sim_gains: List[float] = field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.5, 2.0, 2.5, 3.0])
    widths: List[int] = field(default_factory=lambda: [50, 200, 1000])
    depth: int = 30
    q1: float = 1.0
    n_seeds: int = 4
    weights: WeightKind = WeightKind.orthogonal
    seed: int = 0
    precision: Precision = Precision.float32


@dataclass
class IsometryConfig:
    gains: List[float] = field(default_factory=lambda: [0.9, 0.95, 1.0, 1.05, 1.1, 1.5])
    input_variances: List[float] = field(default_factory=lambda: [0.2, 1.0, 4.0])
    width: int = 300
    depth: int = 100
    seed: int = 0
    # float64: an SVD resolves singular values down to ~eps x the largest; float32's 1e-7 would
    # cut off the small tail of the Gaussian products
    precision: Precision = Precision.float64


@dataclass
class DeepTanhConfig:
    data: DataConfig = field(default_factory=DataConfig)
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
    seed: int = 0
    precision: Precision = Precision.float32


@dataclass
class RandomProductsConfig:
    width: int = 200
    depths: List[int] = field(default_factory=lambda: [2, 3, 5, 10, 30])  # N_l: products of N_l - 1 matrices
    realisations: int = 50
    bin_width: float = 0.1
    seed: int = 0
    precision: Precision = Precision.float64


@dataclass
class PretrainConfig:
    """Greedy layer-wise autoencoder pretraining (Section 3)."""

    steps: int = 1000  # gradient steps per layer
    lr_scale: float = 0.5  # rate = lr_scale / lambda_max(C_l); < 1 is stable
    std: float = 0.01  # i.i.d. N(0, std^2) start of each autoencoder
    top_std: float = 0.01  # the output layer (not pretrainable) starts i.i.d. N(0, top_std^2)
    record_every: int = 10


@dataclass
class PretrainingConfig:
    data: DataConfig = field(default_factory=DataConfig)
    depth: int = 5
    hidden: int = 64
    init_std: float = 0.01  # the random start: every weight i.i.d. N(0, init_std^2)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    learning_rates: LearningRates = field(default_factory=LearningRates)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    max_steps: int = 40000
    chunk_steps: int = 1000
    record_every: int = 10
    submatrix: int = 30  # size of the displayed blocks of Sigma11 and V Sigma11 V^T
    random_basis_draws: int = 20
    seed: int = 0
    precision: Precision = Precision.float32


class InitKind(Enum):
    decoupled = "decoupled"
    scaled_gaussian = "scaled_gaussian"
    orthogonal = "orthogonal"
    pretrained = "pretrained"


@dataclass
class InitComparisonConfig:
    data: DataConfig = field(default_factory=DataConfig)
    depths: List[int] = field(default_factory=lambda: [3, 4, 6, 8, 12, 16, 24, 32])
    hidden: int = 64
    inits: List[InitKind] = field(
        default_factory=lambda: [InitKind.scaled_gaussian, InitKind.pretrained, InitKind.orthogonal, InitKind.decoupled]
    )
    seeds: int = 1  # random initialisations per (depth, rate); learning time = their median
    u0: float = 1e-3  # decoupled reference
    gain: float = 1.0  # orthogonal and scaled Gaussian gain
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    learning_rates: LearningRates = field(default_factory=LearningRates)
    threshold: ThresholdConfig = field(default_factory=ThresholdConfig)
    max_steps: int = 20000
    chunk_steps: int = 500
    record_every: int = 10
    fit_min_depth: int = 5
    orthogonal_example: int = 100  # size of the random orthogonal matrix whose eigenvalues are shown
    seed: int = 0
    precision: Precision = Precision.float32
    checkpoint_every: int = 5000  # steps between saves of the training state (0: finished depths only)
    # the decoupled reference runs on the exact compressed engine (its own batch); false: full width
    compress: bool = True


class ReproducePreset(Enum):
    quick = "quick"
    paper = "paper"


REPRODUCE_APPS = ["phase_portrait", "mode_dynamics", "depth_sweep", "pretraining", "init_comparison",
                  "random_products", "isometry", "edge_of_chaos", "deep_tanh"]


@dataclass
class ReproduceConfig:
    preset: ReproducePreset = ReproducePreset.quick
    only: List[str] = field(default_factory=list)  # a subset of the experiments (default: all)
    data_root: Optional[str] = None  # MNIST directory for the paper preset


cs = ConfigStore.instance()
cs.store(name="phase_portrait_schema", node=PhasePortraitConfig)
cs.store(name="mode_dynamics_schema", node=ModeDynamicsConfig)
cs.store(name="depth_sweep_schema", node=DepthSweepConfig)
cs.store(name="lr_sweep_schema", node=LrSweepConfig)
cs.store(name="edge_of_chaos_schema", node=EdgeOfChaosConfig)
cs.store(name="isometry_schema", node=IsometryConfig)
cs.store(name="deep_tanh_schema", node=DeepTanhConfig)
cs.store(name="random_products_schema", node=RandomProductsConfig)
cs.store(name="pretraining_schema", node=PretrainingConfig)
cs.store(name="init_comparison_schema", node=InitComparisonConfig)
cs.store(name="reproduce_schema", node=ReproduceConfig)


# ----------------------------------------------------------------------------------------
# range checks
# ----------------------------------------------------------------------------------------
def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config: {key}={value!r} (allowed: {allowed})")


def _positive(cfg: DictConfig, key: str) -> None:
    v = OmegaConf.select(cfg, key)
    _check(v is not None and v > 0, key, v, "a number > 0")


def _validate_data(d: DictConfig, prefix: str = "data") -> None:
    _check(d.levels >= 1, f"{prefix}.levels", d.levels, "an integer >= 1")
    _check(d.branching >= 2, f"{prefix}.branching", d.branching, "an integer >= 2")
    _check(d.n_features >= 1, f"{prefix}.n_features", d.n_features, "an integer >= 1")
    _check(0.0 <= d.flip_prob <= 1.0, f"{prefix}.flip_prob", d.flip_prob, "a probability in [0, 1]")
    _check(d.n_train is None or d.n_train >= 1, f"{prefix}.n_train", d.n_train, "null or an integer >= 1")
    if d.name == DataName.teacher:
        sv = list(d.singular_values)
        _check(len(sv) >= 1 and all(s >= 0 for s in sv), f"{prefix}.singular_values", sv, "a non-empty list of numbers >= 0")
        _check(len(sv) <= min(d.n_in, d.n_out), f"{prefix}.singular_values", sv, f"at most min(n_in, n_out) = {min(d.n_in, d.n_out)} values")


def validate(cfg: DictConfig) -> None:
    """Range checks beyond what the schema's types enforce (raises ConfigError)."""
    if "data" in cfg:
        _validate_data(cfg.data)
    if "lr" in cfg:
        _positive(cfg, "lr")
    for key in ("u0", "dt", "t_max", "tau", "s"):
        if key in cfg:
            _positive(cfg, key)
    for key in ("hidden", "num_steps", "record_every", "n_init", "max_steps", "chunk_steps", "grid"):
        if key in cfg:
            v = cfg[key]
            _check(v >= 1, key, v, "an integer >= 1")
    if "num_steps" in cfg and "record_every" in cfg:
        _check(cfg.num_steps % cfg.record_every == 0, "num_steps", cfg.num_steps, f"a multiple of record_every ({cfg.record_every})")
    if "chunk_steps" in cfg:
        _check(cfg.chunk_steps % cfg.record_every == 0, "chunk_steps", cfg.chunk_steps, f"a multiple of record_every ({cfg.record_every})")
    if "modes" in cfg:
        modes = list(cfg.modes)
        _check(len(modes) >= 1 and all(m >= 1 for m in modes), "modes", modes, "a non-empty list of mode numbers >= 1 (1 = strongest)")
    if "decoupled_lr_factors" in cfg:
        f = list(cfg.decoupled_lr_factors)
        _check(len(f) >= 1 and all(x > 0 for x in f), "decoupled_lr_factors", f, "a non-empty list of numbers > 0")
    if "init_std" in cfg and cfg.init_std is not None:
        _positive(cfg, "init_std")
    if "depths" in cfg:
        depths = list(cfg.depths)
        _check(len(depths) >= 1, "depths", depths, "a non-empty list of integers >= 2")
        _check(all(d >= 2 for d in depths), "depths", depths, "integers >= 2 (layers, input and output included)")
    if "depth" in cfg:
        _check(cfg.depth >= 2, "depth", cfg.depth, "an integer >= 2")
    if "learning_rates" in cfg:
        lr = cfg.learning_rates
        if lr["values"] is not None:
            vals = list(lr["values"])
            _check(len(vals) >= 1 and all(v > 0 for v in vals), "learning_rates.values", vals, "a non-empty list of numbers > 0")
        else:
            _check(lr["min"] > 0, "learning_rates.min", lr["min"], "a number > 0")
            _check(lr["max"] >= lr["min"], "learning_rates.max", lr["max"], f"a number >= learning_rates.min ({lr['min']})")
            _check(lr.num >= 1, "learning_rates.num", lr.num, "an integer >= 1")
    if "threshold" in cfg:
        _check(0.0 < cfg.threshold.eps < 1.0, "threshold.eps", cfg.threshold.eps, "a fraction in (0, 1)")
        _positive(cfg, "threshold.value")
    for key in ("gains", "sim_gains", "input_variances", "widths"):
        if key in cfg:
            vals = list(cfg[key])
            _check(len(vals) >= 1 and all(v > 0 for v in vals), key, vals, "a non-empty list of numbers > 0")
    for key in ("width", "n_seeds", "gain_points", "q1"):
        if key in cfg:
            _check(cfg[key] > 0, key, cfg[key], "a number > 0")
    if "bin_width" in cfg:
        _check(cfg.bin_width > 0, "bin_width", cfg.bin_width, "a number > 0")
    for key in ("batch_size", "epochs", "seeds", "realisations"):
        if key in cfg:
            _check(cfg[key] >= 1, key, cfg[key], "an integer >= 1")
    if "momentum" in cfg:
        _check(0.0 <= cfg.momentum < 1.0, "momentum", cfg.momentum, "a number in [0, 1)")
    if "error_threshold" in cfg:
        _check(0.0 < cfg.error_threshold < 1.0, "error_threshold", cfg.error_threshold, "a fraction in (0, 1)")
    if "gain_min" in cfg:
        _check(0 < cfg.gain_min < cfg.gain_max, "gain_min", cfg.gain_min, f"a number in (0, gain_max = {cfg.gain_max})")
    if "pretrain" in cfg:
        p = cfg.pretrain
        _check(p.steps >= 1, "pretrain.steps", p.steps, "an integer >= 1")
        _check(0.0 < p.lr_scale < 2.0, "pretrain.lr_scale", p.lr_scale, "a number in (0, 2) (1 = the stability edge of a learned mode)")
        _positive(cfg, "pretrain.std")
        _positive(cfg, "pretrain.top_std")
        _check(p.record_every >= 1 and p.steps % p.record_every == 0, "pretrain.record_every", p.record_every, f"an integer >= 1 dividing pretrain.steps ({p.steps})")
    if "init_std" in cfg and "pretrain" in cfg:
        _positive(cfg, "init_std")
    if "pretrain" in cfg and "depth" in cfg:
        _check(cfg.depth >= 3, "depth", cfg.depth, "an integer >= 3 (pretraining needs a hidden layer)")
    if "inits" in cfg:
        _check(len(cfg.inits) >= 1, "inits", list(cfg.inits), "a non-empty list of: " + ", ".join(k.value for k in InitKind))
    if "pretrain" in cfg and "depths" in cfg and any(k == InitKind.pretrained for k in cfg.get("inits", [])):
        _check(all(d >= 3 for d in cfg.depths), "depths", list(cfg.depths), "integers >= 3 with inits including pretrained (it needs a hidden layer)")
    for key in ("submatrix", "random_basis_draws", "orthogonal_example"):
        if key in cfg:
            _check(cfg[key] >= 1, key, cfg[key], "an integer >= 1")
    if "gain" in cfg:
        _positive(cfg, "gain")
    if "checkpoint_every" in cfg:
        _check(cfg.checkpoint_every >= 0, "checkpoint_every", cfg.checkpoint_every, "an integer >= 0 (0: off)")
    if "only" in cfg:
        bad = [a for a in cfg.only if a not in REPRODUCE_APPS]
        _check(not bad, "only", list(cfg.only), "a list of: " + ", ".join(REPRODUCE_APPS))
    if "stats" in cfg and "stop_factor" in cfg.stats:
        st = cfg.stats
        _check(st.stop_factor > 1.0, "stats.stop_factor", st.stop_factor, "a number > 1")
        _check(st.probe_steps >= 1, "stats.probe_steps", st.probe_steps, "an integer >= 1")
        _check(st.edge_bisections >= 0, "stats.edge_bisections", st.edge_bisections, "an integer >= 0")
        _check(st.edge_patience >= 1.0, "stats.edge_patience", st.edge_patience, "a number >= 1")
        _check(st.small_rate_factor >= 1.0, "stats.small_rate_factor", st.small_rate_factor, "a number >= 1")
        _check(0.0 < st.band < 1.0, "stats.band", st.band, "a fraction in (0, 1)")
        _check(st.snapshots >= 1, "stats.snapshots", st.snapshots, "an integer >= 1")
        _check(st.spike_rtol > 0.0, "stats.spike_rtol", st.spike_rtol, "a number > 0")
    if "hidden_basis" in cfg:
        _check(cfg.hidden_basis in ("random", "identity"), "hidden_basis", cfg.hidden_basis, "random, identity")
