"""engine._instances: objects made in one C loop equal those the class makes, and
bad arguments raise instead of crashing."""

from __future__ import annotations

import abc
import dataclasses
import gc
from typing import Any

import pytest

from engine._instances import instances


@dataclasses.dataclass(slots=True)
class Row:
    a: Any
    b: Any = None


SLOTS = (vars(Row)["a"], vars(Row)["b"])


def test_rows_equal_constructed_ones() -> None:
    assert instances(Row, SLOTS, (["x", "y"], [1, None])) == [Row("x", 1), Row("y")]
    assert instances(Row, SLOTS, (["x"], None)) == [Row("x", None)]
    assert instances(Row, SLOTS, ([], None)) == []


def test_rows_survive_a_collection_and_hold_their_values() -> None:
    values = [object() for _ in range(3000)]
    rows = instances(Row, SLOTS, (values, values))
    gc.collect()
    assert all(r.a is v and r.b is v for r, v in zip(rows, values, strict=True))
    # The list is built out of the collector's sight and must be back in it, or
    # a cycle through it would never be collected.
    assert gc.is_tracked(rows) and all(gc.is_tracked(r) for r in rows)


def test_a_class_with_its_own_new_is_made_by_it() -> None:
    class Counted:
        __slots__ = ("v",)
        made = 0

        def __new__(cls) -> Counted:
            cls.made += 1
            return super().__new__(cls)

    rows = instances(Counted, (vars(Counted)["v"],), ([1, 2],))
    assert Counted.made == 2 and [r.v for r in rows] == [1, 2]


def test_an_abstract_class_is_refused_by_its_new() -> None:
    class Abstract(abc.ABC):
        __slots__ = ("v",)

        @abc.abstractmethod
        def f(self) -> None: ...

    with pytest.raises(TypeError, match="abstract"):
        instances(Abstract, (vars(Abstract)["v"],), ([1],))


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((Row, SLOTS), TypeError, "takes 3 arguments"),
        (("Row", SLOTS, (["x"], None)), TypeError, "must be a class"),
        ((Row, list(SLOTS), (["x"], None)), TypeError, "must be tuples"),
        ((Row, SLOTS, [["x"], None]), TypeError, "must be tuples"),
        ((Row, (), ()), ValueError, "descriptors"),
        ((Row, SLOTS, (["x"],)), ValueError, "descriptors"),
        ((Row, (SLOTS[0], len), (["x"], None)), TypeError, "not a data descriptor"),
        ((Row, SLOTS, (None, None)), TypeError, "column 0 must be a list"),
        ((Row, SLOTS, (("x",), None)), TypeError, "column 0 must be a list"),
        ((Row, SLOTS, (["x"], (1,))), TypeError, "column 1 must be a list or None"),
        ((Row, SLOTS, (["x"], [1, 2])), ValueError, "column 1 has 2 rows"),
        ((dict, SLOTS, (["x"], None)), TypeError, "descriptor"),
    ],
)
def test_bad_arguments_raise(args: tuple[Any, ...], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        instances(*args)


def test_a_descriptor_that_raises_stops_the_build() -> None:
    class Guarded:
        __slots__ = ("_v",)

        @property
        def v(self) -> Any:
            return self._v

        @v.setter
        def v(self, value: Any) -> None:
            if value == "bad":
                raise ValueError("refused")
            self._v = value

    with pytest.raises(ValueError, match="refused"):
        instances(Guarded, (vars(Guarded)["v"],), (["ok", "bad", "ok"],))


def test_a_descriptor_that_empties_a_column_meanwhile_gets_an_index_error() -> None:
    column: list[Any] = [1, 2, 3]

    class Greedy:
        __slots__ = ("_v", "w")

        @property
        def v(self) -> Any:
            return self._v

        @v.setter
        def v(self, value: Any) -> None:
            column.clear()
            self._v = value

    with pytest.raises(IndexError):
        instances(Greedy, (vars(Greedy)["v"], vars(Greedy)["w"]), ([0, 0, 0], column))
