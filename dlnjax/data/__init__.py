"""Data sets: hierarchical diffusion, linear teacher, MNIST-format digits; preprocessing."""

from .core import Dataset
from .hierarchy import hierarchy
from .teacher import teacher

__all__ = ["Dataset", "hierarchy", "teacher"]
