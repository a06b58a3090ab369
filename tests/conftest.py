"""Shared fixtures: a trained iris model file."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest

from memoserve_models import demo

IRIS_COLUMNS = list(demo.IRIS_FEATURES)
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture(scope="session")
def iris_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris RandomForest saved with joblib (small, to keep start-up quick)."""
    path = tmp_path_factory.mktemp("models") / "iris.joblib"
    joblib.dump(demo.train_iris(n_estimators=20), path)
    return path
