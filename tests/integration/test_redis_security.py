"""Redis least privilege, end to end: the chart's ACL user, passwords and TLS everywhere.

One cluster for the module: master + replica + three Sentinels, TLS only (plain ports off),
the ``default`` user behind an admin password (replication, Sentinels), the Sentinels behind
their own password, and memoserve's ACL user exactly as the chart renders it (``helm
template``). Real gunicorn replicas connect as that user with the CA of the throw-away
certificates. The failover test kills the master, so it runs last."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import skops.io

from devtools.localstack.processes import (
    LOOPBACK,
    RedisSecurity,
    SentinelCluster,
    TlsFiles,
    redis_available,
    wait_until,
)
from memoserve_models import demo
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache, build_redis
from service.promotion.events import EventBus
from service.promotion.sealed import events_key
from service.settings import Settings
from tests.integration.conftest import ReplicaFactory
from tests.support.failover import through_failover
from tests.support.metrics import metric
from tests.support.payloads import IRIS_ROWS, dataframe_split
from tests.support.redis_acl import chart_acl_rules
from tests.support.tls import make_tls

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex
MEMOSERVE_PASSWORD = "memoserve-" + uuid.uuid4().hex
SENTINEL_PASSWORD = "sentinel-" + uuid.uuid4().hex
SENTINEL_ADMIN_PASSWORD = "sentinel-admin-" + uuid.uuid4().hex
USERNAME = "memoserve"


@dataclass
class SecureRedis:
    cluster: SentinelCluster
    keys: KeySpace
    tls: TlsFiles
    rule: str

    def env(self, ca: Path | None = None) -> dict[str, str]:
        """A replica's settings: the ACL user, both passwords, TLS with the CA."""
        return {
            "MEMOSERVE_NAMESPACE": self.keys.namespace,
            "MEMOSERVE_REDIS_SENTINELS": self.cluster.sentinel_addresses,
            "MEMOSERVE_REDIS_USERNAME": USERNAME,
            "MEMOSERVE_REDIS_PASSWORD": MEMOSERVE_PASSWORD,
            "MEMOSERVE_REDIS_SENTINEL_USERNAME": USERNAME,
            "MEMOSERVE_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
            "MEMOSERVE_REDIS_TLS": "true",
            "MEMOSERVE_REDIS_SENTINEL_TLS": "true",
            "MEMOSERVE_REDIS_TLS_CA_FILE": str(ca or self.tls.ca),
            # TLS handshakes on a loaded 2-core machine: the 50 ms defaults are for a LAN.
            "MEMOSERVE_REDIS_CONNECT_TIMEOUT_MS": "1000",
            "MEMOSERVE_REDIS_SOCKET_TIMEOUT_MS": "1000",
        }

    def admin(self) -> redis.Redis:
        """The ``default`` user on the current master."""
        port = self.cluster.current_master_port()
        return redis.Redis(LOOPBACK, port, socket_timeout=2, **self.cluster.security.client())

    def as_memoserve(self) -> redis.Redis:
        """memoserve's ACL user on the current master."""
        port = self.cluster.current_master_port()
        return redis.Redis(
            LOOPBACK,
            port,
            socket_timeout=2,
            username=USERNAME,
            password=MEMOSERVE_PASSWORD,
            ssl=True,
            ssl_ca_certs=str(self.tls.ca),
        )

    def sentinel(self) -> redis.Redis:
        """memoserve's ACL user on a live Sentinel."""
        port = next(s.port for s in self.cluster.sentinels if s.alive())
        return redis.Redis(
            LOOPBACK,
            port,
            socket_timeout=2,
            username=USERNAME,
            password=SENTINEL_PASSWORD,
            ssl=True,
            ssl_ca_certs=str(self.tls.ca),
        )

    def denials(self) -> list[Any]:
        """Every ACL denial the master and the Sentinels logged (any user, command or key)."""
        with self.admin() as r:
            found = list(r.acl_log())
        for s in self.cluster.sentinels:
            if s.alive():
                with redis.Redis(
                    LOOPBACK, s.port, socket_timeout=2, **self.cluster.sentinel_client
                ) as r:
                    found += r.execute_command("ACL", "LOG")
        return found

    def reset_denials(self) -> None:
        with self.admin() as r:
            r.execute_command("ACL", "LOG", "RESET")
        for s in self.cluster.sentinels:
            if s.alive():
                with redis.Redis(
                    LOOPBACK, s.port, socket_timeout=2, **self.cluster.sentinel_client
                ) as r:
                    r.execute_command("ACL", "LOG", "RESET")


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    if not redis_available():
        pytest.fail("redis-server is not installed: run `make test` (it installs it) as root")
    workdir = tmp_path_factory.mktemp("redis-secure")
    tls = make_tls(workdir / "tls")
    keys = KeySpace(f"t{uuid.uuid4().hex[:8]}")
    rule, sentinel_rule = chart_acl_rules(keys.namespace)
    security = RedisSecurity(  # as the chart's init.sh writes them
        password=ADMIN_PASSWORD,
        users=(f"{rule} >{MEMOSERVE_PASSWORD}",),
        sentinel_password=SENTINEL_ADMIN_PASSWORD,
        sentinel_users=(f"{sentinel_rule} >{SENTINEL_PASSWORD}",),
        tls=tls,
    )
    cluster = SentinelCluster(workdir, security=security).start()
    yield SecureRedis(cluster, keys, tls, rule)
    cluster.stop()


def ask(c: httpx.Client, rows: list[list[float]]) -> httpx.Response:
    r = c.post("/invocations", json=dataframe_split(rows))
    assert r.status_code == 200, r.text
    return r


def test_the_chart_rule_is_least_privilege(secure: SecureRedis) -> None:
    ns = secure.keys.namespace
    assert f" ~{ns}:* &{ns}:events -@all " in f" {secure.rule} "
    with secure.as_memoserve() as r:
        assert r.set(f"{ns}:row:probe", b"1", ex=5)
        for refused in (
            lambda: r.flushall(),
            lambda: r.config_get("*"),
            lambda: r.keys("*"),
            lambda: r.get("someone-else:key"),
            lambda: r.set("someone-else:key", b"1"),
            lambda: r.publish("someone-else:events", b"{}"),
            lambda: r.execute_command("ACL", "LIST"),
            lambda: r.eval("return 1", 0),
            lambda: r.execute_command("DEBUG", "SLEEP", "0"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                refused()
    with secure.sentinel() as s:
        assert s.sentinel_get_master_addr_by_name("mymaster")
        for command in (("RESET", "*"), ("SET", "mymaster", "quorum", "1"), ("FAILOVER", "x")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                s.execute_command("SENTINEL", *command)
    secure.reset_denials()


def test_a_replica_as_the_acl_user_over_tls_serves_promotes_and_purges(
    secure: SecureRedis, replicas: ReplicaFactory, tmp_path: Path, iris_path: Path
) -> None:
    model = tmp_path / "model.skops"  # what the default MEMOSERVE_MODEL_TRUST loads
    shutil.copy(iris_path, model)
    replica = replicas(
        **secure.env(),
        MEMOSERVE_MODEL_URI=str(model),
        MEMOSERVE_WORKERS="1",
        MEMOSERVE_L1_ENABLED="false",
        MEMOSERVE_COALESCE="distributed",  # lock SET NX PX / UNLINK
        MEMOSERVE_HOT_SAMPLE_RATE="1",
        MEMOSERVE_MODEL_POLL_SECONDS="0.3",  # the file changing is the promotion
    )
    keys, hot_row = secure.keys, IRIS_ROWS[:1]
    with httpx.Client(base_url=replica.url, timeout=10) as c:
        first = ask(c, hot_row)
        assert first.headers["x-cache"] == "MISS"
        old = first.headers["x-model-version"]
        old_rows = keys.version_prefix("model", old) + "*"
        with secure.admin() as r:
            wait_until(lambda: len(list(r.scan_iter(match=old_rows))) == 1, 5, "the entry")
            wait_until(lambda: r.zcard(keys.hot("model", old, "predict")) == 1, 5, "a sample")
        assert ask(c, hot_row).headers["x-cache"] == "HIT"

        # Promotion: a new file, seen by the poll; warm-up, active version, purge.
        skops.io.dump(demo.train_iris(n_estimators=5, label_shift=1), tmp_path / "next.skops")
        os.replace(tmp_path / "next.skops", model)
        wait_until(lambda: ask(c, IRIS_ROWS[1:2]).headers["x-model-version"] != old, 20, "v2")
        new = ask(c, IRIS_ROWS[1:2]).headers["x-model-version"]
        # the hot row was warmed onto the new version before it served
        assert ask(c, hot_row).headers["x-cache"] == "HIT"
        with secure.admin() as r:
            assert r.get(keys.active("model")) == new.encode()
            wait_until(lambda: not list(r.scan_iter(match=old_rows)), 10, "the purge")
            assert not r.exists(keys.hot("model", old, "predict"))
            # the replica's worker listens on the channel, through the TLS Sentinels' master
            assert r.pubsub_numsub(keys.events)[0][1] >= 1
        # A refused command is in the ACL LOG (checked below); an error count here could also
        # be a TLS round trip that timed out on a loaded machine, which proves nothing.
        assert metric(c, "memoserve_redis_commands_total", outcome="ok") > 0

    # A local model publishes no promotion events (they name a registry model), so the
    # service's own EventBus publishes and listens here, as the same user over the same TLS.
    heard = asyncio.run(publish_and_listen(secure))
    assert heard == [{"type": "alias_changed", "model": "acl-probe"}]

    assert secure.denials() == [], "the service ran a command or key its ACL user may not"
    assert "NOPERM" not in replica.proc.log.read_text()


async def publish_and_listen(secure: SecureRedis) -> list[dict[str, Any]]:
    env = secure.env()
    settings = Settings(**{k.removeprefix("MEMOSERVE_").lower(): v for k, v in env.items()})
    client = build_redis(settings)
    assert client is not None
    cache = RedisCache.from_settings(client, settings)
    key = events_key(settings.webhook_secret.get_secret_value())
    listener, heard = EventBus(cache.sibling(), secure.keys.events, key=key), []

    async def handler(event: dict[str, Any]) -> None:
        heard.append(event)

    listener.start(handler)
    try:
        await asyncio.wait_for(listener.subscribed.wait(), 10)
        bus = EventBus(cache, secure.keys.events, key=key)
        assert await bus.publish({"type": "alias_changed", "model": "acl-probe"})
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.05)
    finally:
        await listener.stop()
        await cache.close()
        for sentinel in client.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            await sentinel.aclose()
    return heard


def test_a_wrong_ca_is_a_cache_fault_not_an_error(
    secure: SecureRedis, replicas: ReplicaFactory, tmp_path: Path, iris_path: Path
) -> None:
    stranger = make_tls(tmp_path / "other", name="stranger")
    replica = replicas(
        **secure.env(ca=stranger.ca),
        MEMOSERVE_MODEL_URI=str(iris_path),
        MEMOSERVE_WORKERS="1",
        MEMOSERVE_L1_ENABLED="false",
    )
    with httpx.Client(base_url=replica.url, timeout=10) as c:
        for _ in range(3):
            r = ask(c, IRIS_ROWS[:1])
            assert r.headers["x-cache"] == "BYPASS"
            # refused at once, not held to the cache deadline (8 s with these timeouts)
            assert r.elapsed.total_seconds() < 2
        assert metric(c, "memoserve_redis_commands_total", outcome="ok") == 0


def test_failover_with_every_password_and_tls(
    secure: SecureRedis, replicas: ReplicaFactory, iris_path: Path
) -> None:
    cluster = secure.cluster
    replica = replicas(
        **secure.env(),
        MEMOSERVE_MODEL_URI=str(iris_path),
        MEMOSERVE_L1_ENABLED="false",
        MEMOSERVE_BREAKER_RESET_SECONDS="0.5",
        MEMOSERVE_WARMUP_TOP_K="0",
    )
    rows = [[5.0 + i / 10, 3.1, 1.5, 0.2] for i in range(20)]
    old_master = cluster.current_master_port()
    with httpx.Client(base_url=replica.url, timeout=10) as c:
        for row in rows:
            ask(c, [row])
        assert cluster.replica is not None and cluster.master is not None
        with redis.Redis(
            LOOPBACK, cluster.replica.port, socket_timeout=2, **cluster.security.client()
        ) as replica_db:
            wait_until(  # the writes replicate before the crash
                lambda: (
                    len(list(replica_db.scan_iter(match=f"{secure.keys.namespace}:row:*")))
                    >= len(rows)
                ),
                10,
                "the entries on the replica",
            )
        run_ = through_failover(c, rows, cluster.master.kill)
    assert set(run_.statuses) == {200}, run_.summary()
    assert cluster.current_master_port() != old_master
    assert run_.resumed_at, f"hits did not resume; last outcomes {run_.outcomes[-20:]}"
    assert secure.denials() == []
    print(f"\nfailover with ACL user, passwords and TLS: {run_.summary()}")
