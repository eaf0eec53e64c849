"""Data sets: hierarchical diffusion, linear teacher, MNIST-format digits; preprocessing.

``DATASETS`` (:mod:`dlnjax.data.registry`) maps each source name to its config schema, range
checks and loader."""

from .core import Dataset
from .hierarchy import hierarchy
from .registry import DATASETS, Source
from .teacher import teacher

__all__ = ["DATASETS", "Dataset", "Source", "hierarchy", "teacher"]
