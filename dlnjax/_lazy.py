"""Lazy re-exports for the rooms' ``__init__`` modules (PEP 562).

A room (``dlnjax.theory``, ``dlnjax.networks``, ...) exports its modules and its public names
without importing anything when the package itself is imported: the first access to a name
imports the module that defines it. So ``import dlnjax.theory.closed_form`` does not import
diffrax, and a room's ``__init__`` adds no edge to the import graph (no cycle can run through
it; ``tests/test_layout.py`` walks that graph).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def attach(package: str, modules: tuple[str, ...], names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``: ``modules`` are its submodules,
    ``names`` maps each re-exported name to the submodule that defines it."""
    clash = set(modules) & set(names)
    if clash:
        raise ValueError(f"{package}: names shadow submodules: {sorted(clash)}")
    exported = sorted(set(modules) | set(names))

    def __getattr__(name: str) -> Any:
        if name in modules:
            return importlib.import_module(f"{package}.{name}")
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return exported

    return __getattr__, __dir__, exported
