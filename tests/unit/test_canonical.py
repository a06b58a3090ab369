"""Canonicalization refuses bad rows with errors that name the problem."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import InvalidInput
from service.rows.canonical import CanonicalRows, RawRows, canonicalize
from service.rows.schema import InputSchema

SCHEMA = InputSchema.named(["a", "b"])


def test_numeric_rows_become_a_float_matrix() -> None:
    rows = canonicalize(RawRows([[1, 2], [3.5, 4]]), SCHEMA)
    assert isinstance(rows.values, np.ndarray)
    assert rows.values.dtype == np.float64
    assert rows.values.tolist() == [[1.0, 2.0], [3.5, 4.0]]


@pytest.mark.parametrize(
    ("data", "columns", "message"),
    [
        ([[1, 2, 3]], None, "row 0 has 3 values, the model expects 2"),
        ([[1, "x"]], None, "column 'b': expected a number"),
        ([[1, None]], None, "expected a number"),
        ([{"a": 1}], None, "wrong columns"),
        ([{"a": 1, "b": 2, "z": 3}], None, "wrong columns"),
        ([[1, 2]], ["a", "z"], "unknown or missing columns"),
        ([], None, "no rows"),
        ([[1, 2], {"a": 1, "b": 2}], None, "row 1 is a record"),
    ],
)
def test_bad_rows_name_the_problem(
    data: list[object], columns: list[str] | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        canonicalize(RawRows(data, columns), SCHEMA)


def test_missing_columns_are_listed_in_details() -> None:
    with pytest.raises(InvalidInput) as err:
        canonicalize(RawRows([{"a": 1, "q": 2}]), SCHEMA)
    assert err.value.details["missing"] == ["b"]
    assert err.value.details["unexpected"] == ["q"]


def test_positional_schema_refuses_records() -> None:
    with pytest.raises(InvalidInput, match="positional"):
        canonicalize(RawRows([{"a": 1}]), InputSchema.positional(2))


def test_schemaless_accepts_any_consistent_width() -> None:
    for data, values in [
        ([[1, 2, 3]], [[1.0, 2.0, 3.0]]),
        ([[1.5, -0.0], [3, 4]], [[1.5, 0.0], [3.0, 4.0]]),
    ]:
        rows = canonicalize(RawRows(data), InputSchema())
        assert isinstance(rows.values, np.ndarray)
        assert rows.values.tolist() == values
        # The key bytes are the float64 row, -0.0 written as 0.0.
        assert rows.row_bytes == [np.asarray(v, dtype=np.float64).tobytes() for v in values]
    with pytest.raises(InvalidInput, match="row 1 has 2 values, the model expects 3"):
        canonicalize(RawRows([[1, 2, 3], [1, 2]]), InputSchema())


def test_take_and_concat_keep_rows_and_bytes_together() -> None:
    rows = canonicalize(RawRows([[1, 2], [3, 4], [5, 6]]), SCHEMA)
    picked = rows.take([2, 0])
    assert picked.row_bytes == [rows.row_bytes[2], rows.row_bytes[0]]
    both = CanonicalRows.concat([picked, rows.take([1])])
    assert isinstance(both.values, np.ndarray)
    assert both.values.tolist() == [[5.0, 6.0], [1.0, 2.0], [3.0, 4.0]]


def test_float_columns_are_keyed_as_the_float32_the_model_sees() -> None:
    schema = InputSchema.named(["a", "b"], dtype="float")
    a = canonicalize(RawRows([[0.1, 1]]), schema)
    b = canonicalize(RawRows([[0.1 + 1e-12, 1]]), schema)  # the same float32
    c = canonicalize(RawRows([[0.1001, 1]]), schema)
    assert a.row_bytes == b.row_bytes != c.row_bytes


def test_integers_beyond_float64_precision_are_refused() -> None:
    schema = InputSchema.named(["a", "b"], dtype="long")
    assert canonicalize(RawRows([[2**53, 1]]), schema).values.tolist() == [[2.0**53, 1.0]]
    with pytest.raises(InvalidInput, match="beyond 2\\*\\*53"):
        canonicalize(RawRows([[2**53 + 2, 1]]), schema)
