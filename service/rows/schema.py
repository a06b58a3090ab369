"""The input schema a model version declares, used to canonicalize request rows."""

from __future__ import annotations

from dataclasses import dataclass

NUMERIC_TYPES = frozenset({"double", "float", "long", "integer", "boolean"})
INTEGER_TYPES = frozenset({"long", "integer"})


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One input column: its name (None when only positions are known) and MLflow type."""

    name: str | None
    dtype: str = "double"


@dataclass(frozen=True, slots=True)
class InputSchema:
    """Ordered input columns; an empty schema accepts positional numeric rows of any width."""

    columns: tuple[ColumnSpec, ...] = ()

    @property
    def names(self) -> tuple[str, ...] | None:
        """Column names in model order, or None when the schema is positional."""
        if not self.columns or any(c.name is None for c in self.columns):
            return None
        return tuple(c.name for c in self.columns if c.name is not None)

    @property
    def width(self) -> int | None:
        """Number of columns, or None when unknown."""
        return len(self.columns) or None

    @property
    def numeric(self) -> bool:
        """True when every column is a number (the fast, vectorized path)."""
        return all(c.dtype in NUMERIC_TYPES for c in self.columns)

    @classmethod
    def positional(cls, width: int) -> InputSchema:
        """A schema of ``width`` unnamed double columns."""
        return cls(tuple(ColumnSpec(None) for _ in range(width)))

    @classmethod
    def named(cls, names: list[str], dtype: str = "double") -> InputSchema:
        """A schema of named columns of one type."""
        return cls(tuple(ColumnSpec(n, dtype) for n in names))
