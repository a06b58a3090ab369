"""Against a real `mlflow server`: a version registered by memoserve_models loads; a version
whose files changed after registration, and a cloudpickle version, are refused while the
replica keeps answering with the version it had (three versions in all)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from devtools.localstack.processes import Replica, wait_until
from memoserve_models import registry
from tests.integration.conftest import ReplicaFactory
from tests.integration.test_promotion import PROBE, mlflow_call
from tests.support.payloads import dataframe_split

pytestmark = pytest.mark.integration


def stored_file(artifacts: Path, tracking: str, name: str, version: str, file: str) -> Path:
    """Where the server keeps ``file`` of a version (its logged model's artifacts)."""
    mv = registry.client(tracking).get_model_version(name, version)
    model_id = mv.model_id or str(mv.source).rsplit("/", 1)[-1]  # source: models:/<model id>
    (path,) = [p for p in artifacts.rglob(file) if model_id in p.parts]
    return path


def answer(replica: Replica) -> str:
    r = httpx.post(f"{replica.url}/invocations", json=dataframe_split(PROBE), timeout=10)
    assert r.status_code == 200, r.text
    return r.headers["x-model-version"]


def refused(replica: Replica, version: str, *words: str) -> None:
    """Wait until the replica's last load of ``version`` failed with ``words`` in its reason,
    answering with version 1 throughout."""

    def seen() -> bool:
        assert answer(replica) == "1"
        error = httpx.get(f"{replica.url}/readyz", timeout=5).json().get("load_error", "")
        return f"version {version}:" in error and all(w in error for w in words)

    wait_until(seen, 30, f"version {version} refused", proc=replica.proc)
    ready = httpx.get(f"{replica.url}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["version"] == "1"


def test_changed_and_pickled_versions_are_refused_and_the_served_one_stays(
    mlflow_server: str, mlflow_workdir: Path, replicas: ReplicaFactory, tmp_path: Path
) -> None:
    tracking, artifacts = mlflow_server, mlflow_workdir / "artifacts"  # the session's server
    name = f"trust-{uuid.uuid4().hex[:6]}"
    common = {"tracking_uri": tracking, "n_estimators": 10}
    mlflow_call(registry.register, "iris", name, alias="champion", **common)
    mlflow_call(registry.register, "iris", name, label_shift=1, **common)
    # Version 2's files are replaced after registration by a valid model (version 1's).
    v1 = stored_file(artifacts, tracking, name, "1", "model.skops")
    stored_file(artifacts, tracking, name, "2", "model.skops").write_bytes(v1.read_bytes())

    replica = replicas(
        MEMOSERVE_MODEL_URI=f"models:/{name}@champion",
        MEMOSERVE_MLFLOW_TRACKING_URI=tracking,
        MEMOSERVE_MODEL_CACHE_DIR=str(tmp_path / "cache"),
        MEMOSERVE_MODEL_POLL_SECONDS="0.3",
        MEMOSERVE_WORKERS="1",
    )
    assert answer(replica) == "1"  # registered by memoserve_models: its digest tag matches

    mlflow_call(registry.promote, name, "2", alias="champion", tracking_uri=tracking)
    refused(replica, "2", "memoserve.artifact_sha256", "recorded at registration")

    mlflow_call(registry.register, "iris", name, serialization_format="cloudpickle", **common)
    mlflow_call(registry.promote, name, "3", alias="champion", tracking_uri=tracking)
    refused(replica, "3", "cloudpickle", "MEMOSERVE_MODEL_TRUST")
    assert "ModelRefused" in replica.proc.tail()
