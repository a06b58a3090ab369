"""Rows of the iris model and the request bodies that carry them."""

from __future__ import annotations

from typing import Any

from memoserve_models import demo

IRIS_COLUMNS = list(demo.IRIS_FEATURES)
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def dataframe_split(rows: list[list[float]]) -> dict[str, Any]:
    """An MLflow ``dataframe_split`` body of ``rows`` in the iris columns."""
    return {"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows}}
