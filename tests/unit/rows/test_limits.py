"""What a column's type allows: every value outside it is a 422 that names the cell, never an
overflow, a silent cast or an exception the error path cannot render."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from service.errors import InvalidInput
from service.rows.canonical import RawRows, canonicalize
from service.rows.schema import ColumnSpec, InputSchema

TYPES = ("double", "float", "long", "integer", "boolean")
NUMERIC = InputSchema(tuple(ColumnSpec(t, t) for t in TYPES))
MIXED = InputSchema((*NUMERIC.columns, ColumnSpec("s", "string")))
GOOD: dict[str, Any] = {"double": 1.5, "float": 2.5, "long": 3, "integer": 4, "boolean": True}


def row(schema: InputSchema, **cells: Any) -> dict[str, Any]:
    record = {**GOOD, **({"s": "x"} if schema is MIXED else {}), **cells}
    return record


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


CASES = [
    ("long", 2**53 + 2, "integers beyond 2**53"),
    ("long", 10**400, "too large"),
    ("double", 10**400, "too large"),
    ("integer", 2**31, "32-bit integer range"),
    ("integer", -(2**31) - 1, "32-bit integer range"),
    ("float", 1e39, "float32 range"),
    ("double", True, "expected a number"),
    ("long", 2.5, "expected an integer"),
    ("boolean", 1, "true or false"),
    ("boolean", 0.0, "true or false"),
    ("double", "1.0", "expected a number"),
    ("double", nested(300), "expected a number"),
    ("double", nested(1000), "expected a number"),
    ("double", {"deep": nested(500)}, "expected a number"),
]


@pytest.mark.parametrize("schema", [NUMERIC, MIXED], ids=["numeric", "mixed"])
@pytest.mark.parametrize(("column", "value", "message"), CASES)
def test_a_value_outside_its_column_type_is_refused_readably(
    schema: InputSchema, column: str, value: Any, message: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)) as err:
        canonicalize(RawRows([row(schema, **{column: value})]), schema)
    assert err.value.details["column"] == column
    orjson.dumps({"message": err.value.message, "details": err.value.details})  # renderable


@pytest.mark.parametrize("schema", [NUMERIC, MIXED], ids=["numeric", "mixed"])
def test_values_inside_their_types_pass(schema: InputSchema) -> None:
    edge = row(schema, long=2**53, integer=2**31 - 1, float=3.0e38, boolean=False)
    rows = canonicalize(RawRows([edge]), schema)
    assert len(rows) == 1


def test_unicode_and_huge_column_names_are_named_in_the_error() -> None:
    schema = InputSchema.named(["ä", "b"])
    name = "x" * 10_000
    with pytest.raises(InvalidInput, match="wrong columns") as err:
        canonicalize(RawRows([{"ä": 1, name: 2}]), schema)
    assert err.value.details["missing"] == ["b"] and err.value.details["unexpected"] == [name]
    assert canonicalize(RawRows([{"ä": 1, "b": 2}]), schema).columns == ("ä", "b")
