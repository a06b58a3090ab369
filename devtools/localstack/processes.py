"""Real local processes for `make run` and the tests: Redis + Sentinels, gunicorn replicas
(Redis Cluster: ``devtools.localstack.redis_cluster``).

Every process is started on a free loopback port and stopped by whoever started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.05,
    proc: Proc | None = None,
) -> None:
    """Poll ``check`` until true; TimeoutError naming ``what`` otherwise, at once if ``proc``
    has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise TimeoutError(f"{proc.name} exited (code {proc.popen.returncode}) before {what}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - not up yet
            pass
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Proc:
    """A started process and where its output goes."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Signal it and wait; SIGKILL if it lingers. Then SIGKILL whatever is left of its
        process group (its own session): a gunicorn master killed, or crashed, must not leave
        its workers running."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.popen.wait(5)
        self._kill_group()

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        self.stop(signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        """The last lines of its log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(
    name: str, argv: list[str], workdir: Path, port: int, env: Mapping[str, str] | None = None
) -> Proc:
    """Start ``argv`` with output to ``workdir/name.log``."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(  # noqa: S603 - argv built here
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=workdir,
            start_new_session=True,  # Ctrl-C in `make run` is handled by the stack, once
        )
    return Proc(name, popen, log, port)


def redis_available() -> bool:
    """Whether a local ``redis-server`` binary exists."""
    return shutil.which("redis-server") is not None


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a server certificate, its key and the CA that signed it."""

    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class RedisSecurity:
    """What a throw-away Redis and its Sentinels require; the default requires nothing."""

    password: str | None = None
    """``requirepass`` of the ``default`` user (replication, Sentinels, admin) and the
    replica's ``masterauth``."""
    users: tuple[str, ...] = ()
    """ACL users, each as the ``user`` directive takes it: ``"name on >pw ~key:* +get"``."""
    sentinel_password: str | None = None
    """``requirepass`` of the Sentinels (they use it with each other too)."""
    sentinel_users: tuple[str, ...] = ()
    """ACL users of the Sentinels, as ``users``."""
    tls: TlsFiles | None = None
    """Serve TLS only (plain port off), replicate and monitor over TLS; client certificates
    are optional."""

    def server_lines(self, port: int) -> list[str]:
        """redis.conf lines of a master or replica listening on ``port``."""
        lines = [f"user {user}" for user in self.users]
        if self.password is not None:
            lines += [f"requirepass {self.password}", f"masterauth {self.password}"]
        return lines + self._tls_lines(port)

    def sentinel_lines(self, master_name: str, port: int) -> list[str]:
        """sentinel.conf lines of a Sentinel listening on ``port``."""
        lines = [f"user {user}" for user in self.sentinel_users]
        if self.password is not None:
            lines.append(f"sentinel auth-pass {master_name} {self.password}")
        if self.sentinel_password is not None:
            lines.append(f"requirepass {self.sentinel_password}")
        return lines + self._tls_lines(port)

    def client(self, *, sentinel: bool = False) -> dict[str, Any]:
        """redis-py arguments of an admin client of a server (or of a Sentinel)."""
        out: dict[str, Any] = {}
        password = self.sentinel_password if sentinel else self.password
        if password is not None:
            out["password"] = password
        if self.tls is not None:
            out.update(ssl=True, ssl_ca_certs=str(self.tls.ca))
        return out

    def _tls_lines(self, port: int) -> list[str]:
        if self.tls is None:
            return [f"port {port}"]
        return [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {self.tls.cert}",
            f"tls-key-file {self.tls.key}",
            f"tls-ca-cert-file {self.tls.ca}",
            "tls-auth-clients optional",
            "tls-replication yes",
        ]


NO_SECURITY = RedisSecurity()


@dataclass
class SentinelCluster:
    """Redis master + replica + three Sentinels (quorum 2) on loopback."""

    workdir: Path
    master_name: str = "mymaster"
    down_after_ms: int = 1000
    security: RedisSecurity = NO_SECURITY
    procs: list[Proc] = field(default_factory=list)
    sentinels: list[Proc] = field(default_factory=list)
    master: Proc | None = None
    replica: Proc | None = None

    @property
    def sentinel_addresses(self) -> str:
        """``host:port,...`` as MEMOSERVE_REDIS_SENTINELS takes it."""
        return ",".join(f"{LOOPBACK}:{p.port}" for p in self.sentinels)

    def client_env(self) -> dict[str, str]:
        """What a memoserve replica needs to use these Redis processes."""
        return {"MEMOSERVE_REDIS_SENTINELS": self.sentinel_addresses}

    def data_ports(self) -> list[int]:
        """Ports of the nodes that hold the data now: the master."""
        return [self.current_master_port()]

    def start(self, timeout: float = 30.0) -> SentinelCluster:
        """Start everything and wait until the Sentinels agree on master, replica and peers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.master = self._redis("redis-master")
        self.replica = self._redis("redis-replica", replica_of=self.master.port)
        replica_port, client = self.replica.port, self.security.client()
        wait_until(
            lambda: (
                ask(replica_port, lambda c: c.info("replication"), client)["master_link_status"]
                == "up"
            ),
            timeout,
            "the replica to sync",
        )
        for i in range(3):
            self.sentinels.append(self._sentinel(i, self.master.port))
        for s in self.sentinels:
            port = s.port
            wait_until(
                lambda port=port: _discovered(port, self.master_name, self.sentinel_client),  # type: ignore[misc]
                timeout,
                f"sentinel on {port} to discover its peers",
            )
        return self

    def stop(self) -> None:
        """Stop every process this cluster started."""
        for p in reversed(self.procs):
            p.stop()

    @property
    def sentinel_client(self) -> dict[str, Any]:
        """redis-py arguments of a client of the Sentinels."""
        return self.security.client(sentinel=True)

    def current_master_port(self) -> int:
        """The master port the Sentinels report now."""
        for s in self.sentinels:
            if s.alive():
                try:
                    addr = ask(
                        s.port,
                        lambda c: c.sentinel_get_master_addr_by_name(self.master_name),
                        self.sentinel_client,
                    )
                    return int(cast(tuple[str, int], addr)[1])
                except redis.RedisError:
                    continue
        raise RuntimeError("no sentinel answers")

    def _redis(self, name: str, replica_of: int | None = None) -> Proc:
        proc = start_redis(name, self.workdir, replica_of=replica_of, security=self.security)
        self.procs.append(proc)
        return proc

    def _sentinel(self, index: int, master_port: int) -> Proc:
        port = free_port()
        conf = self.workdir / f"sentinel-{index}.conf"
        extra = self.security.sentinel_lines(self.master_name, port)
        conf.write_text(
            f"bind {LOOPBACK}\nprotected-mode no\ndir {self.workdir}\n"
            f"sentinel monitor {self.master_name} {LOOPBACK} {master_port} 2\n"
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} 5000\n"
            f"sentinel parallel-syncs {self.master_name} 1\n" + "".join(f"{x}\n" for x in extra)
        )
        proc = spawn(
            f"sentinel-{index}", ["redis-server", str(conf), "--sentinel"], self.workdir, port
        )
        self.procs.append(proc)
        client = self.sentinel_client
        wait_until(
            lambda: bool(ask(port, lambda c: c.ping(), client)),
            10,
            f"sentinel on {port}",
            proc=proc,
        )
        return proc


def start_redis(
    name: str,
    workdir: Path,
    *,
    replica_of: int | None = None,
    port: int | None = None,
    security: RedisSecurity = NO_SECURITY,
    extra: Sequence[str] = (),
) -> Proc:
    """A throw-away ``redis-server`` on a free loopback port (or ``port``), without
    persistence, answering when this returns; ``security`` adds passwords, users and TLS,
    ``extra`` more command-line options."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / f"{name}.conf"
    conf.write_text("".join(f"{line}\n" for line in security.server_lines(port)))
    argv = [
        "redis-server",
        str(conf),
        "--bind",
        LOOPBACK,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        "--protected-mode",
        "no",
        "--enable-debug-command",
        "local",  # the chaos suite stalls a master with DEBUG SLEEP
    ]
    if replica_of is not None:
        argv += ["--replicaof", LOOPBACK, str(replica_of)]
    proc = spawn(name, [*argv, *extra], workdir, port)
    client = security.client()
    try:
        wait_until(
            lambda: bool(ask(port, lambda c: c.ping(), client)), 10, f"{name} on {port}", proc=proc
        )
    except TimeoutError:
        proc.stop()
        raise
    return proc


def _discovered(port: int, master_name: str, client: Mapping[str, Any]) -> bool:
    """Whether the Sentinel on ``port`` knows the replica and both other Sentinels."""
    replicas = cast(list[Any], ask(port, lambda c: c.sentinel_slaves(master_name), client))
    peers = cast(list[Any], ask(port, lambda c: c.sentinel_sentinels(master_name), client))
    return len(replicas) >= 1 and len(peers) >= 2


def ask(
    port: int, question: Callable[[redis.Redis], Any], client: Mapping[str, Any] | None = None
) -> Any:
    """One command on a short-lived connection (closed, so nothing leaks into tests);
    ``client`` adds redis-py arguments (password, TLS)."""
    extra = dict(client or {})
    with redis.Redis(LOOPBACK, port, socket_timeout=1, socket_connect_timeout=1, **extra) as c:
        return question(c)


@dataclass
class Replica:
    """One memoserve replica: a gunicorn master with its workers."""

    proc: Proc

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://{LOOPBACK}:{self.proc.port}"

    def stop(self) -> None:
        """Graceful stop."""
        self.proc.stop(timeout=20)


def start_replica(
    name: str,
    workdir: Path,
    env: Mapping[str, str],
    *,
    port: int | None = None,
    wait_ready: bool = True,
    timeout: float = 60.0,
) -> Replica:
    """Run ``memoserve serve`` (gunicorn) with ``env`` on a free port; wait for /readyz."""
    port = port or free_port()
    full_env = {**os.environ, **env, "MEMOSERVE_BIND": f"{LOOPBACK}:{port}"}
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    prom = workdir / f"{name}-prometheus"
    full_env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    argv = [sys.executable, "-m", "service.cli", "serve"]
    replica = Replica(spawn(name, argv, workdir, port, full_env))
    if wait_ready:
        try:
            wait_until(
                lambda: _status(f"{replica.url}/readyz") == 200,
                timeout,
                f"{name} ready",
                proc=replica.proc,
            )
        except TimeoutError as exc:
            replica.stop()
            raise TimeoutError(f"{exc}\n--- {name} log ---\n{replica.proc.tail()}") from exc
        except BaseException:  # Ctrl-C while waiting: leave nothing running
            replica.stop()
            raise
    return replica


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:  # a 503 while loading: close its socket too
        with error:
            return error.code


def start_mlflow(workdir: Path, *, port: int | None = None, timeout: float = 90.0) -> Proc:
    """A real ``mlflow server`` (sqlite registry, local artifacts, one worker) on loopback,
    set up to deliver webhooks to loopback with a fixed secret-encryption key."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    key_file = workdir / "webhook-encryption.key"
    if not key_file.exists():
        from cryptography.fernet import Fernet

        key_file.write_bytes(Fernet.generate_key())
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        # Without a fixed key, webhook secrets cannot be read back by another worker or restart.
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": key_file.read_text().strip(),
        "MLFLOW_WEBHOOK_CACHE_TTL": os.environ.get("MLFLOW_WEBHOOK_CACHE_TTL", "1"),
    }
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    argv = [
        mlflow_bin,
        "server",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination",
        str(workdir / "artifacts"),
        "--serve-artifacts",
    ]
    proc = spawn("mlflow", argv, workdir, port, env)
    try:
        wait_until(
            lambda: _status(f"http://{LOOPBACK}:{port}/health") == 200,
            timeout,
            "mlflow server",
            proc=proc,
        )
    except TimeoutError as exc:
        proc.stop()
        raise TimeoutError(f"{exc}\n--- mlflow log ---\n{proc.tail()}") from exc
    except BaseException:
        proc.stop()
        raise
    return proc
