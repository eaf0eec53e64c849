"""Training engines: the :data:`ENGINES` registry and the protocol they follow (:mod:`.base`).

``ENGINES[name]`` for ``name`` in ``auto, xla, native, pallas`` is a
:class:`~dlnjax.networks.engines.base.FullWidthEngine` (``auto`` is the rule that picks native or XLA per
network, see :mod:`.auto`). ``engine=None`` means ``$DLNJAX_ENGINE``, else ``auto``
(:func:`resolve`). The compressed engine follows the same protocol but is chosen by the apps'
``compress`` switch, not by ``engine``: :data:`dlnjax.networks.engines.compressed.COMPRESSED`.

To add an engine: its own module here (a class on :class:`~dlnjax.networks.engines.base.FullWidthBase`)
and one entry below.
"""

from __future__ import annotations

import os

from dlnjax.registry import Registry, enum_value
from dlnjax.networks.engines.auto import Auto
from dlnjax.networks.engines.base import Engine, FullWidthBase, FullWidthEngine
from dlnjax.networks.engines.native import Native
from dlnjax.networks.engines.pallas import Pallas
from dlnjax.networks.engines.xla import XLA

ENGINES: Registry[FullWidthEngine] = Registry(
    "engine",
    {
        "auto": Auto(),
        "xla": XLA(),
        "native": Native(),
        "pallas": Pallas(),
    },
)

ENV = "DLNJAX_ENGINE"


def resolve(engine: str | None) -> str:
    """The engine's name: ``engine`` if given, else ``$DLNJAX_ENGINE``, else ``'auto'``; a
    ValueError naming the allowed ones (and where the bad name came from) for anything else."""
    name = engine if engine is not None else os.environ.get(ENV, "auto")
    name = enum_value(name)
    if name not in ENGINES:
        src = "engine" if engine is not None else ENV
        raise ValueError(f"{src} must be one of {', '.join(ENGINES.names)}; got {name!r}")
    return name


def get(engine: str | None) -> FullWidthEngine:
    """The engine named ``engine`` (resolved as in :func:`resolve`)."""
    return ENGINES[resolve(engine)]


def make_runner(stats, *, record_every: int, engine: str | None = None, **options):
    """:func:`dlnjax.networks.linear.make_runner` on the engine named ``engine`` (None: ``$DLNJAX_ENGINE``,
    else ``auto``): how apps, sweeps and benchmarks build a full-width runner."""
    return get(engine).make_runner(stats, record_every=record_every, **options)


def train(weights, stats, lr, *, num_steps: int, engine: str | None = None, **options):
    """:func:`dlnjax.networks.linear.train` with the kernels of the engine named ``engine`` (as in
    :func:`make_runner`)."""
    from dlnjax.networks import linear

    return linear.train(weights, stats, lr, num_steps=num_steps, kernels=get(engine).kernels, **options)


def fused(engine: str | None, weights) -> bool:
    """Whether a step on these (per-member) weights runs on fused kernels (native or Pallas, which
    loop over a vmapped batch themselves) on the engine named ``engine``."""
    return get(engine).kernels(weights) is not None


__all__ = ["ENGINES", "Engine", "FullWidthBase", "FullWidthEngine", "fused", "get", "make_runner", "resolve", "train"]
