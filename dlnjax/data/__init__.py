"""Data sets: hierarchical diffusion, linear teacher, MNIST-format digits; preprocessing.

``DATASETS`` (:mod:`dlnjax.data.registry`) maps each source name to its config schema, range
checks and loader."""

from dlnjax.data.core import Dataset
from dlnjax.data.hierarchy import hierarchy
from dlnjax.data.registry import DATASETS, Source
from dlnjax.data.teacher import teacher

__all__ = ["DATASETS", "Dataset", "Source", "hierarchy", "teacher"]
