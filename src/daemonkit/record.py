"""Immutable records without ``dataclasses`` (see ``Record``), shared by the spec classes and ``Home``."""

from __future__ import annotations

from typing import Any


class Record:
    """What ``@dataclass(frozen=True)`` gave the spec classes and ``Home``, written out: construction
    with defaults, immutability, equality and hashing by fields, a repr naming them, copy/pickle, and ``replace()``.

    Not dataclasses because the supervisor, which keeps every module it imports for the daemon's whole
    life, would import ``dataclasses`` for them, and with it ``inspect``, ``ast``, ``dis`` and
    ``tokenize``: ~1.2 MiB of its ~10 (docs/benchmarks.md, Memory). ``_FIELDS`` lists the fields in order.
    """

    __slots__ = ()
    _FIELDS: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._FIELDS)

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` (validated like a new instance), as ``dataclasses.replace`` did."""
        unknown = set(changes) - set(self._FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {', '.join(sorted(unknown))}")
        return type(self)(**{name: changes.get(name, getattr(self, name)) for name in self._FIELDS})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} ({type(self).__name__} is immutable)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} ({type(self).__name__} is immutable)")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()  # type: ignore[attr-defined, no-any-return]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"{type(self).__qualname__}({fields})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._values())


init_field = object.__setattr__  # how a Record's __init__ sets its (otherwise immutable) fields
