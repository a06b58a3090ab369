"""The simulated heavy model as an MLflow pyfunc (importable wherever it is loaded)."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc

from memoserve_models.demo import SlowModel


class SlowPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """SIMULATION of a heavy model: sleeps ``delay_seconds`` per call, then predicts."""

    def __init__(self, estimator: Any, delay_seconds: float) -> None:
        self.model = SlowModel(estimator, delay_seconds)

    # No type hints here on purpose: MLflow would try to derive a schema from them and warn.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        """Sleep, then the wrapped estimator's prediction."""
        return self.model.predict(model_input)
