"""The data-set registry: ``DATASETS[name]`` -> its config schema, range checks and loader.

Each source is one :class:`Source`: a dataclass schema (its own fields only, with defaults),
a ``check`` of value ranges, and ``load(config) -> Dataset``. The experiment apps' ``data``
config group is generated from this registry (``experiments/schemas``), so ``data=<name>``
selects a source, its fields are type-checked when the config is composed, and its ranges are
checked before any work. Adding a data set is one entry here plus its own module.

Checks raise ``ValueError`` with a one-line message naming the key, the value and what is
allowed (the apps turn it into their config error).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Callable, List, Optional

from dlnjax.data.core import Dataset
from dlnjax.registry import enum_value, require


class Preprocessing(Enum):
    """Input preprocessing of the digit sets (:func:`dlnjax.data.preprocess.preprocess`)."""

    raw = "raw"
    centred = "centred"
    whitened = "whitened"


class DigitsName(Enum):
    """The MNIST-format digit sets (:func:`dlnjax.data.digits.load_digits`)."""

    embedded = "embedded"
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"




# ----------------------------------------------------------------------------------------
# hierarchy (Fig. 3)
# ----------------------------------------------------------------------------------------
@dataclass
class HierarchyConfig:
    """Binary-tree diffusion (Fig. 3): ``branching ** levels`` one-hot items, ``n_features``
    +-1 features, each flipped with ``flip_prob`` at every edge of the tree."""

    name: str = "hierarchy"
    levels: int = 5
    branching: int = 2
    n_features: int = 1000
    flip_prob: float = 0.1
    seed: int = 0


def _check_hierarchy(d: Any, prefix: str) -> None:
    require(d.levels >= 1, f"{prefix}.levels", d.levels, "an integer >= 1")
    require(d.branching >= 2, f"{prefix}.branching", d.branching, "an integer >= 2")
    require(d.n_features >= 1, f"{prefix}.n_features", d.n_features, "an integer >= 1")
    require(0.0 <= d.flip_prob <= 1.0, f"{prefix}.flip_prob", d.flip_prob, "a probability in [0, 1]")


def _load_hierarchy(d: Any) -> Dataset:
    from dlnjax.data.hierarchy import hierarchy

    return hierarchy(levels=d.levels, branching=d.branching, n_features=d.n_features, flip_prob=d.flip_prob, seed=d.seed)


# ----------------------------------------------------------------------------------------
# teacher (whitened inputs, exact theory checks)
# ----------------------------------------------------------------------------------------
@dataclass
class TeacherConfig:
    """Whitened inputs (``Sigma11 = I``) and a linear teacher with these singular values."""

    name: str = "teacher"
    singular_values: List[float] = field(default_factory=lambda: [8.0, 4.0, 2.0, 1.0])
    n_in: int = 8
    n_out: int = 8
    noise_std: float = 0.0
    n_train: Optional[int] = None  # examples (rows of X, orthonormal columns); default n_in
    seed: int = 0


def _check_teacher(d: Any, prefix: str) -> None:
    sv = list(d.singular_values)
    require(len(sv) >= 1 and all(s >= 0 for s in sv), f"{prefix}.singular_values", sv, "a non-empty list of numbers >= 0")
    require(d.n_in >= 1, f"{prefix}.n_in", d.n_in, "an integer >= 1")
    require(d.n_out >= 1, f"{prefix}.n_out", d.n_out, "an integer >= 1")
    require(len(sv) <= min(d.n_in, d.n_out), f"{prefix}.singular_values", sv,
             f"at most min(n_in, n_out) = {min(d.n_in, d.n_out)} values")
    require(d.noise_std >= 0, f"{prefix}.noise_std", d.noise_std, "a number >= 0")
    require(d.n_train is None or d.n_train >= d.n_in, f"{prefix}.n_train", d.n_train, f"null or an integer >= n_in ({d.n_in})")


def _load_teacher(d: Any) -> Dataset:
    from dlnjax.data.teacher import teacher

    return teacher(list(d.singular_values), d.n_in, d.n_out, n_examples=d.n_train, noise_std=d.noise_std, seed=d.seed)


# ----------------------------------------------------------------------------------------
# MNIST-format digits: embedded (no download), mnist, fashion_mnist
# ----------------------------------------------------------------------------------------
@dataclass
class DigitsConfig:
    """MNIST-format digits. ``root``: data.root, else ``$DLNJAX_DATA_ROOT/<name>``, else
    ``~/.cache/dlnjax/<name>`` (Fashion-MNIST also from Debian's ``dataset-fashion-mnist``);
    ``download=true`` fetches missing files (checked MD5). ``embedded`` is the 10,000 real
    MNIST digits shipped in the package (8,000 train / 2,000 test), no file needed."""

    name: DigitsName = DigitsName.embedded
    root: Optional[str] = None
    download: bool = False
    n_train: Optional[int] = None
    preprocessing: Preprocessing = Preprocessing.raw


def _check_digits(d: Any, prefix: str) -> None:
    require(d.n_train is None or d.n_train >= 1, f"{prefix}.n_train", d.n_train, "null or an integer >= 1")


def _load_digits(d: Any) -> Dataset:
    from dlnjax.data.digits import load_digits
    from dlnjax.data.preprocess import preprocess

    ds = load_digits(enum_value(d.name), root=d.root, download=d.download, n_train=d.n_train)
    return preprocess(ds, enum_value(d.preprocessing))


# ----------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One data source: ``schema(**defaults)`` is its config, ``check(cfg, prefix)`` its range
    checks, ``load(cfg)`` its :class:`~dlnjax.data.core.Dataset`."""

    schema: type
    load: Callable[[Any], Dataset]
    check: Callable[[Any, str], None]
    defaults: dict = field(default_factory=dict)
    summary: str = ""

    def config(self) -> Any:
        """The default config of this source (a schema instance)."""
        return self.schema(**self.defaults)


DATASETS: dict[str, Source] = {
    "embedded": Source(DigitsConfig, _load_digits, _check_digits, {"name": DigitsName.embedded},
                       "the 10,000 real MNIST digits shipped in the package (no download)"),
    "mnist": Source(DigitsConfig, _load_digits, _check_digits, {"name": DigitsName.mnist}, "full MNIST (IDX files)"),
    "fashion_mnist": Source(DigitsConfig, _load_digits, _check_digits, {"name": DigitsName.fashion_mnist},
                            "full Fashion-MNIST (IDX files; Debian's dataset-fashion-mnist)"),
    "teacher": Source(TeacherConfig, _load_teacher, _check_teacher, {}, "whitened inputs and a linear teacher"),
    "hierarchy": Source(HierarchyConfig, _load_hierarchy, _check_hierarchy, {}, "hierarchical diffusion data (Fig. 3)"),
}


def source(name: Any) -> Source:
    """The registry entry of a data-set name (clear error for an unknown one)."""
    key = enum_value(name)
    if key not in DATASETS:
        raise ValueError(f"invalid config: data.name={key!r} (allowed: {', '.join(DATASETS)})")
    return DATASETS[key]


def check(d: Any, prefix: str = "data") -> None:
    """Range checks of a ``data`` config (raises ValueError with a one-line message)."""
    src = source(d.name)
    missing = [f.name for f in fields(src.schema) if f.name not in d]
    require(not missing, f"{prefix}.name", enum_value(d.name),
             f"a source whose fields this config has; choose the source with data={enum_value(d.name)}, not data.name=")
    src.check(d, prefix)


def load(d: Any) -> Dataset:
    """The data set a ``data`` config names."""
    return source(d.name).load(d)
