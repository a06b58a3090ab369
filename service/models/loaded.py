"""A loaded model version: what it is, what it accepts, and how to call it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson
import pandas as pd

from service.rows.canonical import CanonicalRows
from service.rows.schema import InputSchema


class Predictor(Protocol):
    """Calls one model output on canonical rows; returns one value per row."""

    outputs: tuple[str, ...]

    def __call__(self, rows: CanonicalRows, output: str) -> Sequence[Any]: ...


@dataclass(frozen=True)
class LoadedModel:
    """One immutable model version; swapped as a whole, so a request never mixes versions."""

    name: str
    version: str
    schema: InputSchema
    predictor: Predictor
    uri: str = ""
    alias: str | None = None
    loaded_at: float = field(default_factory=time.time)

    @property
    def outputs(self) -> tuple[str, ...]:
        """Output kinds this model can answer (``predict``, maybe ``predict_proba``)."""
        return self.predictor.outputs

    def predict_encoded(self, rows: CanonicalRows, output: str) -> list[bytes]:
        """Run the model and encode each row's output as compact JSON (the cache value)."""
        result = _rows_of(self.predictor(rows, output))
        if len(result) != len(rows):
            raise RuntimeError(
                f"model {self.name}/{self.version} returned {len(result)} outputs "
                f"for {len(rows)} rows"
            )
        return [orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY) for v in result]


def _rows_of(result: Any) -> list[Any]:
    if isinstance(result, pd.DataFrame):
        if result.shape[1] == 1:
            return list(result.iloc[:, 0].tolist())
        return list(result.to_dict(orient="records"))
    if isinstance(result, pd.Series | np.ndarray):
        return list(result.tolist())
    return list(result)


class SklearnPredictor:
    """A scikit-learn estimator; ``predict_proba`` is offered when the estimator has it.

    Rows arrive in the order of ``columns`` (the signature's); an estimator fitted on a
    DataFrame gets them under its own ``feature_names_in_`` order, reindexed by name, never
    relabelled by position."""

    def __init__(self, estimator: Any, columns: Sequence[str] | None = None) -> None:
        self.estimator = estimator
        names = getattr(estimator, "feature_names_in_", None)
        self._names = [str(n) for n in names] if names is not None else None
        self._order: list[int] | None = None
        if self._names is not None and columns is not None and list(columns) != self._names:
            if sorted(columns) != sorted(self._names):
                raise ValueError(
                    f"the signature's columns {list(columns)} are not the columns the model "
                    f"was fitted on {self._names}: refusing to guess which is which"
                )
            position = {name: j for j, name in enumerate(columns)}
            self._order = [position[name] for name in self._names]
        self.outputs = tuple(o for o in ("predict", "predict_proba") if hasattr(estimator, o))

    def __call__(self, rows: CanonicalRows, output: str) -> Sequence[Any]:
        x: Any = rows.values
        if self._order is not None:
            if isinstance(x, np.ndarray):
                x = x[:, self._order]
            else:
                x = [[row[j] for j in self._order] for row in x]
        if self._names is not None:
            # Fitted on a DataFrame: pass one, or scikit-learn warns about feature names.
            x = pd.DataFrame(x, columns=self._names)
        result: Sequence[Any] = getattr(self.estimator, output)(x)
        return result

    def schema(self) -> InputSchema:
        """Schema implied by the fitted estimator."""
        if self._names is not None:
            return InputSchema.named(self._names)
        width = getattr(self.estimator, "n_features_in_", None)
        return InputSchema.positional(int(width)) if width else InputSchema()


_PANDAS_TYPES = {"long": "int64", "integer": "int32", "float": "float32", "boolean": "bool"}


class PyfuncPredictor:
    """An MLflow pyfunc model: ``predict`` only, fed a DataFrame with the schema's columns."""

    outputs: tuple[str, ...] = ("predict",)

    def __init__(self, model: Any, schema: InputSchema) -> None:
        self.model = model
        self._names = list(schema.names) if schema.names else None
        # MLflow enforces column types; canonical rows hold doubles, so cast back per column.
        self._casts = {
            (c.name if c.name is not None else j): _PANDAS_TYPES[c.dtype]
            for j, c in enumerate(schema.columns)
            if c.dtype in _PANDAS_TYPES
        }

    def __call__(self, rows: CanonicalRows, output: str) -> Sequence[Any]:
        frame = pd.DataFrame(rows.values, columns=self._names)
        if self._casts:
            frame = frame.astype(self._casts)
        result: Sequence[Any] = self.model.predict(frame)
        return result
