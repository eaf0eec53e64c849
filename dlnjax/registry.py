"""A small name -> object registry, shared by :data:`dlnjax.init.registry.INITS` and
:data:`dlnjax.networks.engines.ENGINES`.

A registry keeps its entries in the order they were written (that order is the one error
messages and ``names`` list), maps old spellings to a canonical name (``aliases``), and
answers an unknown name with a ``ValueError`` that names the allowed ones. Adding an entry is
one line where the registry is written (each entry's code lives in its own module).
"""

from __future__ import annotations

from typing import Any, Generic, Iterator, Mapping, TypeVar

T = TypeVar("T")


def enum_value(x: Any) -> Any:
    """The plain value of a config enum member (``Precision.float64 -> 'float64'``); anything
    else unchanged."""
    return getattr(x, "value", x)


def require(ok: bool, key: str, value: Any, allowed: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error('invalid config: key=value (allowed: ...)')`` unless ``ok``: the one-line
    message of every range check (the library's data configs and the apps' schemas)."""
    if not ok:
        raise error(f"invalid config: {key}={value!r} (allowed: {allowed})")


class Registry(Generic[T]):
    """Names -> entries, with aliases. ``reg[name]`` / ``reg.get(name)`` look a name (or an alias)
    up; ``reg.names`` lists the canonical names; ``name in reg`` and iteration work as on a dict."""

    def __init__(self, what: str, entries: Mapping[str, T], aliases: Mapping[str, str] | None = None) -> None:
        self.what = what
        self._entries = dict(entries)
        self.aliases = dict(aliases or {})
        for old, new in self.aliases.items():
            if new not in self._entries:
                raise ValueError(f"{what} alias {old!r} points to {new!r}, which is not registered")

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical names, in registration order."""
        return tuple(self._entries)

    def canonical(self, name: Any) -> str:
        """The canonical name of ``name`` (an entry's name or one of its aliases); ValueError,
        naming the allowed ones, for anything else. Enum members are read by their ``value``."""
        name = enum_value(name)
        if name in self._entries:
            return name
        if name in self.aliases:
            return self.aliases[name]
        raise ValueError(f"unknown {self.what} {name!r}; {self.allowed()}")

    def allowed(self) -> str:
        """``'expected one of a, b, c'`` (plus the aliases, if any)."""
        text = f"expected one of {', '.join(self._entries)}"
        if self.aliases:
            text += " (aliases: " + ", ".join(f"{a} = {b}" for a, b in self.aliases.items()) + ")"
        return text

    def get(self, name: Any) -> T:
        return self._entries[self.canonical(name)]

    __getitem__ = get

    def __contains__(self, name: object) -> bool:
        name = enum_value(name)
        return name in self._entries or name in self.aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return self._entries.items()

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {list(self._entries)})"
