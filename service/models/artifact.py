"""Loading a model from files: an MLflow model directory or a joblib/pickle file."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from service.models.loaded import Predictor, PyfuncPredictor, SklearnPredictor
from service.rows.schema import ColumnSpec, InputSchema

# MLflow 3 stores scikit-learn models with skops, which loads only types it is told to trust.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]


def load_artifact(path: Path) -> tuple[Predictor, InputSchema]:
    """A predictor and its input schema from an MLflow model directory or a joblib file."""
    if (path / "MLmodel").is_file():
        return _load_mlflow_dir(path)
    import joblib

    estimator = joblib.load(path)
    predictor = SklearnPredictor(estimator)
    return predictor, predictor.schema()


def _load_mlflow_dir(path: Path) -> tuple[Predictor, InputSchema]:
    from mlflow.models import Model

    meta = Model.load(str(path))
    schema = schema_from_signature(meta.signature)
    if "sklearn" in meta.flavors:
        import mlflow.sklearn

        estimator = mlflow.sklearn.load_model(str(path))
        predictor = SklearnPredictor(estimator, schema.names)
        return predictor, schema if schema.columns else predictor.schema()
    import mlflow.pyfunc

    return PyfuncPredictor(mlflow.pyfunc.load_model(str(path)), schema), schema


def schema_from_signature(signature: Any) -> InputSchema:
    """Columns and types of an MLflow signature's inputs (column- or tensor-based)."""
    if signature is None or signature.inputs is None:
        return InputSchema()
    inputs = signature.inputs
    if inputs.is_tensor_spec():
        shape = inputs.inputs[0].shape
        return InputSchema.positional(int(shape[-1])) if shape and shape[-1] > 0 else InputSchema()
    cols = []
    for spec in inputs.inputs:
        dtype = getattr(spec.type, "name", str(spec.type))
        cols.append(ColumnSpec(spec.name, str(dtype)))
    return InputSchema(tuple(cols))


def content_digest(path: Path) -> str:
    """A short digest of a file or directory's bytes: the version of a local model."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return "local-" + h.hexdigest()[:12]
