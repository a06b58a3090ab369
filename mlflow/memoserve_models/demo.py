"""Demo models: the tutorial's iris forest, a diabetes regressor, and a simulated heavy model."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

IRIS_FEATURES = [
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
]


def iris_frame() -> tuple[pd.DataFrame, np.ndarray[Any, Any]]:
    """scikit-learn's bundled iris data."""
    data = load_iris(as_frame=True)
    return data.data[IRIS_FEATURES], data.target.to_numpy()


def train_iris(
    *, n_estimators: int = 100, seed: int = 0, label_shift: int = 0
) -> RandomForestClassifier:
    """The tutorial's RandomForest. ``label_shift`` rotates the classes: a visibly different
    version for trying promotions (every answer changes)."""
    x, y = iris_frame()
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=seed)
    model.fit(x, (y + label_shift) % 3)
    return model


def train_diabetes(*, n_estimators: int = 100, seed: int = 0) -> RandomForestRegressor:
    """A regressor on scikit-learn's bundled diabetes data."""
    data = load_diabetes(as_frame=True)
    model = RandomForestRegressor(n_estimators=n_estimators, random_state=seed)
    model.fit(data.data, data.target)
    return model


class SlowModel:
    """SIMULATION of a heavy model: a real estimator whose every call also sleeps
    ``delay_seconds`` (the tutorial's 1-second model). Wrapped as an MLflow pyfunc."""

    def __init__(self, estimator: Any, delay_seconds: float) -> None:
        self.estimator = estimator
        self.delay_seconds = delay_seconds

    def predict(self, frame: pd.DataFrame) -> Any:
        """Sleep, then predict."""
        time.sleep(self.delay_seconds)
        return self.estimator.predict(frame)
