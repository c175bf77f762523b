"""Strict reading of the JSON documents biv reads back (``biv.refs/v1``, cache records).

A ``from_dict`` reads its object through ``Fields``: every getter checks the JSON type and
raises ``SchemaError`` naming the key path (``files[3].sections[0].size: expected a
non-negative integer, got the string '12'``), never coerces (``"12"`` is not 12, ``"false"``
is not false), and ``known`` rejects keys the reader does not understand. A missing optional
key gives the value the writer writes for "nothing" (``None``, ``()``, ``{}``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from collections.abc import Set as AbstractSet
from enum import Enum
from typing import Any, TypeVar

from verifier.errors import SchemaError

E = TypeVar("E", bound=Enum)

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_LOWER_HEX64 = re.compile(r"[0-9a-f]{64}")
_MISSING = object()  # a key that is absent (None is JSON's null)


@functools.cache
def _members(kind: type[Enum]) -> dict[str, Enum]:
    """An enumeration's members by their (string) values."""
    return {str(m.value): m for m in kind}


def _lower(v: str) -> str:
    """``v`` in lower case: the same string object when it already is (digests shared by
    several fields of a document stay one string in memory)."""
    return v if v.islower() or v.isdigit() else v.lower()


def is_hex64(v: str) -> bool:
    """64 hex digits: how every sha256 in biv's documents is written."""
    return _HEX64.fullmatch(v) is not None


def is_lower_hex64(v: str) -> bool:
    """64 hex digits in lower case (a sha256 as biv writes it)."""
    return _LOWER_HEX64.fullmatch(v) is not None


def describe(v: object) -> str:
    """A JSON value as a person would name it in an error message."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return f"the number {v}"
    if isinstance(v, str):
        shown = v if len(v) <= 40 else v[:40] + "..."
        return f"the string {shown!r}"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


class Fields:
    """One JSON object, read key by key (``where``: its path in the document)."""

    __slots__ = ("_at", "_d")

    def __init__(
        self,
        value: object,
        where: str = "",
        *,
        _at: tuple[Fields, str, int | None] | None = None,
    ) -> None:
        # where it sits: a path, or (parent, key, index) turned into one only for a message
        self._at: str | tuple[Fields, str, int | None] = where if _at is None else _at
        if not isinstance(value, dict):  # JSON object keys are always strings
            raise SchemaError(
                f"expected an object, got {describe(value)}", where=self.where or None
            )
        self._d: dict[str, Any] = value

    @property
    def where(self) -> str:
        at = self._at
        if isinstance(at, str):
            return at
        parent, key, index = at
        return parent.path(key) if index is None else f"{parent.path(key)}[{index}]"

    def path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.where}[{key}]"
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, message: str) -> SchemaError:
        return SchemaError(message, where=self.path(key))

    def __contains__(self, key: str) -> bool:
        return key in self._d

    def is_empty(
        self,
        nulls: Collection[str],
        lists: Collection[str],
        values: Mapping[str, object] | None = None,
    ) -> bool:
        """Whether the object holds nothing: only the keys named, ``nulls`` null, ``lists``
        empty lists, ``values`` exactly those values (absent keys count as empty)."""
        values = values or {}
        for k, v in self._d.items():
            if k in nulls:
                if v is not None:
                    return False
            elif k in lists:
                if v != [] or not isinstance(v, list):
                    return False
            elif k in values:
                want = values[k]
                if v is not want and (type(v) is not type(want) or v != want):
                    return False
            else:
                return False
        return True

    def known(self, keys: AbstractSet[str]) -> None:
        """Reject any key not in ``keys``: what biv does not understand is never ignored."""
        if self._d.keys() <= keys:
            return
        unknown = sorted(k for k in self._d if k not in keys)
        if unknown:
            raise self.error(unknown[0], "unknown key (not part of this document's schema)")

    # --- scalars -------------------------------------------------------------------------

    def _get(self, key: str, required: bool) -> Any:
        if key not in self._d:
            if required:
                raise self.missing(key)
            return None
        return self._d[key]

    def missing(self, key: str) -> SchemaError:
        return SchemaError(f"missing required key {key!r}", where=self.where or None)

    # (the getters are on the path of every file of a reference inventory: kept lean)

    def text(self, key: str) -> str:
        v = self._d.get(key, _MISSING)
        if type(v) is str:
            return v
        if v is _MISSING:
            raise self.missing(key)
        raise self.error(key, f"expected a string, got {describe(v)}")

    def opt_text(self, key: str) -> str | None:
        v = self._get(key, False)
        if v is None:
            return None
        if not isinstance(v, str):
            raise self.error(key, f"expected a string or null, got {describe(v)}")
        return v

    def number(self, key: str) -> int:
        v = self._d.get(key, _MISSING)
        if type(v) is int and v >= 0:
            return v
        if v is _MISSING:
            raise self.missing(key)
        raise self.error(key, f"expected a non-negative integer, got {describe(v)}")

    def opt_number(self, key: str) -> int | None:
        if self._get(key, False) is None:
            return None
        return self.number(key)

    def flag(self, key: str, default: bool) -> bool:
        v = self._get(key, False)
        if v is None and key not in self._d:
            return default
        if not isinstance(v, bool):
            raise self.error(key, f"expected true or false, got {describe(v)}")
        return v

    def opt_flag(self, key: str) -> bool | None:
        v = self._get(key, False)
        if v is None:
            return None
        if not isinstance(v, bool):
            raise self.error(key, f"expected true, false or null, got {describe(v)}")
        return v

    def enum(self, key: str, kind: type[E]) -> E:
        v = self._get(key, True)
        members = _members(kind)
        if isinstance(v, str) and v in members:
            return members[v]  # type: ignore[return-value]
        choices = ", ".join(str(m.value) for m in kind)
        raise self.error(key, f"expected one of {choices}; got {describe(v)}")

    def sha256(self, key: str) -> str:
        """A sha256 as 64 hex digits (kept in lower case)."""
        v = self.text(key)
        if _HEX64.fullmatch(v) is None:
            raise self.error(key, f"expected a sha256 (64 hex digits), got {describe(v)}")
        return _lower(v)

    def opt_sha256(self, key: str) -> str | None:
        if self._d.get(key) is None:
            return None
        return self.sha256(key)

    # --- collections ---------------------------------------------------------------------

    def _list(self, key: str) -> list[Any]:
        v = self._d.get(key, _MISSING)
        if type(v) is list:
            return v
        if v is _MISSING:
            return []
        raise self.error(key, f"expected a list, got {describe(v)}")

    def str_list(self, key: str) -> tuple[str, ...]:
        items = self._list(key)
        for i, x in enumerate(items):
            if not isinstance(x, str):
                raise SchemaError(
                    f"expected a string, got {describe(x)}", where=f"{self.path(key)}[{i}]"
                )
        return tuple(items)

    def sha256_list(self, key: str) -> tuple[str, ...]:
        out = self.str_list(key)
        for i, x in enumerate(out):
            if not _HEX64.fullmatch(x):
                raise SchemaError(
                    f"expected a sha256 (64 hex digits), got {describe(x)}",
                    where=f"{self.path(key)}[{i}]",
                )
        return tuple(_lower(x) for x in out)

    def int_list(self, key: str) -> tuple[int, ...]:
        items = self._list(key)
        for i, x in enumerate(items):
            if not isinstance(x, int) or isinstance(x, bool) or x < 0:
                raise SchemaError(
                    f"expected a non-negative integer, got {describe(x)}",
                    where=f"{self.path(key)}[{i}]",
                )
        return tuple(items)

    def rows(self, key: str, width: int) -> list[list[Any]]:
        """A list of lists of ``width`` values each (missing: empty); the values are the
        caller's to check."""
        items = self._list(key)
        for i, x in enumerate(items):
            if not isinstance(x, list) or len(x) != width:
                raise SchemaError(
                    f"expected a list of {width} values, got {describe(x)}",
                    where=f"{self.path(key)}[{i}]",
                )
        return items

    def objects(self, key: str) -> list[Fields]:
        """A list of objects (missing: empty)."""
        items = self._list(key)
        return [Fields(x, _at=(self, key, i)) for i, x in enumerate(items)]

    def obj(self, key: str) -> Fields:
        return Fields(self._get(key, True), _at=(self, key, None))

    def opt_obj(self, key: str) -> Fields | None:
        v = self._get(key, False)
        return None if v is None else Fields(v, _at=(self, key, None))

    def str_map(self, key: str) -> dict[str, str]:
        """An object of strings (missing: empty)."""
        v = self._get(key, False)
        if (v is None and key not in self._d) or v == {}:
            return {}
        f = Fields(v, _at=(self, key, None))
        return {k: f.text(k) for k in f._d}

    def sha256_map(self, key: str) -> dict[str, str]:
        """An object whose values are sha256s (missing: empty)."""
        v = self._get(key, False)
        if (v is None and key not in self._d) or v == {}:
            return {}
        f = Fields(v, _at=(self, key, None))
        return {k: f.sha256(k) for k in f._d}

    def json_object(self, key: str) -> Mapping[str, Any] | None:
        """A free-form JSON object kept as it is (missing or null: None)."""
        v = self._get(key, False)
        if v is None:
            return None
        return dict(Fields(v, _at=(self, key, None))._d)
