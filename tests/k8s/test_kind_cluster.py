"""The chart in a real cluster: `helm install`, then `helm test` (a cache HIT end to end).

Needs a reachable cluster with the image loaded, e.g.:
    kind create cluster --config k8s/kind-config.yaml
    docker build -t memoserve:dev . && kind load docker-image memoserve:dev --name memoserve
    make tools && .venv/bin/pytest -m kind
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from k8s_tools import CHART, Tools

pytestmark = pytest.mark.kind

NO_CLUSTER = "no Kubernetes cluster reachable (kind cannot run on this machine)"


@pytest.fixture(scope="module")
def cluster(tools: Tools) -> Tools:
    try:
        result = subprocess.run(
            [tools.kubectl, "cluster-info", "--request-timeout=5s"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip(NO_CLUSTER)
    if result.returncode != 0:
        pytest.skip(NO_CLUSTER)
    return tools


@pytest.fixture(scope="module")
def release(cluster: Tools) -> Iterator[tuple[str, str]]:
    namespace = f"memoserve-test-{uuid.uuid4().hex[:6]}"
    name = "memoserve"
    install = [
        cluster.helm,
        "install",
        name,
        str(CHART),
        "--namespace",
        namespace,
        "--create-namespace",
        "--set",
        "image.tag=dev",
        "--wait",
        "--timeout",
        "10m",
    ]
    subprocess.run(install, check=True, timeout=900)
    try:
        yield namespace, name
    finally:
        subprocess.run([cluster.helm, "uninstall", name, "--namespace", namespace], timeout=300)
        subprocess.run([cluster.kubectl, "delete", "namespace", namespace, "--wait=false"])


def test_helm_test_sees_a_cache_hit(cluster: Tools, release: tuple[str, str]) -> None:
    namespace, name = release
    test = [cluster.helm, "test", name, "--namespace", namespace, "--logs", "--timeout", "10m"]
    result = subprocess.run(test, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr


def test_redis_fails_over_when_the_master_goes(cluster: Tools, release: tuple[str, str]) -> None:
    namespace, _ = release
    kubectl = [cluster.kubectl, "--namespace", namespace]
    ask = [
        *kubectl,
        "exec",
        "memoserve-redis-1",
        "-c",
        "sentinel",
        "--",
        "sh",
        "-c",
        "redis-cli -p 26379 SENTINEL get-master-addr-by-name mymaster | head -n1",
    ]
    before = subprocess.run(ask, capture_output=True, text=True, check=True).stdout.strip()
    master_pod = before.split(".")[0]
    subprocess.run([*kubectl, "delete", "pod", master_pod, "--wait=false"], check=True)
    if master_pod == "memoserve-redis-1":
        ask[4] = "memoserve-redis-2"
    after = before
    for _ in range(30):
        after = subprocess.run(ask, capture_output=True, text=True).stdout.strip()
        if after and after != before:
            break
        time.sleep(1)
    assert after and after != before, "the Sentinels did not promote a replica"
