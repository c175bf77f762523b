"""``verifier.record``: a ``@record`` class behaves as the same class under
``@dataclass(frozen=True)`` (equality, hashing, repr, field options, methods the body defines,
inheritance, immutability, pickling, ``replace``), and every frozen dataclass of the package is
a record (the start-up cost the decorator exists for)."""

from __future__ import annotations

import ast
import dataclasses
import pickle
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any

import pytest
from support.paths import REPO

from verifier.record import record


def _pair(slots: bool) -> tuple[Any, Any]:
    """The same class body under ``@record`` and under ``@dataclass(frozen=True)``."""

    def body() -> type:
        class Point:
            x: int
            y: str = "y"
            note: str = field(default="", compare=False)
            tags: tuple[str, ...] = field(default=(), hash=False)
            secret: bytes = field(default=b"", repr=False)

        return Point

    return record(slots=slots)(body()), dataclass(frozen=True, slots=slots)(body())


@pytest.mark.parametrize("slots", [False, True])
def test_a_record_compares_hashes_and_prints_as_a_frozen_dataclass(slots: bool) -> None:
    rec, ref = _pair(slots)
    cases = [
        ((1,), (1,)),
        ((1,), (2,)),
        ((1, "a"), (1, "b")),
        ((1, "a", "n1"), (1, "a", "n2")),  # compare=False: equal
        ((1, "a", "", ("t",)), (1, "a", "", ("u",))),  # hash=False but compared: unequal
        ((1, "a", "", (), b"s"), (1, "a", "", (), b"t")),  # repr=False: compared
    ]
    for a, b in cases:
        assert (rec(*a) == rec(*b)) == (ref(*a) == ref(*b)), (a, b)
        assert (rec(*a) != rec(*b)) == (ref(*a) != ref(*b)), (a, b)
        assert repr(rec(*a)) == repr(ref(*a))
        if rec(*a) == rec(*b):
            assert hash(rec(*a)) == hash(rec(*b))
    # hash=False leaves a field out of the hash; compare=False out of both
    assert hash(rec(1, "a", "n", ("t",))) == hash(rec(1, "a", "m", ("u",)))
    assert hash(rec(1, "a")) != hash(rec(2, "a"))
    assert rec(1) != ref(1)  # another class: NotImplemented both ways, so unequal
    assert rec(1).__eq__(ref(1)) is NotImplemented
    assert {rec(1), rec(1, note="other")} == {rec(1)}


@pytest.mark.parametrize("slots", [False, True])
def test_a_record_stays_immutable_and_is_a_dataclass(slots: bool) -> None:
    rec, _ref = _pair(slots)
    p = rec(1, "a", tags=("t",))
    with pytest.raises(FrozenInstanceError):
        p.x = 2
    with pytest.raises(FrozenInstanceError):
        del p.y
    assert dataclasses.is_dataclass(p)
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "note", "tags", "secret"]
    q = dataclasses.replace(p, x=3)
    assert (q.x, q.y, q.tags, p.x) == (3, "a", ("t",), 1)
    assert dataclasses.asdict(p)["tags"] == ("t",)
    assert hasattr(p, "__slots__") == slots


def test_a_record_pickles_across_processes_unchanged() -> None:
    # the analysis workers send records through pickles; the module-level class must round-trip
    from verifier.model import Anomaly  # a slotted record of the package

    a = Anomaly("pe.malformed", "bad header", "evidence")
    assert pickle.loads(pickle.dumps(a)) == a


def test_methods_the_body_defines_are_kept() -> None:
    @record
    class Own:
        a: int
        b: int = 0

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Own) and self.a == other.a

        def __hash__(self) -> int:
            return 7

        def __repr__(self) -> str:
            return "own"

    assert Own(1, 2) == Own(1, 3)
    assert hash(Own(5)) == 7
    assert repr(Own(1)) == "own"

    @record
    class OnlyEq:  # __eq__ alone: as dataclasses, a field hash is added (not None)
        a: int

        def __eq__(self, other: object) -> bool:
            return isinstance(other, OnlyEq) and self.a == other.a

    assert hash(OnlyEq(1)) == hash(OnlyEq(1))


def test_a_subclass_record_compares_its_own_fields() -> None:
    @record(slots=True)
    class Base:
        a: int

    @record(slots=True)
    class Sub(Base):
        b: int = 0

    assert Sub(1, 2) != Sub(1, 3)
    assert Sub(1, 2) == Sub(1, 2)
    assert Base(1) != Sub(1)
    assert repr(Sub(1, 2)) == (
        "test_a_subclass_record_compares_its_own_fields.<locals>.Sub(a=1, b=2)"
    )


def test_a_record_with_no_fields_equals_its_like() -> None:
    @record
    class Empty:
        pass

    assert Empty() == Empty()
    assert hash(Empty()) == hash(Empty())
    assert repr(Empty()).endswith("Empty()")


def test_every_frozen_dataclass_of_the_package_is_a_record() -> None:
    stray: list[str] = []
    for path in sorted((REPO / "verifier").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            for dec in node.decorator_list:
                if not isinstance(dec, ast.Call):
                    continue
                name = ast.unparse(dec.func)
                frozen = any(
                    k.arg == "frozen" and ast.unparse(k.value) == "True" for k in dec.keywords
                )
                # a frozen dataclass that keeps the generated eq (eq=False ones opt out)
                eq_off = any(
                    k.arg == "eq" and ast.unparse(k.value) == "False" for k in dec.keywords
                )
                if name.endswith("dataclass") and frozen and not eq_off:
                    stray.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}")
    assert stray == []
