"""Training engines: the :data:`ENGINES` registry and the protocol they follow (:mod:`.base`).

``ENGINES[name]`` for ``name`` in ``auto, xla, native, pallas`` is a
:class:`~dlnjax.engines.base.FullWidthEngine` (``auto`` is the rule that picks native or XLA per
network, see :mod:`.auto`). ``engine=None`` means ``$DLNJAX_ENGINE``, else ``auto``
(:func:`resolve`). The compressed engine follows the same protocol but is chosen by the apps'
``compress`` switch, not by ``engine``: :data:`dlnjax.engines.compressed.COMPRESSED`.

To add an engine: its own module here (a class on :class:`~dlnjax.engines.base.FullWidthBase`)
and one entry below.
"""

from __future__ import annotations

import os

from ..registry import Registry
from .auto import Auto
from .base import Engine, FullWidthBase, FullWidthEngine
from .native import Native
from .pallas import Pallas
from .xla import XLA

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
    name = getattr(name, "value", name)
    if name not in ENGINES:
        src = "engine" if engine is not None else ENV
        raise ValueError(f"{src} must be one of {', '.join(ENGINES.names)}; got {name!r}")
    return name


def get(engine: str | None) -> FullWidthEngine:
    """The engine named ``engine`` (resolved as in :func:`resolve`)."""
    return ENGINES[resolve(engine)]


__all__ = ["ENGINES", "Engine", "FullWidthBase", "FullWidthEngine", "get", "resolve"]
