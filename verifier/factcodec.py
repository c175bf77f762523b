"""Exact, generic serialisation of analysis facts (``BinaryFacts`` and what it holds).

Why: the analysis cache must give back exactly the facts a fresh analysis would, whatever
fields other stages add to the frozen dataclasses of ``verifier.model``. So nothing here names
a field: every dataclass field is written and, on reading, every field must be present (a
missing or unknown field is an error, never a default), and Python types are kept exactly
(tuple vs list, str vs enum, bytes, datetime). ``loads(dumps(x)) == x`` for every supported
value; an unsupported type raises ``TypeError`` when writing, so a new kind of value cannot be
dropped silently.

Format: JSON, with containers tagged: ``{"t": [...]}`` tuple, ``{"m": {...}}`` dict with str
keys, ``{"d": [[k, v], ...]}`` other dicts, ``{"c": "Class", "f": {...}}`` dataclass,
``{"e": "Class", "v": value}`` enum member, ``{"b": base64}`` bytes, ``{"dt": iso}``
datetime, ``{"fs": [...]}`` frozenset. Lists are JSON lists. Only classes registered here
(every dataclass and enum of ``verifier.model``) are ever built when reading.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import functools
import json
from collections.abc import Mapping
from typing import Any

from verifier import model

_CLASSES: dict[str, type] = {}


def register(cls: type) -> type:
    """Allow ``cls`` (a dataclass or an Enum) in serialised facts."""
    if not (dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum)):
        raise TypeError(f"{cls!r} is neither a dataclass nor an Enum")
    _CLASSES[cls.__name__] = cls
    return cls


for _obj in vars(model).values():
    if (
        isinstance(_obj, type)
        and _obj.__module__ == model.__name__
        and (dataclasses.is_dataclass(_obj) or issubclass(_obj, enum.Enum))
    ):
        register(_obj)


class DecodeError(ValueError):
    """Serialised facts that do not describe a value this version of biv builds."""


def _enc(x: Any) -> Any:
    if x is None or type(x) in (bool, str):
        return x
    if isinstance(x, enum.Enum):
        name = type(x).__name__
        if _CLASSES.get(name) is not type(x):
            raise TypeError(f"cannot serialise enum {type(x)!r}: not registered")
        return {"e": name, "v": x.value}
    if isinstance(x, int | float):
        if type(x) not in (int, float):
            raise TypeError(f"cannot serialise {type(x)!r}")
        return x
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        name = type(x).__name__
        if _CLASSES.get(name) is not type(x):
            raise TypeError(f"cannot serialise dataclass {type(x)!r}: not registered")
        return {"c": name, "f": {f.name: _enc(getattr(x, f.name)) for f in dataclasses.fields(x)}}
    if isinstance(x, tuple):
        if type(x) is not tuple:
            raise TypeError(f"cannot serialise {type(x)!r}")
        return {"t": [_enc(v) for v in x]}
    if type(x) is list:
        return [_enc(v) for v in x]
    if isinstance(x, Mapping):
        if all(type(k) is str for k in x):
            return {"m": {k: _enc(v) for k, v in x.items()}}
        return {"d": [[_enc(k), _enc(v)] for k, v in x.items()]}
    if type(x) is bytes:
        return {"b": base64.b64encode(x).decode("ascii")}
    if type(x) is frozenset:
        return {"fs": [_enc(v) for v in x]}
    if type(x) is dt.datetime:
        return {"dt": x.isoformat()}
    raise TypeError(f"cannot serialise a value of type {type(x).__name__}")


_SCALARS = frozenset((type(None), bool, int, float, str))


def _dec(x: Any) -> Any:
    kind = type(x)  # json.loads gives these exact types, never subclasses
    if kind in _SCALARS:
        return x
    if kind is list:
        return [v if type(v) in _SCALARS else _dec(v) for v in x]
    if kind is not dict or len(x) not in (1, 2):
        raise DecodeError("malformed value")
    # (the tags in the order they are most common in facts)
    if "c" in x:
        return _dataclass(x)
    if "t" in x:
        return tuple([v if type(v) in _SCALARS else _dec(v) for v in _list(x["t"])])
    if "m" in x:
        m = x["m"]
        if not isinstance(m, dict):
            raise DecodeError("malformed mapping")
        return {k: v if type(v) in _SCALARS else _dec(v) for k, v in m.items()}
    if "e" in x:
        cls = _CLASSES.get(str(x["e"]))
        if cls is None or not issubclass(cls, enum.Enum):
            raise DecodeError(f"unknown enum {x['e']!r}")
        try:
            return cls(x.get("v"))
        except ValueError as exc:
            raise DecodeError(str(exc)) from None
    if "d" in x:
        out = {}
        for pair in _list(x["d"]):
            if not isinstance(pair, list) or len(pair) != 2:
                raise DecodeError("malformed mapping item")
            out[_dec(pair[0])] = _dec(pair[1])
        return out
    if "b" in x:
        try:
            return base64.b64decode(str(x["b"]), validate=True)
        except ValueError as exc:
            raise DecodeError(f"bad bytes: {exc}") from None
    if "fs" in x:
        return frozenset(_dec(v) for v in _list(x["fs"]))
    if "dt" in x:
        try:
            return dt.datetime.fromisoformat(str(x["dt"]))
        except ValueError as exc:
            raise DecodeError(f"bad datetime: {exc}") from None
    raise DecodeError(f"unknown tag {sorted(x)!r}")


def _list(v: Any) -> list[Any]:
    if not isinstance(v, list):
        raise DecodeError("expected a list")
    return v


def _dataclass(x: dict[str, Any]) -> Any:
    cls = _CLASSES.get(str(x["c"]))
    if cls is None or not dataclasses.is_dataclass(cls):
        raise DecodeError(f"unknown class {x['c']!r}")
    raw = x.get("f")
    if not isinstance(raw, dict):
        raise DecodeError("malformed dataclass")
    names, keys = _field_names(cls)
    if raw.keys() != keys:
        missing = sorted(set(names) - set(raw))
        extra = sorted(set(raw) - set(names))
        raise DecodeError(f"{cls.__name__}: fields differ (missing {missing}, unknown {extra})")
    obj = object.__new__(cls)
    for name in names:  # exactly the stored values: no __init__ defaults, no __post_init__
        v = raw[name]
        _setattr(obj, name, v if type(v) in _SCALARS else _dec(v))
    return obj


_setattr = object.__setattr__


@functools.cache
def _field_names(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
    """A registered dataclass's field names, in order and as a set (looked up once)."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    return names, frozenset(names)


def dumps(value: Any) -> bytes:
    """Serialise ``value`` (facts); ``TypeError`` for a type this module does not know."""
    return json.dumps(_enc(value), separators=(",", ":"), allow_nan=False).encode("utf-8")


def loads(data: bytes) -> Any:
    """The value ``dumps`` wrote; ``DecodeError`` for anything else."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    try:
        return _dec(raw)
    except RecursionError:
        raise DecodeError("nested too deeply") from None
