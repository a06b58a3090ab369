"""The image as the chart runs it: its registry-setup Job, two replicas and its `helm test` pod,
each a container of the built image with the rendered pod's security context, emptyDirs as
tmpfs, limits and environment (tests/image/pods.py), on loopback. Redis (master, replica, three
Sentinels, with the chart's admin passwords and memoserve's ACL users) and an MLflow server run
as host processes, as in the integration suite.

The tests run in file order on one set of containers: the Job registers `iris@champion` and
points MLflow's webhook at replica A; then the chart's test pod passes, a MISS on A is a HIT on
B, /metrics sums both workers, a promotion switches both replicas, the Redis master dies and
both keep answering, B drains on SIGTERM under a steady stream, and A stops cleanly.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from devtools.localstack.processes import (
    RedisSecurity,
    SentinelCluster,
    free_port,
    redis_available,
    start_mlflow,
    wait_until,
)
from memoserve_models import registry
from service.cache.keys import KeySpace
from tests.image import pods
from tests.image.conftest import record
from tests.image.image_tools import Engine
from tests.image.pods import Chart, Container, Pod
from tests.support import traffic
from tests.support.keys import row_entries
from tests.support.metrics import metric
from tests.support.payloads import IRIS_ROWS, dataframe_split
from tests.support.redis_acl import chart_acl_rules
from tests.support.registry import mlflow_call, wait_for_version
from tests.support.traffic import Stream, Tally

pytestmark = pytest.mark.image

# `username`/`password`: the chart's MLflow login (mlflow.auth); this MLflow runs without auth
# and ignores it. `redis-password`/`redis-sentinel-password`: memoserve's ACL users, which the
# host Redis and Sentinels below have exactly as the chart's init.sh writes them.
SECRETS = {
    "webhook-secret": "image-test-webhook-secret",
    "username": "admin",
    "password": "image-test-mlflow-password",
    "redis-password": "image-test-" + uuid.uuid4().hex,
    "redis-sentinel-password": "image-test-sentinel-" + uuid.uuid4().hex,
}
DEPLOYMENT = ("Deployment", "memoserve")
JOB = ("Job", "memoserve-registry-setup")
TEST_POD = ("Pod", "memoserve-test-cache-hit")
PROBE = IRIS_ROWS[0]  # the chart's test payload row; v1 of iris says 0, v2 (label_shift=1) 1
_distinct = itertools.count(1)


def distinct_row(_: int = 0) -> list[list[float]]:
    """A row no one asked before (a miss), in the iris columns."""
    return [[7.0 + next(_distinct) / 1000, 2.5, 4.5, 1.5]]


@dataclass
class Stack:
    """What the containers talk to, and how they are started."""

    engine: Engine
    image: str
    chart: Chart
    cluster: SentinelCluster
    tracking: str
    ports: dict[str, int]

    @property
    def keys(self) -> KeySpace:
        return KeySpace(self.chart.pod(*DEPLOYMENT).env(SECRETS, {})["MEMOSERVE_NAMESPACE"])

    def loopback(self, port: int | None = None) -> dict[str, str]:
        """The chart's in-cluster addresses, replaced by the host processes' on loopback."""
        env = {
            "MEMOSERVE_REDIS_SENTINELS": self.cluster.sentinel_addresses,
            "MEMOSERVE_REDIS_MASTER_NAME": self.cluster.master_name,
            "MEMOSERVE_MLFLOW_TRACKING_URI": self.tracking,
            "MLFLOW_TRACKING_URI": self.tracking,
        }
        if port is not None:
            env["MEMOSERVE_BIND"] = f"127.0.0.1:{port}"
            # host networking: each replica's metrics port (the chart's 9090) on a port of its own
            env["MEMOSERVE_METRICS_BIND"] = f"127.0.0.1:{free_port()}"
        return env

    def replica(self, name: str, **env: str) -> Container:
        pod = self.chart.pod(*DEPLOYMENT)
        port = self.ports[name]
        full = pod.env(SECRETS, {**self.loopback(port), **env})
        return pods.run(self.engine, self.image, pod, name, env=full, port=port)

    def once(self, kind_name: tuple[str, str], name: str, **env: str) -> tuple[int, str]:
        """A run-to-completion pod (Job, test Pod): its exit code and output."""
        pod: Pod = self.chart.pod(*kind_name)
        full = pod.env(SECRETS, {**self.loopback(), **env})
        container = pods.run(self.engine, self.image, pod, name, env=full)
        try:
            code = container.wait(timeout=300)
            return code, container.logs()
        finally:
            container.remove()


@pytest.fixture(scope="module")
def stack(engine: Engine, image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not redis_available():
        pytest.fail("redis-server is not installed: run `make image-test` (it installs it)")
    chart = Chart.render()
    namespace = chart.pod(*DEPLOYMENT).env(SECRETS, {})["MEMOSERVE_NAMESPACE"]
    rule, sentinel_rule = chart_acl_rules(namespace)
    security = RedisSecurity(  # the chart's: an admin `default` user, memoserve's ACL users
        password="image-test-admin-" + uuid.uuid4().hex,
        users=(f"{rule} >{SECRETS['redis-password']}",),
        sentinel_password="image-test-sentinel-admin-" + uuid.uuid4().hex,
        sentinel_users=(f"{sentinel_rule} >{SECRETS['redis-sentinel-password']}",),
    )
    cluster = SentinelCluster(tmp_path_factory.mktemp("image-redis"), security=security).start()
    try:
        mlflow = start_mlflow(tmp_path_factory.mktemp("image-mlflow"))
        try:
            ports = {name: free_port() for name in ("a", "b")}
            yield Stack(engine, image, chart, cluster, f"http://127.0.0.1:{mlflow.port}", ports)
        finally:
            mlflow.stop()
    finally:
        cluster.stop()


@dataclass
class Setup:
    code: int
    logs: str
    seconds: float


@pytest.fixture(scope="module")
def registry_setup(stack: Stack) -> Setup:
    """The chart's post-install Job: the demo model and the webhook to replica A."""
    started = time.monotonic()
    code, logs = stack.once(
        JOB, "registry-setup", WEBHOOK_URL=f"http://127.0.0.1:{stack.ports['a']}/v1/webhooks/mlflow"
    )
    return Setup(code, logs, time.monotonic() - started)


@pytest.fixture(scope="module")
def pair(stack: Stack, registry_setup: Setup) -> Iterator[tuple[Container, Container]]:
    """Replicas A and B, started one after the other so that each start is measured alone."""
    assert registry_setup.code == 0, registry_setup.logs[-3000:]
    started: list[Container] = []
    try:
        for name in ("a", "b"):
            replica = stack.replica(name)
            started.append(replica)
            seconds = replica.wait_ready()
            record(f"cold start to /readyz, replica {name.upper()}: {seconds:.1f} s")
        yield started[0], started[1]
    finally:
        for replica in started:
            if not replica.stopped and replica.running():
                record(f"replica {replica.name[-1].upper()} stopped: exit {replica.stop()}")
            replica.remove()


def ask(replica: Container, rows: list[list[float]]) -> httpx.Response:
    r = httpx.post(f"{replica.url}/invocations", json=dataframe_split(rows), timeout=10)
    assert r.status_code == 200, r.text
    return r


def access_lines(replica: Container, path: str = "/invocations") -> list[dict[str, Any]]:
    """The replica's JSON access lines for ``path`` (from `docker logs`)."""
    lines = []
    for line in replica.logs().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "memoserve.access" and entry.get("path") == path:
                lines.append(entry)
    return lines


# --- twins of the kind tests: install (the Job, ready pods) and `helm test` ------------------


def test_the_registry_setup_job_registers_the_demo_and_the_webhook(
    stack: Stack, registry_setup: Setup
) -> None:
    assert registry_setup.code == 0, registry_setup.logs[-3000:]
    record(f"registry-setup Job (demo model + webhook): {registry_setup.seconds:.0f} s")
    client = registry.client(stack.tracking)
    assert mlflow_call(client.get_model_version_by_alias, "iris", "champion").version == "1"
    hooks = mlflow_call(client.list_webhooks)
    assert [h.url for h in hooks] == [f"http://127.0.0.1:{stack.ports['a']}/v1/webhooks/mlflow"]


def test_replicas_run_read_only_as_uid_10001_without_capabilities(
    stack: Stack, pair: tuple[Container, Container]
) -> None:
    pod = stack.chart.pod(*DEPLOYMENT)
    for replica in pair:
        host = json.loads(replica.inspect("{{json .HostConfig}}"))
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert set(host["Tmpfs"]) == {m["mountPath"] for m in pod.container["volumeMounts"]}
        assert replica.inspect("{{.Config.User}}") == "10001:10001"
        probe = stack.engine.docker(
            "exec",
            replica.id,
            "sh",
            "-c",
            "id -u; grep CapEff /proc/1/status; touch /app/x 2>&1 || true; touch /tmp/x "
            "/var/cache/memoserve/x && echo writable; ls /var/run/memoserve/prometheus",
        ).stdout
        assert probe.splitlines()[0] == "10001"
        assert "CapEff:\t0000000000000000" in probe
        assert "Read-only file system" in probe
        assert "writable" in probe
        assert ".db" in probe, "no multiprocess metrics files where the chart mounts them"


def test_the_charts_helm_test_pod_sees_a_cache_hit(
    stack: Stack, pair: tuple[Container, Container]
) -> None:
    a, _ = pair
    code, logs = stack.once(TEST_POD, "helm-test", URL=f"{a.url}/invocations")
    assert code == 0, logs
    assert "first: ('MISS'" in logs, logs
    assert "'HIT'" in logs, logs


def test_a_miss_on_one_replica_is_a_hit_on_the_other(
    stack: Stack, pair: tuple[Container, Container]
) -> None:
    a, b = pair
    row = distinct_row()
    entries = len(row_entries(stack.cluster, stack.keys, "iris", "1"))
    first = ask(a, row)
    assert (first.headers["x-cache"], first.headers["x-model-version"]) == ("MISS", "1")
    wait_until(
        lambda: len(row_entries(stack.cluster, stack.keys, "iris", "1")) > entries,
        5,
        "A's write of the row",
    )
    second = ask(b, row)
    assert second.headers["x-cache"] == "HIT"
    assert second.content == first.content


def test_metrics_are_summed_over_both_workers(pair: tuple[Container, Container]) -> None:
    a, _ = pair
    with httpx.Client(base_url=a.url) as client:
        before = metric(client, "memoserve_requests_total", route="/invocations", status="200")
    seen = len(access_lines(a))
    sent, pids = 0, set()
    while len(pids) < 2 and sent < 400:
        for _ in range(10):  # a new connection each, so that both workers accept some
            ask(a, distinct_row())
            sent += 1
        wait_until(lambda n=seen + sent: len(access_lines(a)) >= n, 5, "the access lines")
        pids = {line["pid"] for line in access_lines(a)[seen:]}
    assert len(pids) == 2, "every request went to one worker"
    with httpx.Client(base_url=a.url) as client:
        after = metric(client, "memoserve_requests_total", route="/invocations", status="200")
    assert after - before == sent
    record(f"/metrics of replica A: {sent} requests served by workers {sorted(pids)}, all counted")


# --- beyond what the kind tests show ------------------------------------------------------


def test_a_promotion_in_mlflow_switches_both_replicas(
    stack: Stack, pair: tuple[Container, Container]
) -> None:
    a, b = pair
    assert ask(a, [PROBE]).json() == {"predictions": [0]}
    version = mlflow_call(
        registry.register,
        "iris",
        "iris",
        tracking_uri=stack.tracking,
        label_shift=1,
        n_estimators=10,
    )
    assert version == "2"
    deliveries = len(access_lines(a, "/v1/webhooks/mlflow"))
    mlflow_call(registry.promote, "iris", version, alias="champion", tracking_uri=stack.tracking)
    took = wait_for_version([a, b], "2")  # it needs only a replica's url
    assert [ask(r, [PROBE]).json() for r in pair] == [{"predictions": [1]}] * 2
    hooks = access_lines(a, "/v1/webhooks/mlflow")[deliveries:]
    assert [h["status"] for h in hooks] == [202], "the switch did not come by the webhook"
    record(f"promotion: both replicas on v2 {took:.2f} s after the alias moved (webhook → A → B)")


def test_both_replicas_answer_through_a_redis_failover(
    stack: Stack, pair: tuple[Container, Container]
) -> None:
    a, b = pair
    old_master = stack.cluster.current_master_port()
    tally = Tally()
    with Stream(a.url, tally, rows=distinct_row), Stream(b.url, tally, rows=distinct_row):
        wait_until(lambda: tally.requests >= 20, 10, "traffic")
        assert stack.cluster.master is not None
        stack.cluster.master.kill()
        killed = time.monotonic()
        wait_until(lambda: "BYPASS" in tally.caches(), 10, "an answer without the cache")
        wait_until(lambda: stack.cluster.current_master_port() != old_master, 30, "a failover")

        def shared_again() -> bool:
            row = distinct_row()
            return ask(a, row).headers["x-cache"] == "MISS" and hit_soon(b, row)

        wait_until(shared_again, 30, "a row computed by A to be a HIT on B")
        resumed = time.monotonic() - killed
    assert tally.non_200 == [], tally.non_200[:5]
    bypass = sum(x.cache == "BYPASS" for x in tally.answers)
    record(
        f"Redis failover: {tally.requests} requests to A and B, all 200, {bypass} BYPASS; "
        f"shared hits again {resumed:.1f} s after SIGKILL of the master"
    )


def hit_soon(replica: Container, row: list[list[float]]) -> bool:
    """Whether ``row`` is a HIT on ``replica`` once the fire-and-forget write had time."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if ask(replica, row).headers["x-cache"] == "HIT":
            return True
        time.sleep(0.1)
    return False


def big_batch(_: int = 0) -> list[list[float]]:
    """200 rows no one asked before: each request is in flight for tens of milliseconds."""
    return [row for _ in range(200) for row in distinct_row()]


class Rotation:
    """Client threads asking B until it leaves the rotation, then A: what a Service does when
    the endpoints controller drops a terminating pod (here at the very moment of SIGTERM, with
    no preStop pause)."""

    def __init__(self, a: Container, b: Container, tally: Tally, threads: int = 4) -> None:
        self.a, self.b, self.tally = a, b, tally
        self.b_in = threading.Event()
        self.b_in.set()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def __enter__(self) -> Rotation:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self) -> None:
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        with (
            httpx.Client(base_url=self.a.url, timeout=10, limits=no_keepalive) as to_a,
            httpx.Client(base_url=self.b.url, timeout=10, limits=no_keepalive) as to_b,
        ):
            for _ in range(2000):
                if self._stop.is_set():
                    return
                on_b = self.b_in.is_set()
                answer = traffic.ask(
                    to_b if on_b else to_a, big_batch(), replica="b" if on_b else "a"
                )
                self.tally.add(answer)


def test_sigterm_drains_a_replica_under_a_steady_stream(pair: tuple[Container, Container]) -> None:
    """B gets SIGTERM (`docker stop`, as a kubelet stops a pod) while four client threads keep
    200-row misses in flight on it; from that moment they ask A instead."""
    a, b = pair
    tally = Tally()
    with Rotation(a, b, tally) as rotation:
        wait_until(lambda: sum(x.status == 200 for x in tally.answers) >= 8, 20, "traffic")
        rotation.b_in.clear()
        term = time.monotonic()
        code = b.stop()
        stopped = time.monotonic() - term
        wait_until(lambda: sum(x.replica == "a" for x in tally.answers) >= 8, 20, "A's share")
    on_b = [x for x in tally.answers if x.replica == "b"]
    drained = [x for x in on_b if x.status == 200 and x.sent < term < x.done]
    failed = [(x.replica, x.status, x.error, round(x.sent - term, 3)) for x in tally.non_200]
    record(
        f"SIGTERM drain of replica B: exit {code} after {stopped:.1f} s; {tally.requests} requests "
        f"of 200 rows, {len(on_b)} to B ({len(drained)} in flight at the SIGTERM), the rest to A; "
        f"{len(failed)} failed"
    )
    assert code == 0
    assert failed == []
    assert drained, "no request was in flight at the SIGTERM: the test proved nothing"


def test_the_other_replica_stops_cleanly_too(pair: tuple[Container, Container]) -> None:
    """What a rollout does to the old pods: SIGTERM, and the master exits 0."""
    a, _ = pair
    assert a.stop() == 0


def test_nothing_of_this_module_is_left_running(stack: Stack) -> None:
    listed = stack.engine.docker(
        "ps", "--quiet", "--filter", f"label={pods.LABEL}={pods.SESSION}"
    ).stdout.split()
    assert listed == []
