"""One registry type for everything chosen by name in a config.

Models, reconstruction losses, compression modes, entropy coders and fit shapes
are each kept in a :class:`Registry`: a decorator adds an entry, and a lookup of
an unknown name raises :class:`~baler_ext.errors.ConfigError` with a did-you-mean
and the list of valid names. (Baler looked models up with ``getattr`` on a module.)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from baler_ext.errors import ConfigError

T = TypeVar("T")


def suggest(name: str, options: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest option, or ``""``.

    Case-insensitive :func:`difflib.get_close_matches` with cutoff 0.6, the one
    did-you-mean used by every "unknown name" error of the package.
    """
    by_lower = {o.lower(): o for o in options}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    Parameters
    ----------
    kind
        What an entry is, for error messages (e.g. ``"model"``, ``"peak shape"``).
    name_attr
        If set, the decorator stores the registered name on the entry under this
        attribute (e.g. ``cls.name = "gauss"``).
    """

    def __init__(self, kind: str, name_attr: str | None = None) -> None:
        self.kind = kind
        self.name_attr = name_attr
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding the decorated class or function under ``name``."""

        def decorator(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            if self.name_attr is not None:
                setattr(entry, self.name_attr, name)
            return entry

        return decorator

    def get(self, name: str) -> T:
        """The entry ``name``; a ConfigError with a did-you-mean lists the valid names."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} '{name}'{suggest(name, self._entries)}; valid: "
                f"{', '.join(self._entries)}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]
