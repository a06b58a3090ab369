"""The model loading policy on real model files: skops loads with memoserve's own allow-list;
code (pickle, cloudpickle, pyfunc, joblib) and untrusted skops types are refused by default."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io

from memoserve_models import demo
from service.models.artifact import load_artifact
from service.models.trust import ModelRefused, ModelTrust, TrustPolicy
from service.settings import Settings
from tests.support.models import CountingModel

# MLflow's own modules warn about their type hints and pickled models when first used.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
SKOPS = TrustPolicy()
PICKLE = TrustPolicy(trust=ModelTrust.PICKLE)
ROW = pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=demo.IRIS_FEATURES)


@pytest.fixture(scope="module")
def iris() -> object:
    return demo.train_iris(n_estimators=3)


def save_sklearn(path: Path, model: object, fmt: str, trusted: list[str] | None = None) -> Path:
    import mlflow.sklearn

    mlflow.sklearn.save_model(
        model, str(path), serialization_format=fmt, skops_trusted_types=trusted
    )
    return path


def predict(policy: TrustPolicy, path: Path) -> list[int]:
    policy.apply_to_process()
    predictor, schema = load_artifact(path, policy)
    from service.rows.canonical import RawRows, canonicalize

    return list(predictor(canonicalize(RawRows(ROW.to_dict("records")), schema), "predict"))


def test_a_skops_sklearn_model_loads_with_mlflow_pickle_loading_off(
    tmp_path: Path, iris: object
) -> None:
    path = save_sklearn(tmp_path / "m", iris, "skops", ["sklearn.tree._tree.Tree"])
    assert predict(SKOPS, path) == [0]
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"


def test_the_types_an_mlmodel_trusts_are_not_trusted_here(tmp_path: Path) -> None:
    """The artifact's own MLmodel lists the custom class as trusted: memoserve ignores that."""
    custom = CountingModel(str(tmp_path / "calls.txt"))
    path = save_sklearn(tmp_path / "m", custom, "skops", ["tests.support.models.CountingModel"])
    with pytest.raises(ModelRefused, match=r"tests\.support\.models\.CountingModel") as err:
        load_artifact(path, SKOPS)
    assert "MEMOSERVE_MODEL_SKOPS_TRUSTED_TYPES" in str(err.value)


def test_a_skops_file_with_an_object_array_is_refused_unless_its_type_is_allowed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "objects.skops"
    skops.io.dump(np.array([object()], dtype=object), path)
    with pytest.raises(ModelRefused, match=r"builtins\.object"):
        SKOPS.load_skops(path)
    allowed = TrustPolicy(skops_trusted_types=("builtins.object",))
    assert allowed.load_skops(path).shape == (1,)


def test_the_allow_list_is_exactly_the_configured_one(tmp_path: Path, iris: object) -> None:
    path = save_sklearn(tmp_path / "m", iris, "skops", ["sklearn.tree._tree.Tree"])
    empty = TrustPolicy(skops_trusted_types=())
    with pytest.raises(ModelRefused, match=r"sklearn\.tree\._tree\.Tree"):
        load_artifact(path, empty)


@pytest.mark.parametrize("fmt", ["pickle", "cloudpickle"])
def test_a_pickled_sklearn_model_loads_only_when_pickle_is_trusted(
    tmp_path: Path, iris: object, fmt: str
) -> None:
    path = save_sklearn(tmp_path / "m", iris, fmt)
    with pytest.raises(ModelRefused, match=f"saved with {fmt}.*MEMOSERVE_MODEL_TRUST"):
        load_artifact(path, SKOPS)
    assert predict(PICKLE, path) == [0]


def test_a_pyfunc_model_loads_only_when_pickle_is_trusted(tmp_path: Path, iris: object) -> None:
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    path = tmp_path / "pyfunc"
    signature = infer_signature(ROW, np.array([0]))
    with warnings.catch_warnings():  # MLflow asks for type hints on predict
        warnings.simplefilter("ignore")
        from memoserve_models.slow import SlowPyfunc

        mlflow.pyfunc.save_model(str(path), python_model=SlowPyfunc(iris, 0.0), signature=signature)
    with pytest.raises(ModelRefused, match="pyfunc.*MEMOSERVE_MODEL_TRUST"):
        load_artifact(path, SKOPS)
    assert predict(PICKLE, path) == [0]


def test_a_joblib_file_loads_only_when_pickle_is_trusted(tmp_path: Path, iris: object) -> None:
    path = tmp_path / "iris.joblib"
    joblib.dump(iris, path)
    with pytest.raises(ModelRefused, match="joblib.*MEMOSERVE_MODEL_TRUST"):
        load_artifact(path, SKOPS)
    assert load_artifact(path, PICKLE)[1].width == 4


def test_settings_make_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TrustPolicy.from_settings(Settings()) == SKOPS
    monkeypatch.setenv("MEMOSERVE_MODEL_TRUST", "pickle")
    monkeypatch.setenv("MEMOSERVE_MODEL_SKOPS_TRUSTED_TYPES", " a.B, ,c.D ")
    monkeypatch.setenv("MEMOSERVE_MODEL_REQUIRE_DIGEST", "false")
    policy = TrustPolicy.from_settings(Settings())
    assert policy == TrustPolicy(ModelTrust.PICKLE, ("a.B", "c.D"), require_digest=False)
    policy.apply_to_process()
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "true"
