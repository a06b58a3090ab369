"""A real Redis Cluster on loopback: 3 primaries + 3 replicas, `redis-cli --cluster create`.

Started and stopped by whoever makes it, like ``SentinelCluster``."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from devtools.localstack.processes import (
    LOOPBACK,
    NO_SECURITY,
    Proc,
    RedisSecurity,
    ask,
    free_port,
    start_redis,
    wait_until,
)


@dataclass
class RedisClusterProcs:
    """``primaries`` primaries with one replica each; a primary is failed over after
    ``node_timeout_ms`` without an answer, by the cluster itself."""

    workdir: Path
    primaries: int = 3
    node_timeout_ms: int = 1000
    security: RedisSecurity = NO_SECURITY
    procs: list[Proc] = field(default_factory=list)

    @property
    def nodes(self) -> str:
        """``host:port,...`` of every node, as MEMOSERVE_REDIS_CLUSTER_NODES takes it."""
        return ",".join(f"{LOOPBACK}:{p.port}" for p in self.procs)

    def client_env(self) -> dict[str, str]:
        """What a memoserve replica needs to use this cluster."""
        return {"MEMOSERVE_REDIS_CLUSTER_NODES": self.nodes}

    def data_ports(self) -> list[int]:
        """Ports of the nodes that hold the data now: the primaries."""
        return self.primary_ports()

    def start(self, timeout: float = 60.0) -> RedisClusterProcs:
        """Start the nodes, join them and wait until every node sees all slots served."""
        try:
            for i in range(2 * self.primaries):
                self.procs.append(self._node(i))
            self._create(timeout)
            for proc in self.procs:
                wait_until(lambda p=proc: self.healthy(p.port), timeout, f"{proc.name} to agree")  # type: ignore[misc]
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node this cluster started."""
        for proc in reversed(self.procs):
            proc.stop()

    def by_port(self, port: int) -> Proc:
        """The node listening on ``port``."""
        return next(p for p in self.procs if p.port == port)

    def primary_ports(self) -> list[int]:
        """Ports of the primaries serving slots now, as a live node sees them."""
        for proc in self.procs:
            if proc.alive():
                nodes = self._ask(proc.port, "CLUSTER NODES")
                return sorted(
                    int(address.rsplit(":", 1)[1])
                    for address, node in nodes.items()
                    if "master" in node["flags"] and "fail" not in node["flags"] and node["slots"]
                )
        raise RuntimeError("no cluster node answers")

    def healthy(self, port: int) -> bool:
        """Whether the node on ``port`` sees every slot served by ``primaries`` primaries."""
        info = self._ask(port, "CLUSTER INFO")
        return bool(
            info["cluster_state"] == "ok"
            and info["cluster_slots_ok"] == "16384"
            and int(info["cluster_size"]) == self.primaries
        )

    def _ask(self, port: int, command: str) -> dict[str, Any]:
        """A parsed ``CLUSTER INFO`` or ``CLUSTER NODES`` of one node."""
        reply = ask(port, lambda c: c.execute_command(command), self.security.client())  # type: ignore[no-untyped-call]
        return cast(dict[str, Any], reply)

    def _node(self, index: int) -> Proc:
        options = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            f"nodes-{index}.conf",
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            # The bus port defaults to port + 10000, which a free port above 55535 lacks.
            "--cluster-port",
            str(free_port()),
        ]
        return start_redis(f"cluster-{index}", self.workdir, security=self.security, extra=options)

    def _create(self, timeout: float) -> None:
        argv = ["redis-cli", "--cluster", "create"]
        argv += [f"{LOOPBACK}:{p.port}" for p in self.procs]
        argv += ["--cluster-replicas", "1", "--cluster-yes"]
        if self.security.password is not None:
            argv += ["-a", self.security.password, "--no-auth-warning"]
        if self.security.tls is not None:
            argv += ["--tls", "--cacert", str(self.security.tls.ca)]
        log = self.workdir / "cluster-create.log"
        with log.open("wb") as out:
            done = subprocess.run(  # noqa: S603 - argv built here
                argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{log.read_text()}")
