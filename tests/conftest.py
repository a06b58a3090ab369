"""Shared fixtures: a trained iris model file; MLflow's pickle switch restored after a test."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture(autouse=True)
def _restore_mlflow_pickle_switch() -> Iterator[None]:
    """An in-process app sets ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` (its trust policy); put it
    back so that the next test's MLflow calls see the environment they started with."""
    before = os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    yield
    if before is None:
        os.environ.pop("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", None)
    else:
        os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = before
