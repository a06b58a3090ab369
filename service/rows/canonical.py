"""Canonical rows: request values in signature order and dtype, so equal inputs share a key.

``5`` and ``5.0`` in a double column are one value, ``-0.0`` is ``0.0``, a record's key order
does not matter, and NaN or infinity is refused unless the schema says otherwise.
"""

from __future__ import annotations

import functools
import math
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
import orjson

from service.errors import InvalidInput
from service.rows.schema import INTEGER_TYPES, InputSchema

_NO_VALUE: Any = object()
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 4, 4, 40, 40


@dataclass(frozen=True, slots=True)
class RawRows:
    """Rows as a protocol delivered them: positional lists (with optional names) or records."""

    data: Sequence[Any]
    columns: Sequence[Any] | None = None


@dataclass(frozen=True, slots=True)
class CanonicalRows:
    """Rows ready for the model and for hashing; ``values`` is a float64 matrix when numeric."""

    values: np.ndarray[Any, Any] | list[list[Any]]
    row_bytes: list[bytes]
    columns: tuple[str, ...] | None

    def __len__(self) -> int:
        return len(self.row_bytes)

    def take(self, indices: Sequence[int]) -> CanonicalRows:
        """The rows at ``indices``, in that order."""
        if isinstance(self.values, np.ndarray):
            values: np.ndarray[Any, Any] | list[list[Any]] = self.values[list(indices)]
        else:
            values = [self.values[i] for i in indices]
        return CanonicalRows(values, [self.row_bytes[i] for i in indices], self.columns)

    @staticmethod
    def concat(parts: Sequence[CanonicalRows]) -> CanonicalRows:
        """Rows of several requests (same schema) as one batch."""
        first = parts[0]
        if len(parts) == 1:
            return first
        if isinstance(first.values, np.ndarray):
            values: np.ndarray[Any, Any] | list[list[Any]] = np.concatenate(
                [p.values for p in parts]
            )
        else:
            values = [row for p in parts for row in p.values]
        return CanonicalRows(values, [b for p in parts for b in p.row_bytes], first.columns)


def canonicalize(raw: RawRows, schema: InputSchema) -> CanonicalRows:
    """Order, type-check and normalize ``raw`` by ``schema``; InvalidInput names any fault."""
    if not raw.data:
        raise InvalidInput("the request has no rows")
    rows = _ordered(raw, schema)
    if schema.numeric:
        return _numeric(rows, schema)
    return _mixed(rows, schema)


def _ordered(raw: RawRows, schema: InputSchema) -> list[Sequence[Any]]:
    """Positional rows in schema column order."""
    names = schema.names
    first = raw.data[0]
    if isinstance(first, dict):
        if names is None:
            raise InvalidInput(
                "this model takes positional rows (lists of values), not records",
                {"expected_width": schema.width},
            )
        out: list[Sequence[Any]] = []
        for i, rec in enumerate(raw.data):
            if not isinstance(rec, dict):
                raise InvalidInput(f"row {i} is not a record like row 0", {"row": i})
            if len(rec) != len(names) or any(n not in rec for n in names):
                raise InvalidInput(
                    f"row {i} has the wrong columns", _column_details(list(rec), names, i)
                )
            out.append([rec[n] for n in names])
        return out
    rows: list[Sequence[Any]] = []
    for i, row in enumerate(raw.data):
        if not isinstance(row, list):
            if isinstance(row, dict):
                raise InvalidInput(f"row {i} is a record but row 0 is a list", {"row": i})
            row = [row]  # a bare scalar is a one-column row
        rows.append(row)
    if raw.columns is not None:
        given = [str(c) for c in raw.columns]
        if names is not None and given != list(names):
            if sorted(given) != sorted(names):
                raise InvalidInput("unknown or missing columns", _column_details(given, names))
            order = [given.index(n) for n in names]
            rows = [[row[j] for j in order] if len(row) == len(given) else row for row in rows]
        elif names is None and schema.width is not None and len(given) != schema.width:
            raise InvalidInput(
                f"{len(given)} columns given, the model expects {schema.width}",
                {"expected_width": schema.width, "got_width": len(given)},
            )
    width = schema.width or len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InvalidInput(
                f"row {i} has {len(row)} values, the model expects {width}",
                {"row": i, "expected_width": width, "got_width": len(row), "columns": names},
            )
    return rows


def _column_details(
    given: list[str], names: Sequence[str], row: int | None = None
) -> dict[str, Any]:
    details: dict[str, Any] = {
        "missing": [n for n in names if n not in given],
        "unexpected": [g for g in given if g not in names],
        "expected": list(names),
    }
    if row is not None:
        details["row"] = row
    return details


@dataclass(frozen=True, slots=True)
class _Typed:
    """Positions of the columns whose type narrows what a number may be."""

    ints: list[int]
    int32: list[int]
    float32: list[int]
    bools: frozenset[int]


@functools.cache
def _typed_columns(schema: InputSchema) -> _Typed:
    dtypes = [c.dtype for c in schema.columns]
    return _Typed(
        ints=[j for j, d in enumerate(dtypes) if d in INTEGER_TYPES],
        int32=[j for j, d in enumerate(dtypes) if d == "integer"],
        float32=[j for j, d in enumerate(dtypes) if d == "float"],
        bools=frozenset(j for j, d in enumerate(dtypes) if d == "boolean"),
    )


_EXACT_INT = 2.0**53  # integers beyond this do not survive the float64 matrix
_INT32 = (-(2.0**31), 2.0**31 - 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _numeric(rows: list[Sequence[Any]], schema: InputSchema) -> CanonicalRows:
    typed = _typed_columns(schema)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            t = type(v)
            if t is not float and t is not int:
                _bad_number(v, i, j, schema)
            elif typed.bools and j in typed.bools:
                _refuse(i, j, schema, "expected true or false", v)
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except OverflowError:  # an integer literal beyond float64
        i, j = next(
            (i, j)
            for i, r in enumerate(rows)
            for j, v in enumerate(r)
            if type(v) is int and abs(v) > 1e308
        )
        _refuse(i, j, schema, "the number is too large", rows[i][j])
    if not np.isfinite(matrix).all():
        i, j = (int(x) for x in np.argwhere(~np.isfinite(matrix))[0])
        _refuse(i, j, schema, "NaN and infinity are not accepted")
    for j in typed.ints:
        col = matrix[:, j]
        if not np.array_equal(col, np.round(col)):
            i = int(np.argwhere(col != np.round(col))[0][0])
            _refuse(i, j, schema, f"expected an integer, got {col[i]}")
        if np.abs(col).max() > _EXACT_INT:
            _refuse(
                int(np.argmax(np.abs(col))), j, schema, "integers beyond 2**53 are not accepted"
            )
    for j in typed.int32:
        col = matrix[:, j]
        outside = (col < _INT32[0]) | (col > _INT32[1])
        if outside.any():
            _refuse(int(np.argmax(outside)), j, schema, "outside the 32-bit integer range")
    for j in typed.float32:  # the model sees float32: values equal in float32 are one input
        col = matrix[:, j]
        if np.abs(col).max() > _FLOAT32_MAX:
            _refuse(int(np.argmax(np.abs(col))), j, schema, "outside the float32 range")
        matrix[:, j] = col.astype(np.float32)
    matrix += 0.0  # -0.0 + 0.0 == +0.0: one key for both zeros
    return CanonicalRows(matrix, [r.tobytes() for r in matrix], schema.names)


def _refuse(i: int, j: int, schema: InputSchema, why: str, value: Any = _NO_VALUE) -> NoReturn:
    """InvalidInput naming the row, the column, its type and why."""
    details: dict[str, Any] = {"row": i, "column": _name(schema, j)}
    if schema.columns:
        details["expected"] = schema.columns[j].dtype
    shown = "" if value is _NO_VALUE else f", got {_preview(value)}"
    raise InvalidInput(f"row {i}, column {_col(schema, j)}: {why}{shown}", details)


def _preview(value: Any) -> str:
    """A short, always-renderable picture of a value (any nesting, any size)."""
    return _REPR.repr(value)


def _bad_number(value: Any, i: int, j: int, schema: InputSchema) -> None:
    col = _col(schema, j)
    dtype = schema.columns[j].dtype if schema.columns else "double"
    if type(value) is bool and dtype == "boolean":
        return
    raise InvalidInput(
        f"row {i}, column {col}: expected a number ({dtype}), got {type(value).__name__} "
        f"{_preview(value)}",
        {"row": i, "column": _name(schema, j), "expected": dtype, "got": type(value).__name__},
    )


def _mixed(rows: list[Sequence[Any]], schema: InputSchema) -> CanonicalRows:
    values = [
        [
            _cell(v, i, j, spec.dtype, schema)
            for j, (v, spec) in enumerate(zip(row, schema.columns, strict=True))
        ]
        for i, row in enumerate(rows)
    ]
    return CanonicalRows(values, [orjson.dumps(r) for r in values], schema.names)


def _cell(v: Any, i: int, j: int, dtype: str, schema: InputSchema) -> Any:
    """One value of a row with string columns, by the same rules as the numeric path."""
    if dtype == "string":
        if not isinstance(v, str):
            _refuse(i, j, schema, "expected a string", v)
        return v
    if dtype == "boolean":
        if type(v) is not bool:
            _refuse(i, j, schema, "expected true or false", v)
        return v
    if type(v) is not float and type(v) is not int:
        _bad_number(v, i, j, schema)
    if type(v) is int and abs(v) > 1e308:
        _refuse(i, j, schema, "the number is too large", v)
    f = float(v)
    if not math.isfinite(f):
        _refuse(i, j, schema, "NaN and infinity are not accepted")
    if dtype in INTEGER_TYPES:
        if f != round(f):
            _refuse(i, j, schema, f"expected an integer, got {v}")
        if abs(v) > _EXACT_INT:
            _refuse(i, j, schema, "integers beyond 2**53 are not accepted")
        if dtype == "integer" and not _INT32[0] <= f <= _INT32[1]:
            _refuse(i, j, schema, "outside the 32-bit integer range")
        return int(f)
    if dtype == "float":
        if abs(f) > _FLOAT32_MAX:
            _refuse(i, j, schema, "outside the float32 range")
        return float(np.float32(f)) + 0.0
    return f + 0.0


def _name(schema: InputSchema, j: int) -> str | int:
    """The column as details carry it: its name, or its position."""
    names = schema.names
    return names[j] if names else j


def _col(schema: InputSchema, j: int) -> str:
    names = schema.names
    return repr(names[j]) if names else str(j)
