"""Real processes: Redis master + replica + 3 Sentinels (or a 3+3 Redis Cluster), and gunicorn
replicas over HTTP.

Every module here marks itself ``pytestmark = pytest.mark.integration``, as the k8s suite does."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.localstack.processes import (
    LOOPBACK,
    Proc,
    Replica,
    SentinelCluster,
    redis_available,
    start_mlflow,
    start_replica,
)
from devtools.localstack.redis_cluster import RedisClusterProcs
from service.cache.keys import KeySpace
from tests.support.keys import RedisBackend
from tests.support.registry import register_v1_v2, reset_to_v1

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def require_redis() -> None:
    if not redis_available():
        pytest.fail("redis-server is not installed: run `make test` (it installs it) as root")


@pytest.fixture(scope="session")
def sentinel_cluster(
    require_redis: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SentinelCluster]:
    """One cluster for the session's well-behaved tests."""
    cluster = SentinelCluster(tmp_path_factory.mktemp("redis")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster(
    require_redis: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisClusterProcs]:
    """One Redis Cluster (3 primaries + 3 replicas) for the session's well-behaved tests."""
    cluster = RedisClusterProcs(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sentinel", "cluster"])
def redis_backend(request: pytest.FixtureRequest) -> RedisBackend:
    """The session's Sentinel cluster, then its Redis Cluster: a scenario on both backends."""
    name = "sentinel_cluster" if request.param == "sentinel" else "redis_cluster"
    backend: RedisBackend = request.getfixturevalue(name)
    return backend


@pytest.fixture
def own_cluster(require_redis: None, tmp_path: Path) -> Iterator[SentinelCluster]:
    """A cluster of this test's own, for tests that kill Redis."""
    cluster = SentinelCluster(tmp_path / "redis").start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def mlflow_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's MLflow server keeps its database and (under `artifacts/`) files."""
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="session")
def mlflow_proc(mlflow_workdir: Path) -> Iterator[Proc]:
    """One real MLflow server (sqlite, one worker) for the session: the integration and chaos
    tests' (a test that stops MLflow starts its own)."""
    proc = start_mlflow(mlflow_workdir)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def mlflow_server(mlflow_proc: Proc) -> str:
    """The session MLflow server's tracking URI."""
    return f"http://{LOOPBACK}:{mlflow_proc.port}"


@pytest.fixture(scope="session")
def _shared_v1_v2(mlflow_server: str) -> str:
    return register_v1_v2(mlflow_server, prefix="shared")


@pytest.fixture
def iris_v1_v2(_shared_v1_v2: str, mlflow_server: str) -> str:
    """The session's two-version iris model (tests.support.registry.register_v1_v2) on the
    session server, registered once, with @champion back on v1 and no other alias. Tests
    that need versions of their own (more of them, other sizes) register them."""
    return reset_to_v1(_shared_v1_v2, mlflow_server)


class ReplicaFactory:
    """Starts gunicorn replicas of one test, in a namespace of their own."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.namespace = f"t{uuid.uuid4().hex[:8]}"
        self.keys = KeySpace(self.namespace)
        self.started: list[Replica] = []

    def __call__(self, *, wait_ready: bool = True, **env: str) -> Replica:
        """A replica with ``env`` over the test defaults, ready to serve (unless not
        ``wait_ready``: then start several at once and wait with ``wait_ready``)."""
        full = {
            "MEMOSERVE_NAMESPACE": self.namespace,
            "MEMOSERVE_WORKERS": "2",
            "MEMOSERVE_MODEL_POLL_SECONDS": "0",
            "MEMOSERVE_LOG_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            **env,
        }
        replica = start_replica(
            f"replica-{len(self.started)}", self.workdir, full, wait_ready=wait_ready
        )
        self.started.append(replica)
        return replica

    def stop(self) -> None:
        """Stop every replica this factory started."""
        for replica in self.started:
            replica.stop()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[ReplicaFactory]:
    """Start gunicorn replicas (env over a test default); all are stopped after the test."""
    factory = ReplicaFactory(tmp_path)
    yield factory
    factory.stop()
