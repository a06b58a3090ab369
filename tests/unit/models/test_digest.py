"""The artifact digest while MLflow is down: the local copy is checked against the digest
remembered when it was first verified, at every load; a changed byte refuses it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from devtools.localstack.processes import LOOPBACK, free_port
from memoserve_models import demo
from service.models.digest import artifact_digest
from service.models.mlflow import MlflowModelSource, RegistryRef
from service.models.trust import ModelRefused, TrustPolicy

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow.sklearn

    path = tmp_path_factory.mktemp("saved") / "model"
    mlflow.sklearn.save_model(
        demo.train_iris(n_estimators=3),
        str(path),
        serialization_format="skops",
        skops_trusted_types=["sklearn.tree._tree.Tree"],
    )
    return path


def offline_source(tmp_path: Path, saved: Path, *, remembered: bool = True) -> MlflowModelSource:
    """A source whose MLflow is unreachable (nothing listens on its port) and whose cache holds
    version 1 as a previous run left it: the copy, the marker and the remembered digest."""
    cache = tmp_path / "cache"
    shutil.copytree(saved, cache / "iris" / "1")
    marker = {"name": "iris", "version": "1", "previous": None}
    (cache / "iris" / "current-champion.json").write_text(json.dumps(marker))
    if remembered:
        (cache / "iris" / "1.sha256").write_text(artifact_digest(saved))
    return MlflowModelSource(
        RegistryRef.parse("models:/iris@champion"),
        tracking_uri=f"http://{LOOPBACK}:{free_port()}",
        cache_dir=cache,
        policy=TrustPolicy(),
    )


def test_the_verified_local_copy_loads_while_mlflow_is_down(tmp_path: Path, saved: Path) -> None:
    source = offline_source(tmp_path, saved)
    version = source.resolve()
    assert source.load(version).version == "1"


@pytest.mark.parametrize("file", ["model.skops", "MLmodel"])
def test_a_changed_byte_in_the_local_copy_is_refused(
    tmp_path: Path, saved: Path, file: str
) -> None:
    source = offline_source(tmp_path, saved)
    target = source.cache_dir / "1" / file
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ModelRefused, match="memoserve.artifact_sha256"):
        source.load(source.resolve())
    assert not (source.cache_dir / "1").exists()  # the next attempt downloads it afresh


def test_a_local_copy_never_verified_is_refused_while_mlflow_is_down(
    tmp_path: Path, saved: Path
) -> None:
    source = offline_source(tmp_path, saved, remembered=False)
    with pytest.raises(ModelRefused, match="no digest was remembered"):
        source.load(source.resolve())
