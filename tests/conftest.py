"""Shared fixtures: a trained iris model file."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest

from memoserve_models import demo


@pytest.fixture(scope="session")
def iris_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris RandomForest saved with joblib (small, to keep start-up quick)."""
    path = tmp_path_factory.mktemp("models") / "iris.joblib"
    joblib.dump(demo.train_iris(n_estimators=20), path)
    return path
