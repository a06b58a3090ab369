"""Shared fixtures: a trained iris model file."""

from __future__ import annotations

from pathlib import Path

import pytest
import skops.io

from memoserve_models import demo


@pytest.fixture(scope="session")
def iris_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris RandomForest saved with skops (small, to keep start-up quick): it loads under
    the default ``MEMOSERVE_MODEL_TRUST=skops``."""
    path = tmp_path_factory.mktemp("models") / "iris.skops"
    skops.io.dump(demo.train_iris(n_estimators=20), path)
    return path
