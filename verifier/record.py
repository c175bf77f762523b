"""Frozen records: the dataclasses that flow between biv's stages, built for start-up time.

``@record`` is ``@dataclass(frozen=True)`` (``@record(slots=True)`` adds ``slots=True``) with
one difference in how it is built, not in what it does: equality, hashing and ``repr`` are
shared functions over the class's fields instead of methods that :mod:`dataclasses` writes as
source text and compiles for every class. Compiling them was more than half of the time to
import the library (about 110 records, six compiled methods each); the ``__init__`` and the
frozen ``__setattr__``/``__delattr__`` are still the dataclass's own.

Semantics follow :func:`dataclasses.dataclass`: ``==`` compares the ``compare=True`` fields of
two instances of exactly the same class (else ``NotImplemented``); ``hash`` covers the fields
whose ``hash`` (or, when it is ``None``, ``compare``) is true; ``repr`` shows the ``repr=True``
fields as ``Name(field=value, ...)``. A method the class body defines itself is kept.
:func:`dataclasses.fields`, :func:`dataclasses.replace` and :func:`dataclasses.asdict` work as
on any dataclass (it is one), and type checkers read the decorator as a frozen dataclass
through :func:`typing.dataclass_transform`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import field
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

__all__ = ["record"]

_T = TypeVar("_T")


def _getter(names: list[str]) -> Callable[[Any], Any]:
    """A C-level reader of ``names`` (a tuple of their values; the value alone for one name)."""
    if not names:
        return lambda _obj: ()
    return attrgetter(*names)


def _install(cls: Any) -> Any:
    flds = dataclasses.fields(cls)
    own = cls.__dict__
    if "__eq__" not in own:
        cmp = _getter([f.name for f in flds if f.compare])

        def __eq__(self: Any, other: object) -> Any:
            if other.__class__ is self.__class__:
                return cmp(self) == cmp(other)
            return NotImplemented

        __eq__.__qualname__ = f"{cls.__qualname__}.__eq__"
        cls.__eq__ = __eq__
    # as dataclasses does for eq=True, frozen=True: keep a __hash__ the body defined, else add
    # one (a body that defined only __eq__ has __hash__ = None, which is not an explicit one)
    explicit_hash = "__hash__" in own and not (own["__hash__"] is None and "__eq__" in own)
    if not explicit_hash:
        hsh = _getter([f.name for f in flds if (f.compare if f.hash is None else f.hash)])

        def __hash__(self: Any) -> int:
            return hash(hsh(self))

        __hash__.__qualname__ = f"{cls.__qualname__}.__hash__"
        cls.__hash__ = __hash__
    if "__repr__" not in own:
        shown = tuple(f.name for f in flds if f.repr)

        def __repr__(self: Any) -> str:
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in shown)
            return f"{self.__class__.__qualname__}({inner})"

        __repr__.__qualname__ = f"{cls.__qualname__}.__repr__"
        cls.__repr__ = __repr__
    return cls


@overload
def record(cls: type[_T], /) -> type[_T]: ...
@overload
def record(*, slots: bool = ...) -> Callable[[type[_T]], type[_T]]: ...
@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: Any = None, /, *, slots: bool = False) -> Any:
    """``@dataclass(frozen=True[, slots=True])``, with shared eq/hash/repr (module docstring)."""

    def wrap(c: Any) -> Any:
        return _install(dataclasses.dataclass(c, frozen=True, slots=slots, eq=False, repr=False))

    return wrap if cls is None else wrap(cls)
