"""Loading a model from files (an MLflow model directory, a ``.skops`` or a joblib/pickle
file) as the trust policy allows (``service.models.trust``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from service.models.loaded import Predictor, PyfuncPredictor, SklearnPredictor
from service.models.trust import TrustPolicy
from service.rows.schema import ColumnSpec, InputSchema

_DEFAULT_POLICY = TrustPolicy()


def load_artifact(
    path: Path, policy: TrustPolicy = _DEFAULT_POLICY
) -> tuple[Predictor, InputSchema]:
    """A predictor and its input schema from an MLflow model directory or a model file."""
    if (path / "MLmodel").is_file():
        return _load_mlflow_dir(path, policy)
    if path.suffix == ".skops":
        predictor = SklearnPredictor(policy.load_skops(path))
        return predictor, predictor.schema()
    policy.refuse_unless_pickle(f"{path.name} (a joblib/pickle file)")
    import joblib

    predictor = SklearnPredictor(joblib.load(path))
    return predictor, predictor.schema()


def _load_mlflow_dir(path: Path, policy: TrustPolicy) -> tuple[Predictor, InputSchema]:
    from mlflow.models import Model

    meta = Model.load(str(path))
    schema = schema_from_signature(meta.signature)
    sklearn = meta.flavors.get("sklearn")
    if sklearn is not None:
        estimator = _load_sklearn(path, sklearn, policy)
        predictor = SklearnPredictor(estimator, schema.names)
        return predictor, schema if schema.columns else predictor.schema()
    policy.refuse_unless_pickle("an MLflow pyfunc model (its python_model or loader_module)")
    import mlflow.pyfunc

    return PyfuncPredictor(mlflow.pyfunc.load_model(str(path)), schema), schema


def _load_sklearn(path: Path, flavor: dict[str, Any], policy: TrustPolicy) -> Any:
    fmt = str(flavor.get("serialization_format", "cloudpickle"))
    if fmt == "skops":
        # Ours, not mlflow.sklearn.load_model: that trusts the types the MLmodel lists.
        file = (path / str(flavor.get("pickled_model", "model.skops"))).resolve()
        if not file.is_relative_to(path.resolve()):
            raise ValueError(f"the sklearn flavour names a file outside the model: {file}")
        return policy.load_skops(file)
    policy.refuse_unless_pickle(f"a scikit-learn model saved with {fmt}")
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(path))


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
