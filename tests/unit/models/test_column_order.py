"""A signature that lists its columns in another order than the estimator was fitted on: rows
are reindexed by name, never relabelled by position; differing names refuse to load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from service.models.artifact import load_artifact
from service.rows.canonical import RawRows, canonicalize

# MLflow's own modules warn about their type hints when first imported.
pytestmark = pytest.mark.filterwarnings("ignore:.*type hint.*:UserWarning")
FITTED = ["a", "b", "c"]


def save(tmp_path: Path, signature_columns: list[str]) -> Path:
    import mlflow.sklearn
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    x = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 3)), columns=FITTED)
    y = 1.0 * x["a"] + 10.0 * x["b"] + 100.0 * x["c"]  # each column weighs differently
    model = LinearRegression().fit(x, y)
    signature = ModelSignature(inputs=Schema([ColSpec("double", c) for c in signature_columns]))
    path = tmp_path / "model"
    mlflow.sklearn.save_model(model, str(path), signature=signature, serialization_format="skops")
    return path


def test_rows_reach_the_estimator_by_name(tmp_path: Path) -> None:
    predictor, schema = load_artifact(save(tmp_path, ["c", "a", "b"]))
    assert schema.names == ("c", "a", "b")
    records = canonicalize(RawRows([{"a": 1.0, "b": 0.0, "c": 0.0}]), schema)
    positional = canonicalize(RawRows([[0.0, 0.0, 1.0]]), schema)  # c=0, a=0, b=1
    assert predictor(records, "predict")[0] == pytest.approx(1.0, abs=1e-6)
    assert predictor(positional, "predict")[0] == pytest.approx(10.0, abs=1e-6)


def test_a_signature_naming_other_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not the columns the model was fitted on"):
        load_artifact(save(tmp_path, ["a", "b", "d"]))
